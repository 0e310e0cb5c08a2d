"""Which event loop runs the server (and its commit writer child): asyncio's own or uvloop.

``--event-loop auto`` (the default) takes uvloop where it is installed (it is a dependency on
every platform but Windows, which it does not support) and asyncio's loop otherwise, and
always asyncio's loop when the server speaks TLS: the server starts TLS on each accepted
connection (``StreamWriter.start_tls``), and uvloop can have read the station's first TLS bytes
(its ClientHello) into the plain stream by then; they are lost and the handshake hangs
(MagicStack/uvloop issue 707, open; one handshake in four here). asyncio's loop on the Python
versions supported pauses reading before any byte is read, the server awaiting nothing before
``start_tls``.

uvloop is a drop-in implementation of the same asyncio loop interface on libuv; the server's
code is the same on both. What it changes is the cost of the loop's own work per request
(selecting, reading, writing, scheduling): about a tenth of the server's CPU per signing at 64
stations (``bench/bench_server.py``, docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from atcaprov.errors import AtcaprovError

EVENT_LOOPS = ("auto", "asyncio", "uvloop")
T = TypeVar("T")


class EventLoopError(AtcaprovError):
    """The event loop asked for cannot be used here."""


def uvloop_available() -> bool:
    return sys.platform != "win32" and importlib.util.find_spec("uvloop") is not None


def resolve(name: str, *, tls: bool = False) -> str:
    """``asyncio`` or ``uvloop`` for an ``--event-loop`` value (``tls``: the server speaks
    TLS); EventLoopError if ``uvloop`` was asked for and cannot be had or used."""
    if name not in EVENT_LOOPS:
        raise EventLoopError(f"unknown event loop {name!r}; known: {', '.join(EVENT_LOOPS)}")
    if name == "auto":
        return "uvloop" if uvloop_available() and not tls else "asyncio"
    if name == "uvloop" and not uvloop_available():
        why = "not on Windows" if sys.platform == "win32" else "it is not installed"
        raise EventLoopError(f"--event-loop uvloop cannot be used: {why}")
    if name == "uvloop" and tls:
        raise EventLoopError(
            "--event-loop uvloop cannot be used with TLS: uvloop can lose a station's first "
            "TLS bytes when the server starts TLS on an accepted connection (MagicStack/uvloop "
            "issue 707); use --event-loop asyncio or auto"
        )
    return name


def run(main: Coroutine[Any, Any, T], loop: str) -> T:
    """``asyncio.run(main)`` on the resolved ``loop`` (``asyncio`` or ``uvloop``)."""
    if loop == "uvloop":
        import uvloop

        result: T = uvloop.run(main)
        return result
    return asyncio.run(main)


def running_loop_name() -> str:
    """``uvloop`` or ``asyncio``: the loop running now (a child started from it runs the
    same)."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.split(".")[0] == "uvloop" else "asyncio"
