"""provserver --event-loop: which loop runs the server and its commit writer child."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from provserver.event_loop import (
    EventLoopError,
    resolve,
    run,
    running_loop_name,
    uvloop_available,
)
from provserver.ledger.writer_process import ProcessRecordStore, WriterConfig
from tests.provserver.test_ledger_store import op

needs_uvloop = pytest.mark.skipif(not uvloop_available(), reason="uvloop is not installed")


@needs_uvloop
def test_auto_takes_uvloop_without_tls_and_asyncio_with_it() -> None:
    assert resolve("auto") == "uvloop"
    assert resolve("auto", tls=True) == "asyncio"
    assert resolve("asyncio") == "asyncio"
    assert resolve("uvloop") == "uvloop"


@needs_uvloop
def test_uvloop_with_tls_is_refused_and_says_why() -> None:
    with pytest.raises(EventLoopError, match="uvloop issue 707"):
        resolve("uvloop", tls=True)


def test_an_unknown_loop_is_refused() -> None:
    with pytest.raises(EventLoopError, match="known: auto, asyncio, uvloop"):
        resolve("trio")


@needs_uvloop
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_run_uses_the_loop_named(loop: str) -> None:
    async def name() -> str:
        return running_loop_name()

    assert run(name(), loop) == loop


@pytest.mark.skipif(sys.platform != "linux", reason="reads the child's /proc/PID/cmdline")
@needs_uvloop
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_commit_writer_child_runs_the_servers_loop_and_records(
    tmp_path: Path, loop: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()

    async def go() -> tuple[list[str], str]:
        store = ProcessRecordStore(WriterConfig(None, str(data), False, None))
        await store.open()
        try:
            assert store._proc is not None
            argv = Path(f"/proc/{store._proc.pid}/cmdline").read_bytes().split(b"\0")
            result = await asyncio.wait_for(store.issue(op(1)), 30)
        finally:
            await store.close()
        return [a.decode() for a in argv if a], result.action

    argv, action = run(go(), loop)
    assert ("--uvloop" in argv) == (loop == "uvloop")
    assert action == "issued"


@needs_uvloop
def test_provserver_help_names_the_choice() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "provserver.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "--event-loop [auto|asyncio|uvloop]" in out
