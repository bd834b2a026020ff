"""Waiting in tests for what is awaited, never for a fixed time.

A test that sleeps 0.3 s "for the listener to be ready" fails on a loaded machine and
wastes the time on an idle one. Wait instead for the condition itself, with a deadline
that only a real failure reaches: :func:`wait_until` polls a condition, and
:func:`waiting_in` tells whether another thread has reached a call (the main thread
blocked in ``Thread.join``, say), so a test acts at that moment rather than after a
guessed delay.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_until", "waiting_in"]

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> T:
    """The first true value ``condition()`` returns, polled every ``interval`` seconds;
    TimeoutError naming ``what`` (or the condition) if none comes within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            awaited = what or getattr(condition, "__qualname__", repr(condition))
            raise TimeoutError(f"waited {timeout:g} s in vain for {awaited}")
        time.sleep(interval)
    return value


def waiting_in(thread: threading.Thread, function: Callable[..., object]) -> bool:
    """Whether ``thread`` is now inside ``function`` (anywhere on its stack).

    ``sys._current_frames`` is how faulthandler and py-spy see other threads; a test uses
    it to know that a thread has reached a blocking call, e.g.
    ``wait_until(lambda: waiting_in(threading.main_thread(), threading.Thread.join))``.
    """
    code = getattr(function, "__code__", None)
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code is code:
            return True
        frame = frame.f_back
    return False
