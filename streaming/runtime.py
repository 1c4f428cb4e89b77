"""Process tuning shared by the long-running commands (``serve``, ``learn``): keep the garbage collector off
the objects that live as long as the process.

After start-up a process holds a few hundred thousand long-lived objects (modules, classes, FastAPI routes,
pydantic validators, the loaded model). CPython's full (generation-2) collection walks all of them, which
showed up as 92–120 ms pauses in ``livelearn serve`` under load. :func:`freeze_after_startup` collects once,
then moves every survivor into the permanent generation, so later collections only walk what was allocated
after start-up. Frozen objects are still freed when their reference count drops to zero; only cycles among
them are never collected, which is harmless for start-up state.

>>> import gc
>>> freeze_after_startup() > 0 and gc.get_freeze_count() > 0
True
>>> gc.unfreeze()  # let the test process collect them again

A learner's model lives as long as its activation, not the process: :func:`refreeze` (after an activation, in a
process that froze its start-up) moves everything back, collects, and freezes what is alive now, so the full
collections stop walking the model's long lists and sets (a 100k-weight model: ~300k entries, a 3-13 ms pause
inside the learner's loop), and the previous activation's state, now garbage, is collected, not kept frozen.

>>> refreeze()  # this process did not freeze: nothing done
0
"""

from __future__ import annotations

import gc
import types

__all__ = ["freeze_after_startup", "refreeze"]


def freeze_after_startup() -> int:
    """Collect the start-up garbage, then freeze every object alive now out of the collector's reach; returns how
    many objects are frozen. Call it once, when start-up is over and before the steady-state work begins."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def refreeze() -> int:
    """In a process that froze its start-up (:func:`freeze_after_startup`): unfreeze, collect, and freeze every
    object alive now (a new activation's state); returns how many objects are frozen, 0 (nothing done) in a
    process that never froze. The first time, the start-up's objects stay frozen and only what came after them is
    collected (a collection walks no frozen object: ~1 ms, not the ~80 ms of walking every module again; a cycle of
    start-up objects that became garbage since stays, as any frozen cycle does); later, an earlier activation's
    state is unfrozen and collected with the rest."""
    if not gc.get_freeze_count():
        return 0
    if _PROCESS.refrozen:
        gc.unfreeze()
    _PROCESS.refrozen = True
    return freeze_after_startup()


_PROCESS = types.SimpleNamespace(refrozen=False)  # refrozen: refreeze() ran, an activation's state is frozen
