"""The collector's freezes (:mod:`streaming.runtime`), in a process of their own (the collector is per process): the
first activation's refreeze keeps the start-up frozen and collects only what came after (not walking every module
again: ~1 ms, not ~80); a later one unfreezes and collects everything, the earlier activation's cycles too."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_refreeze_collects_what_came_after_the_startup_then_an_earlier_activations_cycles():
    script = textwrap.dedent(
        """
        import gc, weakref
        from streaming.runtime import freeze_after_startup, refreeze

        class Node:
            pass

        def cycle():
            a, b = Node(), Node()
            a.other, b.other = b, a
            return weakref.ref(a)

        startup_cycle = cycle()
        kept = startup_cycle()
        startup = freeze_after_startup()
        del kept  # a start-up cycle that became garbage: frozen, so the first refreeze does not walk to it
        garbage_before_activation = cycle()
        activation = [Node() for _ in range(1000)]
        first = refreeze()
        assert garbage_before_activation() is None  # collected: it came after the start-up
        assert startup_cycle() is not None  # the start-up stays frozen: not walked again
        assert gc.get_freeze_count() == first >= startup + 1000  # the activation's state frozen with the start-up
        activation_cycle = cycle()
        ref = activation_cycle()
        refreeze()  # (the cycle is alive: frozen with the activation)
        del ref
        gc.collect()
        assert activation_cycle() is not None  # frozen: no collection reaches it
        refreeze()  # a later activation: the earlier one's state is unfrozen and collected
        assert activation_cycle() is None and startup_cycle() is None
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
