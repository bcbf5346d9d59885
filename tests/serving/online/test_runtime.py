"""The interpreter's settings while a large request is in, and back after the last."""

from __future__ import annotations

import gc
import sys

from serving.online.runtime import SWITCH_INTERVAL_SECONDS, large_request


def test_a_large_request_pauses_the_collector_and_shares_the_gil_until_the_last_is_done() -> None:
    """Full collections over its objects and 5 ms GIL waits were what held small requests."""
    interval, enabled = sys.getswitchinterval(), gc.isenabled()
    assert interval > SWITCH_INTERVAL_SECONDS and enabled
    with large_request():
        with large_request():  # two large requests at once
            assert not gc.isenabled()
        assert not gc.isenabled() and sys.getswitchinterval() == SWITCH_INTERVAL_SECONDS
    assert gc.isenabled() and sys.getswitchinterval() == interval
