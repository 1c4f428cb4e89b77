"""The data commands: ``produce`` (replay a CSV of sessions as events) and ``topics`` (create the topics)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from streaming.cli.options import BootstrapOpt, ConfigOpt, TopicOpt, settings_from

__all__ = ["produce", "register", "topics"]

console = Console(stderr=True)


def produce(
    csv_path: Annotated[
        Path,
        typer.Option("--csv", exists=True, dir_okay=False, help="CSV with the dataset's columns (Revenue -> label)."),
    ],
    rate: Annotated[
        float | None, typer.Option(help="Events per second, above 0 (default: as fast as possible).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Send at most this many events.")] = None,
    repeat: Annotated[int, typer.Option(min=1, help="Replay the file this many times.")] = 1,
    event_format: Annotated[str, typer.Option("--format", help="msgpack or json.")] = "msgpack",
    flip_labels_after: Annotated[
        int | None, typer.Option(min=0, help="Invert labels from the N-th event on (drift demo).")
    ] = None,
    flip_count: Annotated[
        int | None, typer.Option(min=1, help="...for this many events (default: all the rest).")
    ] = None,
    flip_probability: Annotated[
        float,
        typer.Option(
            min=0, max=1, help="Chance each label in the burst is inverted (0.5: coin-flip labels, 1: all inverted)."
        ),
    ] = 0.5,
    config: ConfigOpt = None,
    bootstrap: BootstrapOpt = None,
    topic: TopicOpt = None,
) -> None:
    """Replay a CSV of sessions as events into the events topic (the file is checked before anything is sent)."""
    from streaming.local.dataset import check_columns, read_events
    from streaming.local.replay import flip_labels, replay
    from streaming.transport import make_producer

    if event_format not in ("msgpack", "json"):
        raise typer.BadParameter("use msgpack or json", param_hint="--format")
    if rate is not None and rate <= 0:
        raise typer.BadParameter(
            "must be above 0 events per second; leave --rate out to send as fast as possible", param_hint="--rate"
        )
    check_columns(csv_path)
    kafka = settings_from(config, bootstrap=bootstrap, topic=topic).kafka
    producer = make_producer(kafka, linger_ms=10)
    try:
        events = read_events(csv_path, limit=limit, repeat=repeat)
        if flip_labels_after is not None:
            events = flip_labels(events, flip_labels_after, flip_count, probability=flip_probability)
        sent = replay(producer, kafka.events_topic, events, rate=rate, fmt=event_format)
    finally:
        producer.close(timeout=10)
    console.print(f"sent {sent:,} events to {kafka.events_topic}")


def topics(
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of the events and predictions topics.")] = 1,
    config: ConfigOpt = None,
    bootstrap: BootstrapOpt = None,
    topic: TopicOpt = None,
) -> None:
    """Create the events, dead-letter and predictions topics if they do not exist."""
    from streaming.transport import ensure_topics, livelearn_topics

    kafka = settings_from(config, bootstrap=bootstrap, topic=topic).kafka
    topics = livelearn_topics(kafka, partitions)
    ensure_topics(kafka, topics)
    console.print("topics ready: " + ", ".join(f"{name} ({count} partitions)" for name, count in topics.items()))


def register(app: typer.Typer) -> None:
    app.command()(produce)
    app.command("topics")(topics)
