"""How a challenger is written in the settings (``LIVELEARN_CHALLENGERS``, ``--challenger``): one short string each.

A challenger is another model that learns in shadow beside the serving one (the champion) from the same labelled
events (:mod:`streaming.learner.arms`). It is written ``NAME:KEY=VALUE,KEY=VALUE`` — ``NAME`` 1 to 32 lowercase
letters, digits, ``-`` or ``_`` (a bare ``KEY=VALUE,...`` is named ``challenger``) — with these keys, each at most
once; a key not given is the champion's:

``lr`` (or ``learning_rate``)
    The SGD learning rate (above 0, at most 10).
``l2``
    The L2 regularisation strength (0 to 10).
``include`` / ``exclude``
    Features the challenger learns only / ignores, ``|``-separated (``exclude=Month|Weekend``).
``start``
    ``cold`` (default: nothing learned), ``champion`` (the champion's model as it is when the challenger starts), or
    ``version:N`` (stored version N's model — a rebuild's branch head, say —; declared at run time only, with
    ``livelearn challengers add``: a version number belongs to one store, not to the settings).
``kind``
    ``logistic_regression``, or river's ``pa`` (passive-aggressive), ``alma`` or ``gaussian_nb`` behind the same front
    (:mod:`streaming.classifiers`).

>>> parse_challenger("fast:lr=0.05")
ChallengerConfig(name='fast', overrides={'learning_rate': 0.05}, start='cold')
>>> parse_challenger("lr=0.02,exclude=Month|Weekend,start=champion")
ChallengerConfig(name='challenger', overrides={'learning_rate': 0.02, 'features_exclude': ('Month', 'Weekend')}, \
start='champion')
>>> parse_challenger("fast:lr=fast")
Traceback (most recent call last):
...
ValueError: challenger 'fast:lr=fast': lr must be a number above 0 and at most 10, not 'fast'
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["BASE", "CHAMPION", "ChallengerConfig", "parse_challenger", "parse_challengers"]

#: The alias of the arm that serves; never a challenger's name.
CHAMPION = "champion"
#: The arm name of the model the settings describe (the champion until a promotion); never a challenger's name.
BASE = "base"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_VERSION = re.compile(r"version:[1-9][0-9]{0,17}")
_KINDS = ("logistic_regression", "pa", "alma", "gaussian_nb")  # (all but the first: streaming.classifiers)


@dataclasses.dataclass(frozen=True)
class ChallengerConfig:
    """One challenger as declared: its name, what differs from the champion's spec, and how it starts.

    ``overrides`` holds :class:`~streaming.vocabulary.ModelSpec` field names (``learning_rate``, ``l2``,
    ``features_include``, ``features_exclude``, ``kind``); everything else is the champion's.
    """

    name: str
    overrides: dict[str, Any]
    start: str = "cold"  #: ``cold``, ``champion`` or ``version:N``

    @property
    def start_version(self) -> int | None:
        """N of ``start=version:N``, else ``None``.

        >>> parse_challenger("b:start=version:12").start_version, parse_challenger("c").start_version
        (12, None)
        """
        return int(self.start.split(":", 1)[1]) if self.start.startswith("version:") else None

    def describe(self) -> str:
        """The declaration written back (``fast:lr=0.05``), in a fixed key order."""
        parts = []
        for key, value in self.overrides.items():
            short = {"learning_rate": "lr", "features_include": "include", "features_exclude": "exclude"}.get(key, key)
            parts.append(f"{short}={'|'.join(value) if isinstance(value, tuple) else value}")
        if self.start != "cold":
            parts.append(f"start={self.start}")
        return f"{self.name}:{','.join(parts)}" if parts else self.name


def _number(text: str, key: str, low: float, high: float, *, low_open: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isnan(value) or value > high or value < low or (low_open and value == low):
        bound = f"above {low:g}" if low_open else f"at least {low:g}"
        raise ValueError(f"{key} must be a number {bound} and at most {high:g}, not {text!r}")
    return value


def _features(text: str, key: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split("|"))
    if not all(names):
        raise ValueError(f"{key} takes feature names separated by |, not {text!r}")
    return names


def _read(key: str, value: str, config: dict[str, Any]) -> None:
    if key in ("lr", "learning_rate"):
        config["overrides"]["learning_rate"] = _number(value, key, 0.0, 10.0, low_open=True)
    elif key == "l2":
        config["overrides"]["l2"] = _number(value, key, 0.0, 10.0, low_open=False)
    elif key in ("include", "features_include"):
        config["overrides"]["features_include"] = _features(value, key)
    elif key in ("exclude", "features_exclude"):
        config["overrides"]["features_exclude"] = _features(value, key)
    elif key == "kind":
        if value not in _KINDS:
            raise ValueError(f"kind {value!r} is not one the engines build; supported: {', '.join(_KINDS)}")
        config["overrides"]["kind"] = value
    elif key == "start":
        if value not in ("cold", "champion") and not _VERSION.fullmatch(value):
            raise ValueError(f"start is cold, champion or version:N (a stored version's number), not {value!r}")
        config["start"] = value
    else:
        raise ValueError(f"unknown key {key!r}; use lr, l2, include, exclude, start or kind")


def parse_challenger(text: str) -> ChallengerConfig:
    """One challenger from its declaration (see the module docstring); a ``ValueError`` of one line if it is wrong.

    Parameters
    ----------
    text
        ``NAME:KEY=VALUE,...``, ``NAME`` alone (the champion's spec, learned cold: an A/A twin), or ``KEY=VALUE,...``.

    Examples
    --------
    >>> parse_challenger("twin").overrides
    {}
    >>> parse_challenger("slow:lr=0.005,l2=0.001").describe()
    'slow:lr=0.005,l2=0.001'
    >>> parse_challenger("champion:lr=0.1")
    Traceback (most recent call last):
    ...
    ValueError: challenger 'champion:lr=0.1': 'champion' names the serving arm; call the challenger something else
    """
    declared = text.strip()
    try:
        name, _, body = declared.partition(":") if ":" in declared or "=" not in declared else ("", "", declared)
        name = name.strip() or "challenger"
        if not _NAME.fullmatch(name):
            raise ValueError(f"name {name!r} must be 1-32 lowercase letters, digits, - or _")
        if name in (CHAMPION, BASE):
            raise ValueError(f"{name!r} names the serving arm; call the challenger something else")
        config: dict[str, Any] = {"overrides": {}, "start": "cold"}
        seen: set[str] = set()
        for item in filter(None, (part.strip() for part in body.split(","))):
            key, sep, value = (piece.strip() for piece in item.partition("="))
            if not sep or not value:
                raise ValueError(f"{item!r} is not KEY=VALUE")
            canonical = {"learning_rate": "lr", "features_include": "include", "features_exclude": "exclude"}.get(key)
            if (canonical or key) in seen:
                raise ValueError(f"{key} given twice")
            seen.add(canonical or key)
            _read(key, value, config)
    except ValueError as exc:
        raise ValueError(f"challenger {declared!r}: {exc}") from None
    return ChallengerConfig(name, config["overrides"], config["start"])


def parse_challengers(texts: Iterable[str]) -> tuple[ChallengerConfig, ...]:
    """Every declared challenger, in order; two of one name are a ``ValueError``.

    >>> [c.name for c in parse_challengers(["fast:lr=0.05", "slow:lr=0.005"])]
    ['fast', 'slow']
    >>> parse_challengers(["lr=0.05", "lr=0.02"])
    Traceback (most recent call last):
    ...
    ValueError: two challengers are named 'challenger'; name each (NAME:KEY=VALUE,...)
    """
    configs: list[ChallengerConfig] = []
    for text in texts:
        config = parse_challenger(text)
        if config.start_version is not None:
            raise ValueError(
                f"challenger {text!r}: start={config.start} names a stored version: declare it at run time "
                "(livelearn challengers add), not in the settings"
            )
        if any(other.name == config.name for other in configs):
            raise ValueError(f"two challengers are named {config.name!r}; name each (NAME:KEY=VALUE,...)")
        configs.append(config)
    return tuple(configs)
