"""How guard segments are written in the settings (``LIVELEARN_GUARD_SEGMENTS``): one short string each.

A segment splits the labelled events into groups the label-odds rule watches apart (a labeller broken for one kind of
session moves that group's labels, not the stream's):

``FEATURE``
    A categorical feature: one group per value (``VisitorType=New_Visitor``), the first ``guard_segment_values``
    values seen, later ones ``FEATURE=other``.
``FEATURE>X``
    A numeric cut: two groups, ``FEATURE>X`` and ``FEATURE<=X`` (``PageValues>0``: the sessions that reached a page
    with a value, and the rest). An event without a number there (missing, text, NaN) is in neither.

>>> parse_segment("VisitorType")
Segment(feature='VisitorType', cut=None)
>>> cut = parse_segment("PageValues > 0")
>>> cut.name, cut.group(12.5), cut.group(0)
('PageValues>0', 'PageValues>0', 'PageValues<=0')
>>> parse_segment("Month").group("Nov"), parse_segment("PageValues>0").group("n/a")
('Month=Nov', None)
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

_FORM = re.compile(r"^\s*([^<>=\s:]+)\s*(?:>\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*)?$")


@dataclasses.dataclass(frozen=True)
class Segment:
    """One guard segment: a categorical ``feature`` (``cut`` ``None``) or a numeric cut at ``cut``."""

    feature: str
    cut: float | None = None

    @property
    def name(self) -> str:
        """As written in the settings, normalised (``PageValues>0``)."""
        return self.feature if self.cut is None else f"{self.feature}>{self.cut:g}"

    def group(self, value: Any) -> str | None:
        """The group of an event whose feature is ``value`` (a categorical segment: ``FEATURE=value``, the caller
        folds values past its limit into ``other``); ``None``: the event is in none of this segment's groups."""
        if self.cut is None:
            return None if value is None else f"{self.feature}={value}"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return None
        return f"{self.feature}>{self.cut:g}" if value > self.cut else f"{self.feature}<={self.cut:g}"


def parse_segment(text: str) -> Segment:
    """One segment as written in the settings; a one-line :class:`ValueError` for anything else."""
    match = _FORM.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"guard segment {text!r}: write FEATURE (a categorical feature) or FEATURE>NUMBER (a numeric cut)"
        )
    feature, cut = match.group(1), match.group(2)
    if cut is not None and not math.isfinite(float(cut)):
        raise ValueError(f"guard segment {text!r}: the cut must be a finite number")
    return Segment(feature, None if cut is None else float(cut))


def parse_segments(texts: Iterable[str]) -> tuple[Segment, ...]:
    """Every segment; each feature cut or split once (twice would count its events twice in one CUSUM bound)."""
    segments = tuple(parse_segment(t) for t in texts)
    names = [s.name for s in segments]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"each segment is named once; repeated: {', '.join(repeated)}")
    return segments
