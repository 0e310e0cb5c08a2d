"""The ledger's commit writer in a process of its own (``provserver --commit-writer process``,
what the default ``auto`` picks on POSIX systems: :func:`resolve_writer`).

With ``thread`` (Windows' default) the server's one process signs on its event loop and commits
in worker threads: every part shares one interpreter lock, so a server uses about one CPU core.
With ``process`` the :class:`~provserver.ledger.store.LedgerRecordStore` (group commit, ledger
transaction, signing log, ``certs/`` files, crash recovery, write-failure handling: all of it,
unchanged) runs in a child process, ``python -m provserver.ledger.writer_process``, and the
server process keeps the connections, the checks and the signing. Two cores work at once.

:class:`ProcessRecordStore` (server side) is a :class:`~provserver.records.RecordStore`: each
call is one frame to the child, and the call returns when the child's store answered, so the
durability rule is the store's own: a certificate leaves the server only after its ledger
entry is durable. The child's console lines (recovery, write failures, resuming) come back as
frames and are printed by the server's console; its failure state is pushed whenever it
changes, so the server stops signing at once, as with the thread writer.

Framing (a private socket pair, nothing else can connect): a 4-byte big-endian length and a
pickled tuple. Server to child: ``("open", id, config)``, ``("issue", id, fields)`` (the
hot path: an :class:`IssueOp`'s field values), ``("op", id, name, argument)`` (the other
calls), ``("close", id)``. Child to server: ``("ok", id, value)``, ``("error", id,
message)``, ``("say", level, text)``, ``("state", failure, problem)``. A new issuance is
answered with its ids only (its certificates are the request's); the server builds the
:class:`IssueResult` from the request (without its ``event``, which only the files need).

The child runs at a lower scheduling priority than the server process (:data:`WRITER_NICENESS`
added to its niceness, POSIX ``nice``) and, on Linux, under the ``SCHED_BATCH`` policy
(:data:`WRITER_POLICY`; its threads inherit both). The server process's event loop is the one
part that works request by request; the child works in batches and catches up: a commit that
waits a moment for a core only makes the next batch larger. Under full load on two cores, the
signing loop was otherwise preempted by the child's file writes (kernel time, about a third
of a core) and ran at 0.65-0.8 of a core: with the child niced, signings per second rose by
about a sixth at 64 stations. ``nice`` only weighs the shares of CPU time: a child thread
waking from a sync or a frame still preempted the loop at once (about 850 times a second at
64 stations). A ``SCHED_BATCH`` thread does not preempt on waking; it waits for the loop's
time slice to end or for the loop to wait. With it, signings per second rose by 15-44 % more
(docs/benchmarks.md). On an idle machine neither changes anything: a waking thread finds an
idle core.

The child also holds the data folder's lock (the lock's file descriptor is passed to it): a
second server can start on the folder only when both processes have ended. When the server
process dies, the child sees the end of its socket and exits at once, like a crash (the next
start recovers the run from the ledger).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import pickle
import socket
import struct
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from atcaprov.errors import AtcaprovError

from ..console import Console, Level
from ..event_loop import run, running_loop_name
from ..records import RecordStore, RecordStoreError, SigningRecord
from .model import (
    Issuance,
    IssueOp,
    IssueResult,
    LedgerResult,
    RefusalOp,
    ReportOp,
    ReportResult,
)

WRITER_KINDS = ("thread", "process")
WRITER_CHOICES = ("auto", *WRITER_KINDS)  # provserver --commit-writer


def resolve_writer(choice: str) -> str:
    """``--commit-writer``: ``auto`` is ``process`` on POSIX systems (it needs descriptor
    passing), ``thread`` elsewhere; the other choices are themselves."""
    if choice == "auto":
        return "process" if os.name == "posix" else "thread"
    if choice not in WRITER_KINDS:
        raise ValueError(f"commit writer {choice!r}: expected one of {', '.join(WRITER_CHOICES)}")
    return choice


_HEADER = struct.Struct(">I")
_MAX_FRAME = 64 << 20
_STOP_TIMEOUT_S = 60.0
# added to the child's niceness at its start (POSIX: 0 normal, 19 the lowest priority)
WRITER_NICENESS = 8
# the child's scheduling policy where the system has it (Linux): its threads do not preempt
# the signing loop when they wake; None where the system has no such policy
WRITER_POLICY: int | None = getattr(os, "SCHED_BATCH", None)


@dataclass(frozen=True)
class WriterConfig:
    """What the child needs to open the store (sent in the ``open`` frame, not on argv: a
    PostgreSQL URL may hold a password)."""

    ledger: str | None
    data_dir: str
    allow_reprovision: bool
    started: datetime | None
    log_max_bytes: int | None = None


def _frame(message: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


async def _read_frame(reader: asyncio.StreamReader) -> tuple[Any, ...] | None:
    """The next frame, or None at the end of the stream."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError:
        return None
    (size,) = _HEADER.unpack(header)
    if size > _MAX_FRAME:
        raise RecordStoreError(f"commit writer: frame of {size} bytes")
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        return None
    message = pickle.loads(body)
    assert isinstance(message, tuple)
    return message


FLUSH_FRAMES = 16  # frames that go out at once, without waiting for the end of the turn


class _Outbox:
    """Frames put during one turn of the event loop go out in one write (one system call
    for the whole turn's requests, not one per request), or every :data:`FLUSH_FRAMES`
    frames in a long turn: when a whole wave of stations' requests is signed in one turn, the
    child commits the first of them while the rest are signed, instead of after them all."""

    def __init__(self, writer: asyncio.StreamWriter | None = None) -> None:
        self.writer = writer
        self._frames: list[bytes] = []

    def put(self, message: tuple[Any, ...]) -> None:
        if not self._frames:
            asyncio.get_running_loop().call_soon(self._flush)
        self._frames.append(_frame(message))
        if len(self._frames) >= FLUSH_FRAMES:
            self._flush()

    def _flush(self) -> None:
        frames, self._frames = self._frames, []
        if frames and self.writer is not None and not self.writer.is_closing():
            self.writer.write(b"".join(frames))

    async def drain(self) -> None:
        """Send what is waiting now, and wait until the socket took it."""
        self._flush()
        if self.writer is not None and not self.writer.is_closing():
            await self.writer.drain()


# ------------------------------------------------------------------------------------------
# Server side
# ------------------------------------------------------------------------------------------
class ProcessRecordStore(RecordStore):
    """A record store whose ledger store runs in a child process (see the module docstring).

    ``inherit_fds``: file descriptors the child keeps open (the data folder's lock).
    """

    def __init__(
        self,
        config: WriterConfig,
        *,
        console: Console | None = None,
        inherit_fds: Sequence[int] = (),
    ) -> None:
        self._config = config
        self._console = console
        self._inherit = tuple(inherit_fds)
        self._proc: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._failure: str | None = None
        self._problem: str | None = None
        self._ended: str | None = None  # why the child cannot be used any more
        self._state = "new"
        self._outbox = _Outbox()

    @property
    def failure(self) -> str | None:
        return self._ended or self._failure

    def problem(self) -> str | None:
        if self._state != "open":
            return f"record store {self._state}"
        return self._ended or self._problem

    async def open(self) -> None:
        if self._state != "new":
            raise RecordStoreError(f"record store already {self._state}")
        if os.name == "nt":  # no descriptor passing to a child there
            raise RecordStoreError(
                "--commit-writer process needs a POSIX system; use --commit-writer thread"
            )
        ours, theirs = socket.socketpair()
        # the child runs the same event loop as this process (provserver --event-loop)
        same_loop = running_loop_name()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "provserver.ledger.writer_process",
                str(theirs.fileno()),
                *(["--uvloop"] if same_loop == "uvloop" else []),
                pass_fds=(theirs.fileno(), *self._inherit),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            ours.close()
            raise RecordStoreError(f"cannot start the commit writer process: {exc}") from exc
        finally:
            theirs.close()
        reader, self._writer = await asyncio.open_connection(sock=ours)
        self._outbox.writer = self._writer
        self._tasks = [
            asyncio.create_task(self._receive(reader), name="commit-writer-frames"),
            asyncio.create_task(self._stderr(), name="commit-writer-stderr"),
        ]
        try:
            await self._call(("open", self._config))
        except RecordStoreError:
            await self._stop_child()
            self._state = "closed"
            raise
        self._state = "open"

    async def issue(self, op: IssueOp) -> IssueResult:
        value = await self._call(("issue", tuple(vars(op).values())))
        if isinstance(value, IssueResult):
            return value
        # a new issuance: its certificates are the request's, only the ids come back
        issuance_id, run_id, superseded = value
        issuance = Issuance.new(op, issuance_id, run_id)
        return IssueResult("issued", issuance, superseded=superseded)

    async def refuse(self, op: RefusalOp) -> None:
        await self._call(("op", "refuse", op))

    async def report(self, op: ReportOp) -> ReportResult:
        result = await self._call(("op", "report", op))
        assert isinstance(result, ReportResult)
        return result

    async def log_signing(
        self, record: SigningRecord, device_cert_pem: str, signer_cert_pem: str
    ) -> None:
        await self._call(("op", "log_signing", (record, device_cert_pem, signer_cert_pem)))

    async def log_refusal(self, record: SigningRecord) -> None:
        await self._call(("op", "log_refusal", record))

    async def close(self) -> None:
        if self._state != "open":
            return
        crashed = self._ended
        self._state = "closing"
        try:
            if crashed is not None:  # the run stays open: the next start recovers it
                raise RecordStoreError(crashed)
            await self._call(("close",))
        finally:
            await self._stop_child()
            self._state = "closed"

    # -- internals -----------------------------------------------------------------------------
    async def _call(self, message: tuple[Any, ...]) -> Any:
        if self._ended is not None or self._writer is None:
            raise RecordStoreError(self._ended or "the commit writer process is not running")
        self._next_id += 1
        call_id = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = future
        self._outbox.put((message[0], call_id, *message[1:]))
        if self._writer.transport.get_write_buffer_size() > 1 << 20:
            await self._writer.drain()
        return await future

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        try:
            while (frame := await _read_frame(reader)) is not None:
                kind = frame[0]
                if kind == "ok":
                    self._settle(frame[1], value=frame[2])
                elif kind == "error":
                    self._settle(frame[1], error=RecordStoreError(frame[2]))
                elif kind == "say":
                    self._say(frame[1], frame[2])
                elif kind == "state":
                    self._failure, self._problem = frame[1], frame[2]
        except (OSError, RecordStoreError, pickle.UnpicklingError) as exc:
            self._say("error", f"commit writer link broken: {exc}")
        code = await self._proc.wait() if self._proc is not None else None
        if self._state not in ("closing", "closed"):
            self._ended = (
                f"the commit writer process ended unexpectedly (exit code {code}); "
                "restart the server"
            )
            self._say("error", f"Records cannot be written: {self._ended}.")
        else:
            self._ended = "the commit writer process has ended"
        for call_id in list(self._waiting):
            self._settle(call_id, error=RecordStoreError(self._ended))

    def _settle(
        self, call_id: int, *, value: Any = None, error: RecordStoreError | None = None
    ) -> None:
        future = self._waiting.pop(call_id, None)
        if future is None or future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    async def _stderr(self) -> None:
        """The child's own error output (a crash's traceback): one escaped line each."""
        assert self._proc is not None and self._proc.stderr is not None
        while line := await self._proc.stderr.readline():
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                self._say("warning", f"commit writer: {text}")

    def _say(self, level: str, text: str) -> None:
        if self._console is not None:
            self._console.log(Level(level), text)

    async def _stop_child(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        proc = self._proc
        if proc is not None:
            try:
                await asyncio.wait_for(proc.wait(), _STOP_TIMEOUT_S)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


# ------------------------------------------------------------------------------------------
# Child side
# ------------------------------------------------------------------------------------------
class _ForwardingConsole(Console):
    """The child's console: each line goes to the server process as a ``say`` frame, after
    the store's state (the store changes its state before it says so: a server that printed
    "signing resumed" already signs)."""

    def __init__(self, send: Any, before: Any) -> None:
        super().__init__(out=io.StringIO())  # never written: log() is replaced
        self._send = send
        self._before = before

    def log(self, level: Level, message: str) -> str:
        self._before()
        self._send(("say", level.value, message))
        return message


async def _serve_frames(sock: socket.socket) -> int:
    from . import open_ledger
    from .store import LedgerRecordStore

    reader, writer = await asyncio.open_connection(sock=sock)
    store: LedgerRecordStore | None = None
    last_state: tuple[str | None, str | None] = (None, None)
    running: set[asyncio.Task[None]] = set()

    outbox = _Outbox(writer)
    send = outbox.put

    def push_state() -> None:
        nonlocal last_state
        if store is None:
            return
        state = (store.failure, store.problem())
        if state != last_state:
            last_state = state
            send(("state", *state))

    async def run_op(call_id: int, name: str, argument: Any) -> None:
        assert store is not None
        try:
            value: Any = None
            if name == "log_signing":
                await store.log_signing(*argument)
            else:
                value = await getattr(store, name)(argument)
        except RecordStoreError as exc:
            push_state()
            send(("error", call_id, exc.message))
            return
        push_state()
        send(("ok", call_id, value))

    def issue_now(call_id: int, fields: tuple[Any, ...]) -> None:
        """The hot path: no task per request, the batch's future answers."""
        assert store is not None
        try:
            future = store.enqueue(IssueOp(*fields))
        except RecordStoreError as exc:
            push_state()
            send(("error", call_id, exc.message))
            return

        def answer(done: asyncio.Future[LedgerResult]) -> None:
            push_state()
            error = done.exception()
            if error is not None:
                message = error.message if isinstance(error, RecordStoreError) else str(error)
                send(("error", call_id, message))
                return
            result = done.result()
            assert isinstance(result, IssueResult)
            if result.action == "issued" and result.issuance is not None:
                send(
                    ("ok", call_id, (result.issuance.id, result.issuance.run_id, result.superseded))
                )
            else:
                send(("ok", call_id, result))

        future.add_done_callback(answer)

    async def watch_state() -> None:
        while True:
            await asyncio.sleep(0.1)
            push_state()

    watcher = asyncio.create_task(watch_state())
    try:
        while (frame := await _read_frame(reader)) is not None:
            kind, call_id = frame[0], frame[1]
            if kind == "open":
                config: WriterConfig = frame[2]
                try:
                    store = LedgerRecordStore(
                        open_ledger(config.ledger, Path(config.data_dir)),
                        config.data_dir,
                        console=_ForwardingConsole(send, push_state),
                        allow_reprovision=config.allow_reprovision,
                        started=config.started,
                        log_max_bytes=config.log_max_bytes,
                    )
                    await store.open()
                except (AtcaprovError, OSError, ValueError) as exc:
                    send(("error", call_id, getattr(exc, "message", None) or str(exc)))
                    await outbox.drain()
                    return 1
                push_state()
                send(("ok", call_id, None))
            elif kind == "issue":
                issue_now(call_id, frame[2])
            elif kind == "op":
                task = asyncio.create_task(run_op(call_id, frame[2], frame[3]))
                running.add(task)
                task.add_done_callback(running.discard)
            elif kind == "close":
                if running:
                    await asyncio.wait(running)
                if store is not None:
                    try:
                        await store.close()
                    except RecordStoreError as exc:
                        send(("error", call_id, exc.message))
                        await outbox.drain()
                        return 1
                send(("ok", call_id, None))
                await outbox.drain()
                return 0
            if writer.transport.get_write_buffer_size() > 1 << 20:
                await outbox.drain()
    finally:
        watcher.cancel()
    # The server process went away without closing: end like a crash, at once (no close, no
    # interpreter teardown: the next start recovers this run from the ledger).
    return 3


async def _serve(sock: socket.socket) -> NoReturn:
    """Serve the server process's frames, then end this process at once, whatever happened.

    The process never returns through :func:`asyncio.run`'s clean-up, which cancels the tasks
    left and could wait on a commit that will never be answered: the server process may be
    gone, and the data folder's lock (held here too) must be let go with this process.
    """
    try:
        code = await _serve_frames(sock)
    except (ConnectionError, OSError, asyncio.IncompleteReadError):
        code = 3  # the server process went away (reset mid-frame): like the end of its socket
    except BaseException:  # a bug: its traceback reaches the server's console
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _lower_priority() -> None:
    """Let the server process's signing loop go first (see the module's docstring). Raising
    one's own niceness is always allowed, and so is moving from the normal policy to
    ``SCHED_BATCH``; where either fails (a server started under another policy, say), the
    child runs as before and says why on its stderr (the server's console). Called before the
    child starts its threads, which inherit both."""
    try:
        os.nice(WRITER_NICENESS)
    except OSError as exc:
        print(f"commit writer: priority not lowered ({exc}); it runs as before", file=sys.stderr)
    if WRITER_POLICY is None:
        return
    try:  # the niceness stays: SCHED_BATCH threads share the CPU by it, as normal ones do
        os.sched_setscheduler(0, WRITER_POLICY, os.sched_param(0))
    except OSError as exc:
        print(
            f"commit writer: scheduling policy not changed ({exc}); it runs as before",
            file=sys.stderr,
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    loop = "asyncio"
    if args[1:] == ["--uvloop"]:
        loop, args = "uvloop", args[:1]
    if len(args) != 1 or not args[0].isdigit():
        print(
            "usage: python -m provserver.ledger.writer_process FD [--uvloop]  (started by "
            "provserver)",
            file=sys.stderr,
        )
        return 2
    sock = socket.socket(fileno=int(args[0]))
    _lower_priority()
    run(_serve(sock), loop)  # never returns: _serve ends the process
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
