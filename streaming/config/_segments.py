"""How guard segments are written in the settings (``LIVELEARN_GUARD_SEGMENTS``): one short string each.

A segment splits the labelled events into groups the label-odds rule watches apart (a labeller broken for one kind of
session moves that group's labels, not the stream's):

``FEATURE``
    A categorical feature: one group per value (``VisitorType=New_Visitor``), the first ``guard_segment_values``
    values seen, later ones ``FEATURE=other``.
``FEATURE>X``
    A numeric cut: two groups, ``FEATURE>X`` and ``FEATURE<=X`` (``PageValues>0``: the sessions that reached a page
    with a value, and the rest). An event without a number there (missing, text, NaN) is in neither. A feature whose
    name holds ``<`` or ``>`` cannot be a segment.

>>> parse_segment("VisitorType")
Segment(feature='VisitorType', cut=None)
>>> cut = parse_segment("PageValues > 0")
>>> cut.name, cut.group(12.5), cut.group(0)
('PageValues>0', 'PageValues>0', 'PageValues<=0')
>>> parse_segment("Month").group("Nov"), parse_segment("PageValues>0").group("n/a")
('Month=Nov', None)
>>> parse_segment("Amount > 1234567.5").name, parse_segment("Page Values").name
('Amount>1234567.5', 'Page Values')
>>> parse_segment("PageValues>>0")
Traceback (most recent call last):
...
ValueError: guard segment 'PageValues>>0': write FEATURE (a categorical feature) or FEATURE>NUMBER (a numeric cut)
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["Segment", "parse_segment", "parse_segments"]

_NUMBER = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")


def _number(cut: float) -> str:
    """``cut`` written exactly and short (the shortest text that reads back as the same float; no ``.0``)."""
    text = repr(cut)
    return text[:-2] if text.endswith(".0") else text


@dataclasses.dataclass(frozen=True)
class Segment:
    """One guard segment: a categorical ``feature`` (``cut`` ``None``) or a numeric cut at ``cut``."""

    feature: str
    cut: float | None = None

    @property
    def name(self) -> str:
        """As written in the settings, normalised (``PageValues>0``)."""
        return self.feature if self.cut is None else f"{self.feature}>{_number(self.cut)}"

    def group(self, value: Any) -> str | None:
        """The group of an event whose feature is ``value`` (a categorical segment: ``FEATURE=value``, the caller
        folds values past its limit into ``other``); ``None``: the event is in none of this segment's groups."""
        if self.cut is None:
            return None if value is None else f"{self.feature}={value}"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return None
        cut = _number(self.cut)
        return f"{self.feature}>{cut}" if value > self.cut else f"{self.feature}<={cut}"


def parse_segment(text: str) -> Segment:
    """One segment as written in the settings; a one-line :class:`ValueError` for anything else. A feature's name may
    hold anything but ``<``, ``>`` and line breaks; outer spaces are dropped."""
    problem = f"guard segment {text!r}: write FEATURE (a categorical feature) or FEATURE>NUMBER (a numeric cut)"
    if not isinstance(text, str) or "<" in text or "\n" in text or "\r" in text or text.count(">") > 1:
        raise ValueError(problem)
    feature, cut, number = (part.strip() for part in text.partition(">"))
    if not feature or (cut and not _NUMBER.match(number)):
        raise ValueError(problem)
    if not cut:
        return Segment(feature)
    value = float(number)
    if not math.isfinite(value):
        raise ValueError(f"guard segment {text!r}: the cut must be a finite number")
    return Segment(feature, value + 0.0)  # (-0 is 0)


def parse_segments(texts: Iterable[str]) -> tuple[Segment, ...]:
    """Every segment, each named once (twice would count its events twice under one name)."""
    segments = tuple(parse_segment(t) for t in texts)
    names = [s.name for s in segments]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"each segment is named once; repeated: {', '.join(repeated)}")
    return segments
