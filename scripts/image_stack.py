"""A Kafka broker (Tansu) and a redis-server on loopback for scripts/image, until SIGTERM.

Run by ``scripts/image`` with the repository's venv: starts both embedded servers (the ``local`` extra),
waits until each answers on its port, then writes their addresses as JSON to the given file (written to a
temporary name and renamed, so a reader never sees half a file) and sleeps until SIGTERM or SIGINT; the
servers die with it (``PR_SET_PDEATHSIG``).

    python scripts/image_stack.py /tmp/stack.json   # {"bootstrap": "127.0.0.1:P", "redis_url": "redis://..."}
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

from streaming.local.embedded import embedded_stack


def main(ready_file: str) -> int:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with embedded_stack() as (broker, store):
        document = {"bootstrap": broker.address, "redis_url": f"redis://{store.address}/0", "pid": os.getpid()}
        partial = f"{ready_file}.partial"
        with open(partial, "w", encoding="utf-8") as out:
            json.dump(document, out)
        os.replace(partial, ready_file)
        print(f"stack: broker {broker.address}, redis {store.address}", file=sys.stderr, flush=True)
        while not stop.wait(1.0):
            for server in (broker, store):
                if server.process.poll() is not None:
                    print(f"stack: {server.name} exited: {server.output()}", file=sys.stderr, flush=True)
                    return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: image_stack.py READY_FILE")
    sys.exit(main(sys.argv[1]))
