"""Check a challenger that starts from a stored version (``start=version:N``) before it is declared.

The learner checks again when it starts the challenger (a version removed meanwhile leaves it out, logged); the
command line and the HTTP admin route refuse a declaration it would leave out at once, with the same one line.

>>> import fakeredis
>>> from snapshotter.store import VersionStore
>>> from streaming.config import parse_challenger
>>> from streaming.model import ModelSpec
>>> check_start_version(VersionStore(fakeredis.FakeRedis(), "m"), parse_challenger("b:start=version:4"), ModelSpec())
Traceback (most recent call last):
...
streaming.errors.ChallengerError: start=version:4: version 4 is not stored
"""

from __future__ import annotations

import dataclasses

from snapshotter.store import VersionStore
from streaming.config import ChallengerConfig
from streaming.errors import ChallengerError, SnapshotCorruptError, SnapshotError, VersionNotFoundError
from streaming.model import ModelSpec

__all__ = ["check_start_version"]


def check_start_version(store: VersionStore, config: ChallengerConfig, spec: ModelSpec) -> int | None:
    """For ``start=version:N``: version N is stored and its model is of the kind and features ``config`` declares
    over ``spec`` (the settings' model); else :class:`ChallengerError`. Returns the incident that quarantined N (the
    challenger would start from a model the guard set aside: worth a warning), ``None`` when none did or the
    challenger does not start from a version.

    Parameters
    ----------
    store
        The model's versions.
    config
        The challenger's declaration.
    spec
        The model the settings describe (:func:`streaming.model.spec_from_settings`).
    """
    number = config.start_version
    if number is None:
        return None
    try:
        meta = store.meta(number)
    except VersionNotFoundError:
        raise ChallengerError(f"start=version:{number}: version {number} is not stored") from None
    except SnapshotError as exc:  # its metadata unreadable
        raise ChallengerError(f"start=version:{number}: {exc}") from None
    declared = dataclasses.replace(spec, **config.overrides).structure()
    try:
        stored = ModelSpec.from_dict(meta.spec).structure()
    except SnapshotCorruptError as exc:
        raise ChallengerError(f"start=version:{number}: {exc}") from None
    if declared != stored:
        raise ChallengerError(
            f"start=version:{number}: version {number} is a model of {stored}, the challenger is declared as "
            f"{declared}; declare its kind and features as the version's"
        )
    return store.quarantined().get(number)
