"""The data commands: ``produce`` (replay a CSV of sessions as events) and ``topics`` (create the topics).

With ``--label-delay 30s..10m`` the replay sends each session without its label and its label (the purchase) on its
own, 30 s to 10 min of event time later, as a shop's order system would: to ``LIVELEARN_LABELS_TOPIC`` when set,
else to the events topic as label records, keyed like the session (its ``user_id``). The learner joins them when
its ``LIVELEARN_LABEL_WAIT`` is longer than the longest delay. The label options are shared with ``livelearn up``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from streaming.cli.options import BootstrapOpt, ConfigOpt, TopicOpt, settings_from

if TYPE_CHECKING:
    from collections.abc import Iterable

    from streaming.events import Event, Label
    from streaming.local.replay import LabelDelay

__all__ = [
    "LabelDelayOpt",
    "LabelSeedOpt",
    "MissingLabelsOpt",
    "SendLabelsOpt",
    "label_delay_from",
    "produce",
    "register",
    "topics",
]

console = Console(stderr=True)

LabelDelayOpt = Annotated[
    str | None,
    typer.Option(
        help="Send each label on its own, MIN..MAX of event time after its session (e.g. 30s..10m; ms, s, m, h), "
        "keyed like it: to LIVELEARN_LABELS_TOPIC (up: <events topic>.labels unless set), else the events topic. "
        "The learner needs a longer LIVELEARN_LABEL_WAIT (up sets twice the longest delay unless set).",
    ),
]
SendLabelsOpt = Annotated[
    str,
    typer.Option(
        help="With --label-delay: all labels, or purchases only (no purchase is a negative only with "
        "LIVELEARN_LABEL_POLICY=negative)."
    ),
]
MissingLabelsOpt = Annotated[
    float, typer.Option(min=0, max=1, help="With --label-delay: share of the labels never sent.")
]
LabelSeedOpt = Annotated[int, typer.Option(help="With --label-delay: seed of the delays and the missing labels.")]


def label_delay_from(delay: str | None, send: str, missing: float, seed: int) -> LabelDelay | None:
    """The options ``--label-delay``, ``--send-labels``, ``--missing-labels``, ``--label-seed`` as one plan (``None``:
    labels ride inside their events), or a :class:`typer.BadParameter` naming the option that is wrong."""
    from streaming.local.replay import LabelDelay

    if delay is None:
        if send != "all" or missing:
            given = "--send-labels" if send != "all" else "--missing-labels"
            raise typer.BadParameter("needs --label-delay (labels sent on their own)", param_hint=given)
        return None
    if send not in ("all", "purchases"):
        raise typer.BadParameter(f"use all or purchases, got {send!r}", param_hint="--send-labels")
    try:
        return LabelDelay.parse(delay, send=send, missing=missing, seed=seed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--label-delay") from None


def produce(
    csv_path: Annotated[
        Path,
        typer.Option(
            "--csv",
            exists=True,
            dir_okay=False,
            help="CSV or Parquet file with the dataset's columns (Revenue -> label).",
        ),
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
    label_delay: LabelDelayOpt = None,
    send_labels: SendLabelsOpt = "all",
    missing_labels: MissingLabelsOpt = 0.0,
    label_seed: LabelSeedOpt = 0,
    config: ConfigOpt = None,
    bootstrap: BootstrapOpt = None,
    topic: TopicOpt = None,
) -> None:
    """Replay a CSV of sessions as events into the events topic (the file is checked before anything is sent); with
    --label-delay, each label comes on its own later (to LIVELEARN_LABELS_TOPIC, else the events topic)."""
    from streaming.local.dataset import check_columns, read_events
    from streaming.local.replay import flip_labels, replay
    from streaming.transport import make_producer

    if event_format not in ("msgpack", "json"):
        raise typer.BadParameter("use msgpack or json", param_hint="--format")
    if rate is not None and rate <= 0:
        raise typer.BadParameter(
            "must be above 0 events per second; leave --rate out to send as fast as possible", param_hint="--rate"
        )
    labels = label_delay_from(label_delay, send_labels, missing_labels, label_seed)
    check_columns(csv_path)
    settings = settings_from(config, bootstrap=bootstrap, topic=topic)
    kafka, labels_topic = settings.kafka, settings.labels.topic
    producer = make_producer(kafka, linger_ms=10)
    try:
        events = read_events(csv_path, limit=limit, repeat=repeat)
        if flip_labels_after is not None:
            events = flip_labels(events, flip_labels_after, flip_count, probability=flip_probability)
        records: Iterable[Event | Label] = events if labels is None else labels.apply(events)
        sent = replay(producer, kafka.events_topic, records, labels_topic=labels_topic, rate=rate, fmt=event_format)
    finally:
        producer.close(timeout=10)
    console.print(f"sent {sent.events:,} events to {kafka.events_topic}")
    if labels is not None:
        where = labels_topic or kafka.events_topic
        console.print(f"sent {sent.labels:,} labels {labels} later to {where}", soft_wrap=True)
        wait = settings.labels.wait_seconds
        if wait <= labels.max_seconds:
            console.print(
                f"note: a learner joins these labels only with LIVELEARN_LABEL_WAIT above {labels.max_seconds:g}s "
                f"(these settings: {wait:g}s)",
                soft_wrap=True,
            )


def topics(
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of the events and predictions topics.")] = 1,
    config: ConfigOpt = None,
    bootstrap: BootstrapOpt = None,
    topic: TopicOpt = None,
) -> None:
    """Create the events, dead-letter and predictions topics (and the labels topic, when set) if they do not exist."""
    from streaming.transport import ensure_topics, livelearn_topics

    settings = settings_from(config, bootstrap=bootstrap, topic=topic)
    kafka = settings.kafka
    topics = livelearn_topics(kafka, partitions, labels_topic=settings.labels.topic)
    ensure_topics(kafka, topics)
    console.print("topics ready: " + ", ".join(f"{name} ({count} partitions)" for name, count in topics.items()))


def register(app: typer.Typer) -> None:
    app.command()(produce)
    app.command("topics")(topics)
