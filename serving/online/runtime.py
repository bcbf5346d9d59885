"""The interpreter while a large request is in: no cyclic collection, GIL switches every 1 ms.

Checking and scoring a large request creates hundreds of thousands of objects and holds
Python's GIL for long stretches. Its objects set off one full collection after another, each
walking all of them with the GIL held, a pause for every request; and a small request's
scoring, which gives the GIL up at every LightGBM or Arrow call, waited the whole default
switch interval to get it back each time (docs/online.md, "Large requests").
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SWITCH_INTERVAL_SECONDS = 0.001

_lock = threading.Lock()
_inside = 0
_collector_was_on = True
_switch_interval = 0.005


@contextmanager
def large_request() -> Iterator[None]:
    """Pause the cyclic collector and switch the GIL more often, until the last one is done.

    Reference counting still frees what is dropped; cycles wait. Let go of the request's rows
    before leaving, or the collector's first run after it walks them all.
    """
    global _inside, _collector_was_on, _switch_interval
    with _lock:
        if _inside == 0:
            _collector_was_on = gc.isenabled()
            _switch_interval = sys.getswitchinterval()
            gc.disable()
            sys.setswitchinterval(min(_switch_interval, SWITCH_INTERVAL_SECONDS))
        _inside += 1
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            if _inside == 0:
                sys.setswitchinterval(_switch_interval)
                if _collector_was_on:
                    gc.enable()
