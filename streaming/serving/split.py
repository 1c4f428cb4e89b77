"""Which arm of the serving version answers a request: the ``champion`` alias and the canary split (pure: no I/O).

Every version holds every arm: its own model and each challenger that learned in shadow beside it (the blob's
``arms``, :mod:`streaming.learner.arms`), so serving can answer with any of them. The **champion** is the arm the
``champion`` alias names (``Keys.champion``) when the version holds it, else the version's own model (alias absent,
equal to the version's own arm name, or naming an arm the version lacks: that case is noted once).

With a **canary** (``Keys.canary``, :class:`~snapshotter.control.Canary`) at ``percent`` p > 0 on an arm the version
holds, a request that carries a user key goes to the canary arm when the key's :func:`bucket` is below p × 100. The
bucket is a stable hash of the model name and the key into 0..9999, so one visitor always gets the same arm at a
given percent, and a visitor on the canary at 5 % stays on it at 25 % (its bucket is below both thresholds): raising
the percent only adds visitors to the canary, lowering it (an abort: 0) only takes them back. A request without a
user key gets the champion; so does any request naming a version (its own model: no alias, no split).

>>> arms = {"base": "<base model>", "fast": "<fast model>"}  # serving holds restored models
>>> version = LoadedVersion(7, "base", arms)
>>> route, notes = resolve(version, alias=None, canary=None, model_name="shop")
>>> route.pick("visitor-1"), notes
(ServedArm(version=7, arm='base', model='<base model>'), [])
>>> route, _ = resolve(version, alias="fast", canary=None, model_name="shop")
>>> route.pick(None).arm  # the alias moves every request to its arm
'fast'
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import NamedTuple

from snapshotter.control import Canary
from streaming.engines import LearningModel

__all__ = ["BUCKETS", "LoadedVersion", "Route", "ServedArm", "bucket", "resolve"]

#: The buckets a user key hashes into: a canary's percent applies to 0.01 % of them at a time.
BUCKETS = 10_000


def bucket(model_name: str, user_key: str) -> int:
    """The stable bucket (0..9999) of ``user_key`` for model ``model_name``: the first 8 bytes of the BLAKE2b hash of
    ``<model>\\0<key>`` (UTF-8) as a big-endian integer, modulo 10,000. The same in every process and release, so a
    visitor keeps its arm across workers, restarts and percent changes; another model splits its visitors anew.

    Parameters
    ----------
    model_name
        The model's name (``LIVELEARN_MODEL_NAME``).
    user_key
        The request's user key (``user_id``): a visitor, a session, whatever the split should be sticky by.

    Examples
    --------
    >>> bucket("shop", "visitor-42") == bucket("shop", "visitor-42")
    True
    >>> 0 <= bucket("shop", "visitor-42") < BUCKETS
    True
    >>> shares = [bucket("shop", f"visitor-{i}") < 2500 for i in range(4000)]
    >>> 0.23 < sum(shares) / len(shares) < 0.27  # a 25 % canary gets about a quarter of the visitors
    True
    """
    digest = hashlib.blake2b(f"{model_name}\0{user_key}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


class ServedArm(NamedTuple):
    """One arm of a loaded version, as a prediction names it: the version, the arm, and its model."""

    version: int
    arm: str
    model: LearningModel  # restored on the process's engine


class LoadedVersion:
    """A version loaded for serving: its number, the arm name of its own model, and every arm's model (its own
    included, under ``arm``). ``route`` answers with its own model only (a request that names the version)."""

    __slots__ = ("arm", "models", "number", "route", "sha256")

    def __init__(self, number: int, arm: str, models: Mapping[str, LearningModel], sha256: str = "") -> None:
        self.number = number
        self.sha256 = sha256  # the blob's: a number holding other bytes (a store lost, learned anew) is not it
        self.arm = arm
        self.models = dict(models)
        own = ServedArm(number, arm, self.models[arm])
        self.route = Route(own, own)


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """How the serving version answers: the champion, and the canary arm for the buckets below ``threshold`` (0: no
    split; then ``canary`` is the champion). Immutable: a change is a new route, swapped in as one reference."""

    champion: ServedArm
    canary: ServedArm
    threshold: int = 0  # buckets 0..threshold-1 go to the canary: percent × 100
    model_name: str = ""

    @property
    def version(self) -> int:
        return self.champion.version

    @property
    def percent(self) -> float:
        """The share of the requests with a user key that the canary arm answers, in percent."""
        return self.threshold * 100 / BUCKETS

    @property
    def key(self) -> tuple[int, str, str, int]:
        """What a request sees of this route (two routes with one key answer alike)."""
        return self.champion.version, self.champion.arm, self.canary.arm, self.threshold

    def pick(self, user_key: str | None) -> ServedArm:
        """The arm that answers a request with ``user_key`` (``None``: the champion). One hash, only while a canary
        splits."""
        if self.threshold and user_key is not None and bucket(self.model_name, user_key) < self.threshold:
            return self.canary
        return self.champion


def resolve(
    version: LoadedVersion, alias: str | None, canary: Canary | None, model_name: str
) -> tuple[Route, list[str]]:
    """The route of the serving ``version`` under the champion ``alias`` and the ``canary`` (as stored), and notes on
    what could not be followed (an arm the version lacks), for the log.

    >>> version = LoadedVersion(7, "base", {"base": "b", "fast": "f"})
    >>> canary = Canary("fast", 25.0, (5.0, 25.0, 50.0, 100.0), 2, "alice", "why", "1.0")
    >>> route, _ = resolve(version, None, canary, "shop")
    >>> route.threshold, route.canary.arm, route.percent
    (2500, 'fast', 25.0)
    >>> route, notes = resolve(version, "slow", None, "shop")
    >>> route.champion.arm
    'base'
    >>> notes[0].split(" (")[0]
    "the champion alias names arm 'slow', which version 7 does not hold"
    """
    champion = version.route.champion
    notes: list[str] = []
    held = ", ".join(version.models)
    if alias and alias != version.arm:
        model = version.models.get(alias)
        if model is None:
            notes.append(
                f"the champion alias names arm {alias!r}, which version {version.number} does not hold (it holds "
                f"{held}): its own model {version.arm} answers"
            )
        else:
            champion = ServedArm(version.number, alias, model)
    if canary is None or canary.percent <= 0 or canary.arm == champion.arm:
        return Route(champion, champion, 0, model_name), notes
    model = version.models.get(canary.arm)
    if model is None:
        notes.append(
            f"the canary's arm {canary.arm!r} is not in version {version.number} (it holds {held}): no split, the "
            f"champion {champion.arm} answers every request"
        )
        return Route(champion, champion, 0, model_name), notes
    threshold = round(canary.percent * BUCKETS / 100)
    return Route(champion, ServedArm(version.number, canary.arm, model), threshold, model_name), notes
