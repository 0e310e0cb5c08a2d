"""Waiting in tests for what another thread or process does: polls bounded in time that say
what they waited for when the time runs out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def wait_until(check: Callable[[], object], timeout: float, what: str, step: float = 0.05) -> None:
    """Call ``check`` every ``step`` seconds until it returns a true value; AssertionError
    naming ``what`` if ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(step)


async def eventually(check: Callable[[], object], seconds: float, step: float = 0.01) -> None:
    """Poll ``check`` on the event loop until it holds or ``seconds`` have passed (the caller
    asserts what it expected)."""
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        await asyncio.sleep(step)
