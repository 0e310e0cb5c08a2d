"""The commit writer child (``python -m provserver.ledger.writer_process``) on its own: it ends
at once when the server process goes away, whether its socket ends cleanly or is reset with
answers unread, so that it never holds the data folder after the server."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provserver.ledger.writer_process import (
    FLUSH_FRAMES,
    WRITER_NICENESS,
    WRITER_POLICY,
    WriterConfig,
    _frame,
    _Outbox,
    resolve_writer,
)
from tests.provserver.test_ledger_store import op

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="descriptor passing")


def start_child(tmp_path: Path) -> tuple[subprocess.Popen[bytes], socket.socket]:
    ours, theirs = socket.socketpair()
    child = subprocess.Popen(
        [sys.executable, "-m", "provserver.ledger.writer_process", str(theirs.fileno())],
        pass_fds=(theirs.fileno(),),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    theirs.close()
    config = WriterConfig(None, str(tmp_path / "data"), False, None)
    ours.sendall(_frame(("open", 1, config)))
    ours.settimeout(30)
    header = ours.recv(4, socket.MSG_WAITALL)  # the open's answer (state frame may come first)
    assert len(header) == 4, child.stderr.read() if child.stderr else b""
    return child, ours


def wait_exit(child: subprocess.Popen[bytes], seconds: float) -> int | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if child.poll() is not None:
            return child.returncode
        time.sleep(0.05)
    return None


@pytest.mark.parametrize("how", ["end", "reset"])
def test_the_child_ends_at_once_when_the_server_goes(tmp_path: Path, how: str) -> None:
    (tmp_path / "data").mkdir()
    child, ours = start_child(tmp_path)
    try:
        if how == "reset":  # requests in flight, their answers never read: the peer resets
            ours.sendall(b"".join(_frame(("issue", 10 + n, tuple(vars(op(n)).values())))
                                  for n in range(1, 201)))  # fmt: skip
            time.sleep(0.5)  # answers pile up unread in our receive buffer
        ours.close()
        code = wait_exit(child, 15)
        assert code == 3, (code, child.stderr.read() if child.stderr and code is not None else "")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    # the run stays open (crash-like): its marker is there for the next start to recover
    assert list((tmp_path / "data" / "logs").glob(".running-*"))


def test_the_child_runs_at_a_lower_priority_than_the_server(tmp_path: Path) -> None:
    """The signing loop goes first: the child adds WRITER_NICENESS to the niceness it was
    started with (this test's, at most 19) and, on Linux, runs under SCHED_BATCH (its threads
    do not preempt the loop when they wake); its threads (commits, files) inherit both."""
    (tmp_path / "data").mkdir()
    ours_nice = os.getpriority(os.PRIO_PROCESS, 0)
    child, ours = start_child(tmp_path)  # returns once the child answered its open
    try:
        expected = min(19, ours_nice + WRITER_NICENESS)
        assert WRITER_NICENESS > 0
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == expected
        if sys.platform == "linux":
            assert WRITER_POLICY == os.SCHED_BATCH
            assert os.sched_getscheduler(child.pid) == os.SCHED_BATCH
        threads = list(Path(f"/proc/{child.pid}/task").iterdir()) if sys.platform == "linux" else []
        assert len(threads) >= (2 if sys.platform == "linux" else 0)  # the loop and a worker
        for task in threads:  # Linux: each thread has its own priority and policy
            assert os.getpriority(os.PRIO_PROCESS, int(task.name)) == expected, task.name
            assert os.sched_getscheduler(int(task.name)) == os.SCHED_BATCH, task.name
    finally:
        ours.close()
        assert wait_exit(child, 15) == 3


def test_auto_is_the_process_writer_on_posix_and_threads_elsewhere() -> None:
    assert resolve_writer("auto") == "process"  # this module's tests run on POSIX only
    assert [resolve_writer(k) for k in ("thread", "process")] == ["thread", "process"]
    with pytest.raises(ValueError, match="expected one of auto, thread, process"):
        resolve_writer("threads")


async def test_a_long_turn_sends_its_frames_every_flush_frames_not_at_its_end() -> None:
    """Requests signed in one long turn of the event loop reach the commit writer in groups of
    FLUSH_FRAMES while the turn goes on (the child commits the first ones while the rest are
    signed); what is left goes at the end of the turn."""
    ours, child = socket.socketpair()
    child.setblocking(False)
    _, writer = await asyncio.open_connection(sock=ours)
    outbox = _Outbox(writer)
    count = 2 * FLUSH_FRAMES + 5

    def received() -> bytes:
        data = b""
        while True:
            try:
                chunk = child.recv(1 << 20)
            except BlockingIOError:
                return data
            data += chunk

    try:
        for n in range(count):  # one turn: no await in between
            outbox.put(("issue", n, {}))
        assert received() == b"".join(_frame(("issue", n, {})) for n in range(2 * FLUSH_FRAMES))
        await asyncio.sleep(0)  # the turn ends
        assert received() == b"".join(
            _frame(("issue", n, {})) for n in range(2 * FLUSH_FRAMES, count)
        )
    finally:
        writer.close()
        child.close()
