"""The network side of the provisioning server: an asyncio TCP (optionally TLS) server.

It accepts stations, turns their bytes into :mod:`atcaprov.protocol` messages, passes each
``CertRequest`` to a request handler (each ``ReadyRequest`` to a readiness handler, and each
version-2 ``DeviceReport`` to a report handler, when one is given) and writes back its reply, in
the protocol version of the message it answers. It owns the connection rules:

* a connection carries any number of requests in sequence (a line station keeps one open),
  from a version-1 or a version-2 station (each message goes with its type's version);
* every protocol error is answered with an ``ErrorReply`` (its return code and message), then
  the connection is closed;
* limits: at most ``max_connections`` stations at once (the next one gets an ``ErrorReply``
  SERVER_ERROR and is closed), bodies up to ``max_body_size``, a station silent between
  requests for ``idle_timeout`` is closed; a message must be complete within ``read_timeout``
  of its first byte (a deadline for the whole message, not per read: a station trickling
  bytes cannot hold a connection), else the station gets an ``ErrorReply`` TIMEOUT and is
  dropped;
* TLS: with a client CA, a station without a certificate the CA signed is refused at the
  handshake and the refusal is logged;
* shutdown: :meth:`ProvisioningServer.stop` stops accepting, closes idle connections, lets
  requests in flight finish for up to ``shutdown_grace`` seconds and then cancels the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from atcaprov.errors import AtcaprovError
from atcaprov.protocol import (
    MAX_BODY_SIZE,
    CertReply,
    CertRequest,
    DeviceReport,
    ErrorReply,
    Message,
    MessageReader,
    MessageType,
    ProtocolError,
    ReadyReply,
    ReadyRequest,
    ReportAck,
    encode,
)
from atcaprov.return_codes import ReturnCode

from .console import Console
from .peer import Peer, clip_message

READ_CHUNK = 64 * 1024


class ServerStartError(AtcaprovError):
    """The server cannot listen (address in use, bad TLS files...)."""


RequestHandler = Callable[[CertRequest, Peer], Awaitable[CertReply | ErrorReply]]
ReadyHandler = Callable[[ReadyRequest, Peer], Awaitable[ReadyReply | ErrorReply]]
ReportHandler = Callable[[DeviceReport, Peer], Awaitable[ReportAck | ErrorReply]]


@dataclass(frozen=True)
class ServerLimits:
    """Connection limits (seconds and counts)."""

    max_connections: int = 64
    max_body_size: int = MAX_BODY_SIZE
    idle_timeout: float = 300.0
    read_timeout: float = 15.0
    write_timeout: float = 30.0
    tls_handshake_timeout: float = 10.0
    shutdown_grace: float = 10.0


def make_tls_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """A server TLS context; with ``client_ca`` stations must present a certificate it signed."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
        if client_ca is not None:
            ctx.load_verify_locations(cafile=str(client_ca))
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ServerStartError(
            f"cannot load TLS files ({cert}, {key}, {client_ca}): {exc}"
        ) from exc
    return ctx


@dataclass(eq=False)
class _Connection:
    peer: Peer
    writer: asyncio.StreamWriter
    task: asyncio.Task[None] | None
    busy: bool = False
    requests: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)


class _StallError(AtcaprovError):
    """A station stopped sending in the middle of a message."""


class ProvisioningServer:
    """Accepts stations and serves their certificate requests with ``handler`` and their
    readiness requests with ``ready_handler`` (without one, a ReadyRequest is a protocol error:
    UNKNOWN_MESSAGE_TYPE)."""

    def __init__(
        self,
        handler: RequestHandler,
        console: Console,
        *,
        ready_handler: ReadyHandler | None = None,
        host: str = "0.0.0.0",
        port: int = 11235,
        limits: ServerLimits | None = None,
        tls: ssl.SSLContext | None = None,
        report_handler: ReportHandler | None = None,
        on_refusal: Callable[[str], None] | None = None,
    ) -> None:
        self._handler = handler
        # Told each station refused before any request: "too_many_connections",
        # "tls_handshake" (the metrics of provserver.metrics).
        self._on_refusal = on_refusal
        self._ready_handler = ready_handler
        self._report_handler = report_handler
        self._console = console
        self.host = host
        self.port = port
        self.limits = limits or ServerLimits()
        self._tls = tls
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._closing = False

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        """Log ``Server starting...``, listen, log ``Server listening on HOST:PORT.``."""
        self._console.info("Server starting...")
        try:
            # Python 3.11+: TLS is started per connection (start_tls) so that a refused
            # handshake is logged with the station's address; 3.10 lets the listener do it.
            listener_tls = self._tls if sys.version_info < (3, 11) else None
            self._server = await asyncio.start_server(
                self._on_connect,
                self.host,
                self.port,
                reuse_address=True,
                ssl=listener_tls,
                ssl_handshake_timeout=(
                    self.limits.tls_handshake_timeout if listener_tls is not None else None
                ),
            )
        except OSError as exc:
            raise ServerStartError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        sockets = self._server.sockets
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        tls = ""
        if self._tls is not None:
            client = self._tls.verify_mode == ssl.CERT_REQUIRED
            tls = " (TLS, client certificate required)" if client else " (TLS)"
        self._console.info(f"Server listening on {self.host}:{self.port}{tls}.")

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def stop(self) -> None:
        """Stop accepting, close idle stations, give busy ones ``shutdown_grace`` seconds."""
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            if not conn.busy and conn.task is not None:
                conn.task.cancel()
        busy = [c for c in self._connections if c.busy]
        if busy:
            self._console.info(f"Waiting for {len(busy)} request(s) in progress...")
            waiters = [asyncio.create_task(c.done.wait()) for c in busy]
            _, pending = await asyncio.wait(waiters, timeout=self.limits.shutdown_grace)
            for waiter in pending:
                waiter.cancel()
            if pending:
                self._console.warning(
                    f"{len(pending)} request(s) still running after "
                    f"{self.limits.shutdown_grace:g} s: cancelled."
                )
        for conn in list(self._connections):
            if conn.task is not None:
                conn.task.cancel()
        deadline = asyncio.get_running_loop().time() + 5.0
        while self._connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)

    # -- one station --------------------------------------------------------------------------
    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        address = f"{peername[0]}:{peername[1]}" if peername else "unknown"
        conn = _Connection(Peer(address), writer, asyncio.current_task())
        if self._closing:
            await self._close(writer)
            return
        if len(self._connections) >= self.limits.max_connections:
            self._refused("too_many_connections")
            self._console.warning(
                f"Station {address} refused: {self.limits.max_connections} connections open."
            )
            if self._tls is None:  # a TLS station could not read a plain-text reply
                await self._send_error(
                    conn,
                    ReturnCode.SERVER_ERROR,
                    f"server busy: {self.limits.max_connections} stations connected (the "
                    "limit); retry later",
                )
            await self._close(writer)
            return
        self._connections.add(conn)
        try:
            if self._tls is not None and not await self._start_tls(conn):
                return
            await self._serve(conn, reader)
        except asyncio.CancelledError:
            # stop() cancels idle connections (and busy ones after the grace period): this is
            # the normal end of such a connection, closed below.
            pass
        finally:
            self._connections.discard(conn)
            conn.done.set()
            await self._close(writer)

    def _refused(self, reason: str) -> None:
        if self._on_refusal is not None:
            self._on_refusal(reason)

    async def _start_tls(self, conn: _Connection) -> bool:
        assert self._tls is not None
        try:
            if sys.version_info >= (3, 11):
                await conn.writer.start_tls(
                    self._tls, ssl_handshake_timeout=self.limits.tls_handshake_timeout
                )
            else:  # Python 3.10: the listener did the handshake (see start())
                pass
        except (ssl.SSLError, OSError, asyncio.TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            self._refused("tls_handshake")
            self._console.warning(
                f"Station {conn.peer.address} refused: TLS handshake failed ({reason})."
            )
            return False
        cert = conn.writer.get_extra_info("peercert")
        subject = _subject_text(cert) if isinstance(cert, dict) else None
        conn.peer = Peer(conn.peer.address, subject)
        return True

    async def _serve(self, conn: _Connection, reader: asyncio.StreamReader) -> None:
        accept = {MessageType.CERT_REQUEST}
        if self._ready_handler is not None:  # a version-2 server
            accept.add(MessageType.READY_REQUEST)
            accept.add(MessageType.CERT_REQUEST2)
        if self._report_handler is not None:
            accept.add(MessageType.DEVICE_REPORT)
        messages = MessageReader(accept, max_body_size=self.limits.max_body_size)
        while not self._closing:
            try:
                msg = await self._next_message(reader, messages)
            except ProtocolError as exc:
                self._console.warning(f"Station {conn.peer}: protocol error: {exc.message}")
                await self._send_error(conn, exc.code, exc.message)
                return
            except _StallError as exc:
                self._console.warning(f"Station {conn.peer} dropped: {exc}")
                await self._send_error(conn, ReturnCode.TIMEOUT, str(exc))
                return
            except (ConnectionError, OSError) as exc:
                self._console.warning(f"Station {conn.peer}: connection lost ({exc}).")
                return
            if msg is None:
                return  # clean close between requests, or idle timeout
            # what the reader accepts
            assert isinstance(msg, (CertRequest, ReadyRequest, DeviceReport))
            conn.busy = True
            try:
                reply = await self._handle(conn, msg)
                conn.requests += 1
                if not await self._send(conn, encode(reply, messages.last_version)):
                    return
            finally:
                conn.busy = False
                if self._closing:
                    conn.done.set()

    async def _handle(
        self, conn: _Connection, msg: CertRequest | ReadyRequest | DeviceReport
    ) -> CertReply | ReadyReply | ReportAck | ErrorReply:
        try:
            if isinstance(msg, ReadyRequest):
                assert self._ready_handler is not None  # else the reader refused the message
                return await self._ready_handler(msg, conn.peer)
            if isinstance(msg, DeviceReport):
                assert self._report_handler is not None  # the reader accepts it only then
                return await self._report_handler(msg, conn.peer)
            return await self._handler(msg, conn.peer)
        except AtcaprovError as exc:
            self._console.error(f"Station {conn.peer}: request failed: {exc}")
            return ErrorReply(ReturnCode.SERVER_ERROR, clip_message(f"server error: {exc}"))
        except Exception as exc:  # a bug in a handler: answer and log it, keep serving others
            self._console.error(f"Station {conn.peer}: internal error: {exc!r}")
            return ErrorReply(ReturnCode.INTERNAL_ERROR, clip_message(f"internal error: {exc!r}"))

    async def _next_message(
        self, reader: asyncio.StreamReader, messages: MessageReader
    ) -> Message | None:
        """The next message; None at a clean end of stream or after ``idle_timeout``."""
        msg = messages.next_message()
        if msg is not None:
            return msg
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        if messages.buffered:
            deadline = loop.time() + self.limits.read_timeout
        while True:
            if deadline is None:
                try:
                    data = await read_chunk(reader, self.limits.idle_timeout)
                except asyncio.TimeoutError:
                    return None
                deadline = loop.time() + self.limits.read_timeout
            else:
                left = deadline - loop.time()
                try:
                    if left <= 0:
                        raise asyncio.TimeoutError
                    data = await read_chunk(reader, left)
                except asyncio.TimeoutError:
                    need = messages.bytes_needed()
                    raise _StallError(
                        f"no complete message within {self.limits.read_timeout:g} s "
                        f"({messages.buffered} bytes received, {need} more expected)"
                    ) from None
            if not data:
                messages.feed_eof()
                return None
            messages.feed(data)
            msg = messages.next_message()
            if msg is not None:
                return msg

    async def _send(self, conn: _Connection, data: bytes) -> bool:
        try:
            conn.writer.write(data)
            transport = conn.writer.transport
            if transport.get_write_buffer_size() == 0 and not transport.is_closing():
                return True  # the kernel took every byte: nothing to drain
            await asyncio.wait_for(conn.writer.drain(), self.limits.write_timeout)
        except (ConnectionError, OSError, asyncio.TimeoutError) as exc:
            self._console.warning(f"Station {conn.peer}: reply not delivered ({exc!r}).")
            return False
        return True

    async def _send_error(self, conn: _Connection, code: ReturnCode, message: str) -> None:
        await self._send(conn, encode(ErrorReply(code, clip_message(message))))

    async def _close(self, writer: asyncio.StreamWriter) -> None:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError, asyncio.TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), 2.0)


if sys.version_info >= (3, 11):

    async def read_chunk(reader: asyncio.StreamReader, timeout: float) -> bytes:
        """Up to READ_CHUNK bytes, or TimeoutError (no extra task, unlike ``wait_for``)."""
        async with asyncio.timeout(timeout):
            return await reader.read(READ_CHUNK)

else:

    async def read_chunk(reader: asyncio.StreamReader, timeout: float) -> bytes:
        """Up to READ_CHUNK bytes, or TimeoutError."""
        return await asyncio.wait_for(reader.read(READ_CHUNK), timeout)


def _subject_text(cert: dict[str, object]) -> str | None:
    subject = cert.get("subject")
    if not isinstance(subject, tuple):
        return None
    parts: list[str] = []
    for rdn in subject:
        for pair in rdn:
            if isinstance(pair, tuple) and len(pair) == 2:
                parts.append(f"{pair[0]}={pair[1]}")
    return ", ".join(parts) or None
