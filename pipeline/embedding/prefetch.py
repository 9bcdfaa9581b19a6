"""A bounded background thread ahead of a consumer: decoding and preprocessing overlap in the engine."""

from __future__ import annotations

import queue
import threading
import typing as tp


def prefetch(items: tp.Iterator[tp.Any], depth: int = 64) -> tp.Iterator[tp.Any]:
    """Run ``items`` in a background thread ahead of the consumer, through a bounded queue."""
    box: queue.Queue[tuple[str, tp.Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        box.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put(("end", None))
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            box.put(("error", e))

    thread = threading.Thread(target=produce, daemon=True, name="frame-prefetch")
    thread.start()
    try:
        while True:
            kind, value = box.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
