"""river's bare loop in memory: predict_proba_one then learn_one over the events, nothing else.

Run by ``bench/learner.py``: ``python bench/loops/river_loop.py EVENTS.msgpack``, the events as a msgpack list of
``[features, label]``. Prints JSON: ``{"n", "steady_seconds"}``, the loop's time from 10 % to 90 % of the events.
"""

from __future__ import annotations

import json
import sys
import time

import msgpack
from user_loop import pipeline


def main() -> None:
    with open(sys.argv[1], "rb") as handle:
        events = msgpack.unpackb(handle.read(), raw=False)
    model = pipeline()
    n = len(events)
    marks = {n // 10: 0.0, (9 * n) // 10: 0.0}
    for i, (features, label) in enumerate(events):
        if i in marks:
            marks[i] = time.perf_counter()
        model.predict_proba_one(features)
        model.learn_one(features, label)
    first, last = sorted(marks)
    print(json.dumps({"n": n, "steady_events": last - first, "steady_seconds": marks[last] - marks[first]}))


if __name__ == "__main__":
    main()
