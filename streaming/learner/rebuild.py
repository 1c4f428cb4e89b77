"""Rebuild: learn a bounded range of the events topic again, from a stored version (or from nothing), as a branch.

SGD cannot subtract events. When a bad range is found after its versions were served (a labeller wrong for six
hours), the honest repair is to go back to a version before it and learn again, skipping it. A rebuild reads the
events topic with partitions it assigns itself (never the live consumer group, nothing committed, no prediction
published) from the base version's offsets to ``until``, runs each record through the learner's own per-event step
(:class:`~streaming.learner.step.EventStep`: decode, dedupe, score, metrics, data signals, learn — the same code and
the same order, so the same bits), skips the excluded ranges, and writes versions as a branch
(:mod:`snapshotter.branches`): numbered, parent chain from the base, provenance in ``extra.rebuild``, never serving.
``livelearn rebuild promote`` then moves the learner lineage to the branch head.

**Modes.** ``online`` (the default) is the above; ``batch`` is the design's mini-batch update over the same kept
events, several epochs, a seeded shuffle (:mod:`streaming.learner.minibatch`), one branch version at the end.

**Order.** One partition is learned in offset order: a rebuild with no exclusion from version k to version k+j's
offsets reproduces k+j's model bit for bit. Several partitions are merged by record timestamp (then partition, then
offset): deterministic, the same on every run, but not necessarily the order the live learner's polls interleaved
them in, so the result equals a plain loop over that merged order, not the live lineage's bits.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Literal

from prometheus_client import CollectorRegistry

from snapshotter.branches import Branches
from snapshotter.codec import VersionMeta
from snapshotter.control import ControlPlane
from snapshotter.incidents import IncidentRange, Incidents
from snapshotter.store import VersionStore
from streaming.config import Settings
from streaming.errors import (
    EventError,
    InputError,
    OffsetsExpiredError,
    RebuildError,
    SnapshotError,
    VersionNotFoundError,
)
from streaming.events import Event, EventLimits, decode_event
from streaming.learner.offline import Discard
from streaming.learner.outputs import Outputs
from streaming.learner.prometheus import LearnerMetrics
from streaming.learner.restore import restore_version
from streaming.learner.state import LearnerState, spec_from_settings
from streaming.learner.step import EventStep
from streaming.transport import Consumer, Record, TopicPartition, make_consumer, topic_partitions

__all__ = [
    "Exclusion",
    "RebuildPlan",
    "RebuildReport",
    "merged_records",
    "parse_exclusions",
    "parse_until",
    "plan_rebuild",
    "run_rebuild",
    "validate_branch",
]

log = logging.getLogger(__name__)

_EXCLUSION = re.compile(r"kafka:(?P<topic>[^:]+):(?P<partition>\d+):(?P<first>\d+)-(?P<last>\d+)")
_INCIDENT = re.compile(r"incident:(?P<id>\d{1,18})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: Seconds between a running rebuild's heartbeats (a rebuild silent for ``snapshotter.branches.STALE_MS`` is dead).
HEARTBEAT_SECONDS = 10.0
#: records stepped together at most (one poll's worth): a run of one partition between exclusions and versions
RUN_RECORDS = 1000


@dataclasses.dataclass(frozen=True)
class Exclusion:
    """Offsets ``first`` to ``last`` (both included) of one partition: skipped by the rebuild.

    >>> Exclusion.parse("kafka:events:0:5000-6499")
    Exclusion(topic='events', partition=0, first=5000, last=6499)
    >>> Exclusion.parse("ev:0:5000-5100")
    Traceback (most recent call last):
    ...
    streaming.errors.InputError: --exclude 'ev:0:5000-5100' is not kafka:TOPIC:PARTITION:FROM-TO (...) or incident:ID
    """

    topic: str
    partition: int
    first: int
    last: int

    @classmethod
    def parse(cls, text: str) -> Exclusion:
        match = _EXCLUSION.fullmatch(text.strip())
        if match is None:
            raise InputError(
                f"--exclude {text!r} is not kafka:TOPIC:PARTITION:FROM-TO (offsets, both included) or incident:ID"
            )
        first, last = int(match["first"]), int(match["last"])
        if last < first:
            raise InputError(f"--exclude {text!r}: FROM ({first}) is after TO ({last})")
        return cls(match["topic"], int(match["partition"]), first, last)

    def __str__(self) -> str:
        return f"kafka:{self.topic}:{self.partition}:{self.first}-{self.last}"


def parse_exclusions(texts: list[str] | tuple[str, ...]) -> tuple[tuple[Exclusion, ...], tuple[int, ...]]:
    """``--exclude`` (repeatable): offsets (``kafka:TOPIC:PARTITION:FROM-TO``) and incidents (``incident:ID``: the
    range the lineage did not learn because of it, resolved by :func:`plan_rebuild`).

    >>> parse_exclusions(["kafka:events:0:5-9", "incident:3", " incident:3"])
    ((Exclusion(topic='events', partition=0, first=5, last=9),), (3,))
    """
    ranges, incidents = [], []
    for text in texts:
        match = _INCIDENT.fullmatch(text.strip())
        if match is None:
            ranges.append(Exclusion.parse(text))
        elif int(match["id"]) not in incidents:
            incidents.append(int(match["id"]))
    return tuple(ranges), tuple(incidents)


@dataclasses.dataclass(frozen=True)
class RebuildPlan:
    """What a rebuild reads and where it starts (:func:`plan_rebuild`)."""

    name: str
    base: int | None  #: the version it starts from (``None``: from nothing)
    start: dict[str, dict[str, int]]  #: first offset read, per topic and partition (the base's offsets)
    until: dict[str, dict[str, int]]  #: first offset not read
    exclusions: tuple[Exclusion, ...]
    mode: Literal["online", "batch"] = "online"
    batch_size: int = 32
    epochs: int = 1
    seed: int = 0
    every: int = 100_000  #: a branch version every this many records read (and one at the end)
    epoch: int = 0  #: the lineage epoch of the base version
    source: str | None = None  #: a CSV file of sessions read instead of the topic (its rows are offsets 0..n-1)
    skip_where: tuple[tuple[str, str], ...] = ()  #: events whose feature has this value (as text) are skipped
    offsets: dict[str, dict[str, int]] | None = None  #: with ``source``: the offsets the branch's versions carry
    incidents: tuple[int, ...] = ()  #: the incidents whose ranges are among ``exclusions``

    @property
    def ranges(self) -> dict[str, dict[str, list[int]]]:
        return {t: {p: [self.start[t][p], end] for p, end in parts.items()} for t, parts in self.until.items()}

    @property
    def records(self) -> int:
        """Offsets in the range, excluded ones included."""
        return sum(end - self.start[t][p] for t, parts in self.until.items() for p, end in parts.items())

    def describe(self) -> str:
        spans = ", ".join(
            f"{t}[{p}] {a}-{b}" for t, parts in self.ranges.items() for p, (a, b) in sorted(parts.items())
        )
        skip = f"; excluding {', '.join(map(str, self.exclusions))}" if self.exclusions else ""
        if self.incidents:
            skip += f" (incident {', '.join(map(str, self.incidents))} among them)"
        batch = f" (batch {self.batch_size}, {self.epochs} epochs, seed {self.seed})" if self.mode == "batch" else ""
        base = f"version {self.base}" if self.base is not None else "nothing"
        where = (
            ""
            if not self.skip_where
            else "; skipping events where " + ", ".join(f"{k}={v}" for k, v in self.skip_where)
        )
        return (
            f"branch {self.name}: from {base} over {spans} ({self.records:,} offsets){skip}{where}; {self.mode}{batch}"
        )


@dataclasses.dataclass(frozen=True)
class RebuildReport:
    """What a rebuild did."""

    name: str
    versions: tuple[int, ...]
    read: int  #: records read
    excluded: int  #: records skipped by an exclusion
    learned: int  #: events learned
    seconds: float

    @property
    def head(self) -> int | None:
        return self.versions[-1] if self.versions else None


def parse_until(text: str, ends: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    """``--until``: ``head`` (each partition's end now) or ``PARTITION:OFFSET,...`` of the events topic (the first
    offset not read; partitions not named: their end now).

    >>> tp = TopicPartition("events", 0)
    >>> parse_until("head", {tp: 900}), parse_until("0:500", {tp: 900})
    ({TopicPartition(topic='events', partition=0): 900}, {TopicPartition(topic='events', partition=0): 500})
    """
    if text.strip() == "head":
        return dict(ends)
    until = dict(ends)
    by_partition = {tp.partition: tp for tp in ends}
    named: set[str] = set()
    for part in text.split(","):
        partition, _, offset = part.strip().partition(":")
        if not partition.isdigit() or not offset.isdigit():
            raise InputError(f"--until {text!r}: say head, or PARTITION:OFFSET,... (e.g. 0:15000,1:14800)")
        if partition in named:
            raise InputError(f"--until {text!r} names partition {partition} twice")
        named.add(partition)
        tp = by_partition.get(int(partition))
        if tp is None:
            raise InputError(f"--until {text!r}: the events topic has no partition {partition}")
        if int(offset) > ends[tp]:
            raise InputError(f"--until {text!r}: partition {partition} ends at {ends[tp]}")
        until[tp] = int(offset)
    return until


def parse_skip_where(texts: list[str] | tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``--skip-where FEATURE=VALUE`` (repeatable): events whose feature has that value, compared as text.

    >>> parse_skip_where(["VisitorType=Other", "Weekend=true"])
    (('VisitorType', 'Other'), ('Weekend', 'true'))
    """
    out = []
    for text in texts:
        feature, sep, value = text.partition("=")
        if not sep or not feature.strip():
            raise InputError(f"--skip-where {text!r} is not FEATURE=VALUE")
        out.append((feature.strip(), value.strip()))
    return tuple(out)


def matched(features: dict[str, Any], where: tuple[tuple[str, str], ...]) -> int | None:
    """The first ``--skip-where`` clause ``features`` match (its index), ``None`` for none: a boolean as
    ``true``/``false``, a number equal as a number (``0`` is ``0.0``), anything else as text.

    >>> where = (("Weekend", "true"), ("SpecialDay", "0.0"), ("Month", "Feb"))
    >>> matched({"Weekend": False, "SpecialDay": 0}, where), matched({"Month": "Feb"}, where), matched({}, where)
    (1, 2, None)
    """
    for index, (feature, value) in enumerate(where):
        held = features.get(feature)
        if held is None:
            continue
        if isinstance(held, bool):
            if ("true" if held else "false") == value.lower():
                return index
        elif isinstance(held, int | float):
            try:
                if float(value) == float(held):
                    return index
            except ValueError:
                continue
        elif str(held) == value:
            return index
    return None


def check_matched(where: tuple[tuple[str, str], ...], counts: list[int]) -> None:
    """Refuse (``InputError``) a rebuild whose ``--skip-where`` clause skipped no event: a typo repairs nothing."""
    idle = [f"{feature}={value}" for (feature, value), count in zip(where, counts, strict=True) if not count]
    if idle:
        raise InputError(
            f"--skip-where {', '.join(idle)} matched no event of the range (a feature's name or value mistyped?): "
            "the branch is marked failed; drop it and run again"
        )


def plan_file_rebuild(
    settings: Settings,
    store: VersionStore,
    *,
    name: str,
    base: int | None,
    path: str,
    force: bool = False,
    **options: Any,
) -> RebuildPlan:
    """A rebuild from a CSV of sessions (the dataset's columns, as ``livelearn produce`` reads) instead of the topic:
    its rows in order are the offsets 0..n-1 of one partition; the branch's versions carry the base's offsets (the
    file is not in Kafka: a promoted branch goes on with the stream from where the base stood)."""
    from streaming.local.dataset import check_columns, read_events

    if not _NAME.fullmatch(name):
        raise InputError(f"branch name {name!r}: 1-64 letters, digits, '.', '_' or '-'")
    check_columns(path)
    rows = sum(1 for _ in read_events(path))
    offsets: dict[str, dict[str, int]] = {}
    epoch = 0
    if base is not None:
        meta = _base_meta(store, base, force)
        offsets, epoch = meta.offsets, meta.epoch
    key = f"file:{path}"
    return RebuildPlan(
        name=name,
        base=base,
        start={key: {"0": 0}},
        until={key: {"0": rows}},
        exclusions=(),
        epoch=epoch,
        source=path,
        offsets=offsets,
        **options,
    )


def _base_meta(store: VersionStore, base: int, force: bool) -> Any:
    try:
        meta = store.meta(base)
    except VersionNotFoundError:
        raise RebuildError(f"base version {base} of model {store.keys.model_name!r} is not stored") from None
    incident = store.quarantined().get(base)
    if incident is not None and not force:
        raise RebuildError(f"base version {base} is quarantined by incident {incident}; --force to use it anyway")
    return meta


def plan_rebuild(
    settings: Settings,
    store: VersionStore,
    *,
    name: str,
    base: int | None,
    until: str = "head",
    exclusions: tuple[Exclusion, ...] = (),
    incidents: tuple[int, ...] = (),
    force: bool = False,
    include_held: bool = False,
    consumer: Consumer | None = None,
    **options: Any,
) -> RebuildPlan:
    """Check a rebuild before it starts: the base version exists and is not quarantined (unless ``force``), the
    range holds (Kafka still holds its first offsets: the log start offset), each exclusion names a partition of the
    topic and offsets in the range, and (unless ``include_held``) the lineage did not hold learning in the range (a
    rebuild learns every event it reads) outside the excluded ``incidents``' ranges. Each incident becomes the
    exclusions of its range (:meth:`snapshotter.incidents.Incidents.range`) within the range read.
    ``options``: the plan's ``mode``, ``batch_size``, ``epochs``, ``seed``, ``every``, ``skip_where``."""
    if not _NAME.fullmatch(name):
        raise InputError(f"branch name {name!r}: 1-64 letters, digits, '.', '_' or '-'")
    if settings.labels.joined:
        raise RebuildError(
            "a rebuild with the label join (LIVELEARN_LABEL_WAIT) is not supported yet: its waiting events are not "
            "replayed; rebuild with the join off only where labels come inside the events"
        )
    topic = settings.kafka.events_topic
    epoch, start_offsets = 0, {}
    if base is not None:
        meta = _base_meta(store, base, force)
        start_offsets = dict(meta.offsets.get(topic, {}))
        epoch = meta.epoch
    own = consumer is None
    consumer = consumer or make_consumer(settings.kafka)
    try:
        partitions = topic_partitions(consumer, topic)
        timeout = int(settings.kafka.bootstrap_timeout_seconds * 1000)
        logs = consumer.beginning_offsets(partitions, timeout_ms=timeout)
        ends = fetched_ends(consumer, partitions, timeout / 1000)
    finally:
        if own:
            consumer.close()
    if base is None:  # from nothing: from the start of each log
        start = {tp: logs.get(tp, 0) for tp in partitions}
    else:  # a partition the base never read: from its start (offset 0), as the live learner read it
        start = {tp: int(start_offsets.get(str(tp.partition), 0)) for tp in partitions}
    expired = [(tp, start[tp], logs[tp]) for tp in partitions if tp in logs and logs[tp] > start[tp]]
    if expired:
        said = "; ".join(
            f"{tp.topic}[{tp.partition}] needs offset {need}, its log starts at {at}" for tp, need, at in expired
        )
        raise OffsetsExpiredError(f"Kafka no longer holds the range to rebuild ({said}): rebuild from a newer version")
    stop = parse_until(until, ends)
    behind = [tp for tp in partitions if stop[tp] < start[tp]]
    if behind:
        named = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in behind)
        raise InputError(f"--until is before the base version's offsets on {named}")
    for exclusion in exclusions:
        if exclusion.topic != topic:
            raise InputError(f"--exclude {exclusion}: the rebuild reads {topic!r}, not {exclusion.topic!r}")
        tp = TopicPartition(topic, exclusion.partition)
        if tp not in start:
            raise InputError(f"--exclude {exclusion}: {topic!r} has no partition {exclusion.partition}")
        if exclusion.last < start[tp] or exclusion.first >= stop[tp]:
            raise InputError(
                f"--exclude {exclusion}: outside the range read on partition {exclusion.partition} "
                f"({start[tp]}-{stop[tp] - 1}): it would exclude nothing"
            )
    skipped = [Incidents(store, ControlPlane(store)).range(number) for number in incidents]
    resolved = [_within(span, topic, start, stop) for span in skipped]
    if not include_held:
        first = {str(tp.partition): at for tp, at in start.items()}
        last = {str(tp.partition): at for tp, at in stop.items()}
        held = _held(store, base, topic, first, last, excused=skipped)
        head = store.head()
        frozen = ControlPlane(store).frozen()
        reached = store.meta(head).offsets.get(topic, {}) if head is not None else {}
        if frozen is not None and head is not None and any(int(reached.get(p, 0)) < at for p, at in last.items()):
            why = (frozen.get("reason") or "frozen")[:200]
            raise RebuildError(
                f"the range crosses a hold: learning is held now ({why}) and the lineage's newest version {head} is "
                "before the range's end: the live learner may not have learned the events after it. Rebuild up to "
                "its offsets, or learn them anyway with --include-held"
            )
        if held:
            raise RebuildError(
                f"the range crosses a hold: versions {', '.join(map(str, held[:10]))} of the lineage were written "
                "while learning was held (frozen, or an incident): the live learner did not learn the events there. "
                "Exclude them (incident:ID, or their offsets: `livelearn versions show`) or learn them anyway with "
                "--include-held"
            )
    return RebuildPlan(
        name=name,
        base=base,
        start={topic: {str(tp.partition): start[tp] for tp in partitions}},
        until={topic: {str(tp.partition): stop[tp] for tp in partitions}},
        exclusions=(*exclusions, *(e for found in resolved for e in found)),
        epoch=epoch,
        incidents=tuple(incidents),
        **options,
    )


def _within(
    span: IncidentRange, topic: str, start: dict[TopicPartition, int], stop: dict[TopicPartition, int]
) -> list[Exclusion]:
    """Incident ``span``'s offsets within the range read, as exclusions; refused when it excludes nothing there.

    >>> tp = TopicPartition("ev", 0)
    >>> span = IncidentRange(2, {"ev": {"0": 100}}, {"ev": {"0": 400}})
    >>> [str(e) for e in _within(span, "ev", {tp: 250}, {tp: 1000}) + _within(span, "ev", {tp: 0}, {tp: 300})]
    ['kafka:ev:0:250-399', 'kafka:ev:0:100-299']
    >>> _within(span, "ev", {tp: 400}, {tp: 900})
    Traceback (most recent call last):
    ...
    streaming.errors.InputError: --exclude incident:2: its range (ev[0] 100-399) is outside the range read: ...
    >>> _within(IncidentRange(3, {"ev": {"0": 500}}, {"ev": {"0": 450}}), "ev", {tp: 0}, {tp: 900})
    Traceback (most recent call last):
    ...
    streaming.errors.InputError: --exclude incident:3: the lineage kept nothing from it (...): it excludes nothing
    """
    if not span.spans():
        raise InputError(
            f"--exclude incident:{span.incident}: the lineage kept nothing from it (learning went on where it was "
            "held from: a learner restored from before it learned those events): it excludes nothing"
        )
    found = []
    for name, partition, first, last in span.spans():
        tp = TopicPartition(name, partition)
        if name == topic and tp in start and last >= start[tp] and first < stop[tp]:
            found.append(Exclusion(topic, partition, max(first, start[tp]), min(last, stop[tp] - 1)))
    if not found:
        where = ", ".join(f"{t}[{p}] {a}-{b}" for t, p, a, b in span.spans()) or "nothing"
        raise InputError(
            f"--exclude incident:{span.incident}: its range ({where}) is outside the range read: it would exclude "
            "nothing"
        )
    return found


def fetched_ends(consumer: Consumer, partitions: list[TopicPartition], budget: float) -> dict[TopicPartition, int]:
    """Each partition's end now: the high-water mark of a fetch (some brokers' ListOffsets "latest" lags behind
    a batched produce), at least what ListOffsets says. Leaves ``consumer`` assigned to ``partitions``."""
    listed = consumer.end_offsets(partitions, timeout_ms=max(1, int(budget * 1000)))
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek(tp, max(0, listed.get(tp, 0) - 1))
    deadline = time.monotonic() + budget
    while any(consumer.highwater(tp) is None for tp in partitions) and time.monotonic() < deadline:
        consumer.poll(timeout_ms=200, max_records=1)
    return {tp: max(listed.get(tp, 0), consumer.highwater(tp) or 0) for tp in partitions}


def _held(
    store: VersionStore,
    base: int | None,
    topic: str,
    start: dict[str, int],
    stop: dict[str, int],
    *,
    excused: list[IncidentRange] | None = None,
) -> list[int]:
    """The lineage's versions written while learning was held (``extra.frozen``: frozen by an operator or the
    monitor, or an incident holding it) whose stretch of ``topic`` — from the version before it to it, partition by
    partition — meets the range read (``start`` to ``stop``, per partition: the hold began somewhere in that stretch,
    so maybe inside the range, also when the version itself is past its end), and the base if it was written held;
    except those written inside an ``excused`` incident's range (on every partition, its end included)."""
    chain: list[VersionMeta] = []  # the lineage, newest first, down to the base or the first version before the range
    number, seen = store.head(), set()
    while number is not None and number not in seen:
        seen.add(number)
        try:
            meta = store.meta(number)
        except SnapshotError:
            break
        chain.append(meta)
        reached = meta.offsets.get(topic, {})
        if number == base or all(int(reached.get(p, 0)) <= at for p, at in start.items()):
            break
        number = meta.parent
    held = []
    complete = (
        not chain
        or chain[-1].number == base
        or chain[-1].parent is None
        or all(int(chain[-1].offsets.get(topic, {}).get(p, 0)) <= at for p, at in start.items())
    )  # (else the walk stopped at a version retention dropped: where the oldest one read began is not known)
    for i, meta in enumerate(chain):
        if not meta.extra.get("frozen") or any(_inside(meta.offsets, span) for span in excused or ()):
            continue
        upper = meta.offsets.get(topic, {})
        if i + 1 < len(chain) or complete:  # its stretch: from the version before it (the lineage's first: from 0)
            lower = chain[i + 1].offsets.get(topic, {}) if i + 1 < len(chain) else {}
            meets = any(int(lower.get(p, 0)) < stop[p] and int(upper.get(p, 0)) > start[p] for p in start)
        else:  # the oldest read, the one before it dropped by retention: only its own offsets are known
            meets = any(start[p] < int(upper.get(p, 0)) <= stop[p] for p in start)
        if meta.number == base or meets:
            held.append(meta.number)
    return sorted(held)


def _inside(offsets: dict[str, dict[str, int]], span: IncidentRange) -> bool:
    """Whether a version at ``offsets`` was written inside ``span``: at or after its start on every partition, and
    at or before its end on a partition where it holds something (a successor replaying a held stretch learns a
    partition past its release while another is still held).

    >>> span = IncidentRange(2, {"ev": {"0": 100, "1": 50}}, {"ev": {"0": 400, "1": 50}})
    >>> [_inside({"ev": {"0": at, "1": 50}}, span) for at in (99, 100, 400, 401)], _inside({"ev": {"1": 51}}, span)
    ([False, True, True, False], False)
    >>> both = IncidentRange(3, {"ev": {"0": 100, "1": 50}}, {"ev": {"0": 400, "1": 90}})
    >>> _inside({"ev": {"0": 900, "1": 70}}, both), _inside({"ev": {"0": 900, "1": 91}}, both)
    (True, False)
    """
    if not span.end:
        return False
    within = False
    for topic, parts in offsets.items():
        if topic not in span.end:
            continue
        for p, offset in parts.items():
            first, last = int(span.start.get(topic, {}).get(p, 0)), int(span.end[topic].get(p, -1))
            if offset < first:
                return False
            within = within or (first < last and offset <= last)
    return within


def settings_hash(settings: Settings) -> str:
    """A short hash of the settings that shape learning (no secrets, no addresses)."""
    hidden = {
        name
        for name in type(settings).model_fields
        if "password" in name or "token" in name or name.endswith(("_url", "_bootstrap", "_host"))
    }
    doc = settings.model_dump(mode="json", exclude=hidden)
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def provenance(settings: Settings, plan: RebuildPlan, engine: str) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "unknown"

    return {
        "base": plan.base,
        "ranges": plan.ranges,
        "exclusions": [str(e) for e in plan.exclusions],
        **({"incidents": list(plan.incidents)} if plan.incidents else {}),
        "mode": plan.mode,
        **({"batch_size": plan.batch_size, "epochs": plan.epochs, "seed": plan.seed} if plan.mode == "batch" else {}),
        "engine": engine,
        "river": of("river"),
        "livelearn": of("livelearn"),
        "settings_sha256": settings_hash(settings),
    }


def merged_records(
    consumer: Consumer,
    start: dict[TopicPartition, int],
    until: dict[TopicPartition, int],
    *,
    stall_seconds: float = 60.0,
) -> Iterator[Record]:
    """The records of every partition from ``start`` to ``until``, merged by (timestamp, partition, offset): at most
    one record of each partition waits to be merged, so each partition keeps its offset order. A partition is done
    when the consumer's position reaches ``until`` (offsets without a record — transaction markers, compacted
    records — count). Raises :class:`RebuildError` when no record comes for ``stall_seconds``."""
    todo = {tp for tp in start if until[tp] > start[tp]}
    if not todo:
        return
    consumer.assign(sorted(todo))
    for tp in todo:
        consumer.seek(tp, start[tp])
    buffers: dict[TopicPartition, deque[Record]] = {tp: deque() for tp in todo}
    done: set[TopicPartition] = set()
    heap: list[tuple[int, int, int, TopicPartition]] = []
    progress = time.monotonic()

    def fill() -> None:
        nonlocal progress
        while True:
            for tp in todo:
                if tp not in done and not buffers[tp] and consumer.position(tp) >= until[tp]:
                    done.add(tp)
            waiting = [tp for tp in todo if tp not in done and not buffers[tp]]
            if not waiting:
                return
            got = False
            for tp, records in consumer.poll(timeout_ms=500, max_records=5000).items():
                if tp not in buffers or tp in done:
                    continue
                for record in records:
                    if record.offset >= until[tp]:
                        done.add(tp)
                        break
                    buffers[tp].append(record)
                    got = True
            now = time.monotonic()
            if got:
                progress = now
            elif now - progress > stall_seconds:
                stuck = ", ".join(
                    f"{tp.topic}[{tp.partition}] at {consumer.position(tp)} of {until[tp]}" for tp in waiting
                )
                raise RebuildError(f"no record came for {stall_seconds:.0f} s: {stuck}; is the broker up?")

    if len(todo) == 1:  # one partition: its offset order, nothing to merge
        (only,) = todo
        buffer = buffers[only]
        while True:
            fill()
            if not buffer:
                return
            while buffer:
                yield buffer.popleft()
    fill()
    for tp, buffer in buffers.items():
        if buffer:
            r = buffer[0]
            heapq.heappush(heap, (r.timestamp, r.partition, r.offset, tp))
    while heap:
        _ts, _p, _o, tp = heapq.heappop(heap)
        record = buffers[tp].popleft()
        yield record
        if not buffers[tp] and tp not in done:
            fill()
        if buffers[tp]:
            r = buffers[tp][0]
            heapq.heappush(heap, (r.timestamp, r.partition, r.offset, tp))


def file_records(path: str, topic: str) -> Iterator[Record]:
    """The rows of a CSV of sessions as records of one partition (offsets 0..n-1), encoded as events."""
    from streaming.events import encode_event
    from streaming.local.dataset import read_events

    for offset, event in enumerate(read_events(path)):
        yield Record(topic, 0, offset, None, encode_event(event), [], 0)


def _filtered(
    record: Record, settings: Settings, limits: EventLimits, where: tuple[tuple[str, str], ...]
) -> int | None:
    """The ``--skip-where`` clause ``record`` matches (a record that is no event is left to the step)."""
    fmt = "msgpack" if record.topic.startswith("file:") else settings.kafka.event_format
    try:
        event = decode_event(record.value, fmt, limits)
    except EventError:
        return None
    return matched(event.features, where) if isinstance(event, Event) else None


def start_branch(
    settings: Settings, store: VersionStore, plan: RebuildPlan, *, actor: str
) -> tuple[Settings, LearnerState, Branches, dict[str, Any]]:
    """What every rebuild starts with: its settings (nothing published; a file's rows are msgpack events), the state
    restored from the base version (or fresh), the branch registered (:meth:`Branches.start`) and its provenance."""
    from streaming.engines import resolve_engine

    offline = settings.model_copy(update={"publish_predictions": False})
    if plan.source is not None:
        offline = offline.model_copy(update={"event_format": "msgpack"})
    state = LearnerState.fresh(spec_from_settings(offline), offline)
    if plan.base is not None:
        try:
            state.adopt(restore_version(store, plan.base, state.spec, offline.learner.rolling_window))
        except SnapshotError as exc:
            raise RebuildError(f"base version {plan.base} cannot be restored: {exc}") from None
    origin = provenance(offline, plan, resolve_engine(offline.model.engine))
    branches = Branches(store)
    branches.start(plan.name, base=plan.base, ranges=plan.ranges, provenance=origin, actor=actor)
    return offline, state, branches, origin


def run_rebuild(
    settings: Settings,
    store: VersionStore,
    plan: RebuildPlan,
    *,
    actor: str,
    progress: Callable[[int, int], None] | None = None,
) -> RebuildReport:
    """Carry out ``plan``: the branch registered (refused when a running rebuild overlaps), each record of the range
    stepped as the live learner steps it (no prediction published), versions written every ``plan.every`` records
    and at the end. A failure marks the branch ``failed`` (its versions stay) and goes up."""
    if plan.mode == "batch":
        from streaming.learner.minibatch import run_batch_rebuild

        report: RebuildReport = run_batch_rebuild(settings, store, plan, actor=actor)
        return report
    started = time.monotonic()
    offline, state, branches, origin = start_branch(settings, store, plan, actor=actor)
    state.watch.holds = False  # it learns every event it reads and does not exclude (its exclusions are the repair)
    if state.watch.incident is not None:  # a base written during an incident (--force): not held here either
        state.watch.accept_new_normal()
    telemetry = LearnerMetrics(CollectorRegistry(), offline.model_name)
    step = EventStep(offline, telemetry)
    outputs = Outputs(Discard(), offline, telemetry)
    (topic,) = plan.start
    start = {TopicPartition(topic, int(p)): o for p, o in plan.start[topic].items()}
    until = {TopicPartition(topic, int(p)): o for p, o in plan.until[topic].items()}
    positions = dict(start)
    limits = EventLimits.from_settings(offline.limits)
    excluded_by: dict[int, list[tuple[int, int]]] = {}
    for exclusion in plan.exclusions:
        excluded_by.setdefault(exclusion.partition, []).append((exclusion.first, exclusion.last))
    versions: list[int] = []
    parent = plan.base
    read = excluded = 0
    matches = [0] * len(plan.skip_where)
    beat = time.monotonic()
    extra = {"rebuild": origin}

    def write() -> None:
        nonlocal parent
        snapshot = state.snapshot_state()
        offsets = (
            plan.offsets
            if plan.source is not None and plan.offsets is not None
            else {topic: {str(tp.partition): position for tp, position in positions.items()}}
        )
        meta = branches.write(
            plan.name,
            snapshot,
            offsets=offsets,
            metrics={"rolling": state.metrics.rolling_values(), "cumulative": state.metrics.cumulative_values()},
            parent=parent,
            epoch=plan.epoch,
            extra=extra,
            model_events_learned=state.model.steps,
        )
        versions.append(meta.number)
        parent = meta.number

    run: list[Record] = []  # records of one partition to step, in order (as runs: EventStep.process_run)

    def step_stretch() -> None:
        if not run:
            return
        tp, i = TopicPartition(run[0].topic, run[0].partition), 0
        while i < len(run):
            i = step.process_run(state, run, i, limit=len(run), outputs=outputs, positions=positions, tp=tp)[0]
            state.samples.clear()  # offline: nothing is recorded in the history
            for event, _sample in state.incident_events:  # (its watch holds nothing: said, not acted on)
                if event.kind == "incident_start":
                    log.warning("the rebuild's data-quality watch: %s; taken as the new normal, learned", event.reason)
            state.incident_events.clear()
        run.clear()

    consumer = make_consumer(offline.kafka)
    records = file_records(plan.source, topic) if plan.source is not None else merged_records(consumer, start, until)
    try:
        for record in records:
            read += 1
            spans = excluded_by.get(record.partition)
            clause = _filtered(record, offline, limits, plan.skip_where) if plan.skip_where else None
            if clause is not None:
                matches[clause] += 1
            if run and (run[0].partition != record.partition or run[0].topic != record.topic):
                step_stretch()  # (merged partitions: in the merged order, a run per stretch of one partition)
            if clause is not None or (spans is not None and any(a <= record.offset <= b for a, b in spans)):
                step_stretch()
                positions[TopicPartition(record.topic, record.partition)] = record.offset + 1
                excluded += 1
            else:
                run.append(record)
            if read % plan.every == 0 or len(run) >= RUN_RECORDS:
                step_stretch()
                if read % plan.every == 0:
                    write()
            if time.monotonic() - beat > HEARTBEAT_SECONDS:
                beat = time.monotonic()
                branches.report(plan.name, read=read)
                if progress is not None:
                    progress(read, plan.records)
        step_stretch()
        positions = dict(until)
        check_matched(plan.skip_where, matches)
        if not versions or read % plan.every:
            write()
    except BaseException:
        branches.finish(plan.name, "failed", read=read)
        raise
    finally:
        consumer.close()
    branches.finish(plan.name, "done", read=read, excluded=excluded, learned=step.learned)
    return RebuildReport(plan.name, tuple(versions), read, excluded, step.learned, time.monotonic() - started)


def validate_branch(settings: Settings, store: VersionStore, name: str, *, last: int = 1000) -> dict[str, Any]:
    """Score the head of branch ``name`` and the lineage's head on the labelled events among the last ``last``
    offsets of the branch's range (excluded offsets left out) and on the reference set (when one is configured):
    accuracy and log loss, the guarded metric on the reference set. Nothing is learned."""
    from monitor.prequential import PrequentialMetrics
    from streaming.learner.reference_gate import ReferenceGate, load_reference_set

    doc = Branches(store).get(name)
    if doc is None:
        raise RebuildError(f"no branch named {name!r} (see `livelearn rebuild list`)")
    if doc.get("head") is None:
        raise RebuildError(f"branch {name!r} has no version yet")
    spec, window = spec_from_settings(settings), settings.learner.rolling_window
    models = {"branch": (int(doc["head"]), None), "lineage": (store.head(), None)}
    restored = {"branch": restore_version(store, int(doc["head"]), spec, window).model}
    unavailable: str | None = None
    head = store.head()
    if head is not None:
        try:  # a lineage head that cannot be read (corrupt: what a repair is for) is shown so, not a refusal
            restored["lineage"] = restore_version(store, head, spec, window).model
        except SnapshotError as exc:
            unavailable = str(exc)
    topic = settings.kafka.events_topic
    ranges = doc["ranges"].get(topic, {})
    excluded = [
        Exclusion.parse(text) for text in doc.get("provenance", {}).get("exclusions", []) if isinstance(text, str)
    ]
    until = {TopicPartition(topic, int(p)): int(span[1]) for p, span in ranges.items()}
    start = {tp: max(int(ranges[str(tp.partition)][0]), end - last) for tp, end in until.items()}
    limits = EventLimits.from_settings(settings.limits)
    events = []
    consumer = make_consumer(settings.kafka)
    try:
        for record in merged_records(consumer, start, until):
            if any(e.partition == record.partition and e.first <= record.offset <= e.last for e in excluded):
                continue
            try:
                event = decode_event(record.value, settings.kafka.event_format, limits)
            except EventError:  # a record the learner dead-letters is not scored here either
                continue
            if getattr(event, "label", None) is not None and hasattr(event, "features"):
                events.append(event)
    finally:
        consumer.close()
    out: dict[str, Any] = {"doc": doc, "labelled_events": len(events)}
    if unavailable is not None:
        out["lineage"] = {"version": head, "unavailable": unavailable}
    reference = load_reference_set(settings)
    gate = ReferenceGate(settings, reference) if reference else None
    for key, model in restored.items():
        scores = PrequentialMetrics(window=max(len(events), 1), names=("accuracy", "log_loss"))
        for event in events:
            scores.update(bool(event.label), model.predict_proba_one(event.features))
        figures = scores.cumulative_values() if events else {"accuracy": 0.0, "log_loss": 0.0}
        out[key] = {
            "version": models[key][0],
            "accuracy": figures["accuracy"],
            "log_loss": figures["log_loss"],
            **({"reference": gate.score(model)} if gate is not None else {}),
        }
    return out
