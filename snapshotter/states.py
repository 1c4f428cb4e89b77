"""What each stored version *is* now, read from the sets that decide it (not from its write-time metadata).

A version's metadata says whether it met the threshold when it was written (``stable`` there means
*eligible*); whether it is stable **now** is decided later and elsewhere: with promotion ``guard`` it waits as
a *candidate* until the monitor has judged the data past it, an incident may *quarantine* it, a rollback
*abandons* the lineage above its target. Operators, ``versions list`` and the API read the states here:

* ``stable`` — in the stable set: a rollback, unpin or retention may pick it;
* ``candidate`` — met the threshold, awaiting the guard's confirmation;
* ``quarantined:<incident>`` — written during a data-quality incident; never stable again (pin with force);
* ``serving``, ``pinned``, ``head`` — the pointers.

>>> describe([], number=3, head=3, serving=2, pinned=None)
['head']
>>> describe(["stable"], number=2, head=3, serving=2, pinned=2)
['stable', 'serving', 'pinned']
"""

from __future__ import annotations

from snapshotter.store import VersionStore

__all__ = ["describe", "version_states"]


def describe(sets: list[str], *, number: int, head: int | None, serving: int | None, pinned: int | None) -> list[str]:
    """The states of version ``number``: its set memberships, then the pointers that name it."""
    pointers = [("serving", serving), ("pinned", pinned), ("head", head)]
    return [*sets, *(word for word, at in pointers if at == number)]


def version_states(store: VersionStore, numbers: list[int] | None = None) -> dict[int, list[str]]:
    """The states of ``numbers`` (default: every stored version)."""
    numbers = store.numbers() if numbers is None else numbers
    stable = set(store.stable_numbers())
    candidates, quarantined = store.candidates(), store.quarantined()
    head, serving, pinned = store.head(), store.serving(), store.pinned()
    states = {}
    for n in numbers:
        sets = []
        if n in stable:
            sets.append("stable")
        if n in candidates:
            sets.append("candidate")
        if n in quarantined:
            sets.append(f"quarantined:{quarantined[n]}")
        states[n] = describe(sets, number=n, head=head, serving=serving, pinned=pinned)
    return states
