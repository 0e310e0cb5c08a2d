"""Stand-ins for provserver's signing: an in-memory certificate server and a threaded TCP one.

:class:`InMemoryServer` answers request bytes with reply bytes as provserver would: it decodes the
CertRequest, builds the device certificate with the device cert def and the software signer key
of a :class:`~tests.support.pki.Pki`, and encodes a CertReply (or the ErrorReply it was told to
give), so the library's flow runs through its real message path without a transport.

:class:`CertServer` is the same server on 127.0.0.1 (one thread per connection, bounded reads),
which can also be told to close connections, to go silent, to trickle its answers a byte at a
time, or to speak only some protocol versions (``versions={1}``: a version-1 server, answering
a protocol error with an ErrorReply and closing, as provserver does), so the client is tested
through its real socket path without starting provserver.

Both answer a ReadyRequest with :attr:`InMemoryServer.ready_answer` (ready by default).

Both take the clients' outcome reports (protocol version 2) into ``reports``; with
``protocol_version = 1`` they answer a report as a version-1 server does
(``UNSUPPORTED_VERSION``, then the TCP server closes the connection).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from atcaprov.atcacert import build_cert
from atcaprov.datasheet import serial_number
from atcaprov.protocol import (
    SUPPORTED_VERSIONS,
    CertReply,
    CertRequest,
    DeviceReport,
    ErrorReply,
    MessageReader,
    ProtocolError,
    ReadyReply,
    ReadyRequest,
    RecordedState,
    ReportAck,
    ReportOutcome,
    encode,
)
from atcaprov.return_codes import ReturnCode
from tests.support.keys import sign_digest
from tests.support.net import LoopbackListener
from tests.support.pki import NOW, Pki


class InMemoryServer:
    """Answers request bytes with reply bytes, as provserver would (no checks beyond decoding)."""

    def __init__(self, pki: Pki) -> None:
        self.pki = pki
        self.requests: list[CertRequest] = []
        self.ready_requests: list[ReadyRequest] = []
        self.ready_answer = ReadyReply(ReturnCode.SUCCESS, "ready")
        self.versions: frozenset[int] | None = None  # None: every version this library speaks
        self.reports: list[DeviceReport] = []
        self.error: tuple[ReturnCode, str] | None = None
        self.tamper: Callable[[CertReply], CertReply] | None = None
        self.protocol_version = 2

    def handle(self, data: bytes) -> bytes:
        reader = MessageReader(versions=self.versions or SUPPORTED_VERSIONS)
        try:
            reader.feed(data)
            msg = reader.next_message()
        except ProtocolError as exc:  # as provserver: an ErrorReply saying why
            return encode(ErrorReply(exc.code, exc.message))
        if isinstance(msg, DeviceReport):
            return self.acknowledge(msg)
        assert isinstance(msg, (CertRequest, ReadyRequest)), msg
        return self.answer(msg)

    def acknowledge(self, report: DeviceReport) -> bytes:
        """The answer to a report: recorded (version 2) or UNSUPPORTED_VERSION (version 1)."""
        if self.protocol_version < 2:
            return encode(
                ErrorReply(
                    ReturnCode.UNSUPPORTED_VERSION,
                    "header byte 4: protocol version 2 not supported",
                )
            )
        self.reports.append(report)
        state = {
            ReportOutcome.INSTALLED: RecordedState.INSTALLED,
            ReportOutcome.FAILED: RecordedState.FAILED,
            ReportOutcome.ABANDONED: RecordedState.ABANDONED,
        }[report.outcome]
        return encode(ReportAck(state), 2)

    def answer(self, msg: CertRequest | ReadyRequest) -> bytes:
        """The encoded reply to ``msg``: the ready answer set for a ReadyRequest; for a
        CertRequest the error set, else the certificates (tampered if set)."""
        if isinstance(msg, ReadyRequest):
            self.ready_requests.append(msg)
            return encode(self.ready_answer)
        self.requests.append(msg)
        if self.error is not None:
            return encode(ErrorReply(self.error[0], self.error[1]))
        info = self.pki.cert_info
        config = msg.config_zone
        device_sn = serial_number(config)
        built = build_cert(
            info.device_cert_def,
            public_key=msg.device_public_key,
            issue_date=NOW,
            signer_id=info.signer_id,
            sign=lambda d: sign_digest(self.pki.signer_key, d),
            device_sn=device_sn,
            ca_public_key=info.signer_public_key,
        )
        reply = CertReply(device_cert=built.cert_der, signer_cert=self.pki.signer_cert)
        if self.tamper is not None:
            reply = self.tamper(reply)
        return encode(reply)


class CertServer(InMemoryServer, LoopbackListener):
    """A threaded certificate server on 127.0.0.1 (one thread per connection, bounded reads)."""

    def __init__(self, pki: Pki) -> None:
        InMemoryServer.__init__(self, pki)
        LoopbackListener.__init__(self, backlog=8, poll_s=0.2)
        self.silent = False  # certificate requests get no answer (readiness still does)
        self.close_after_reply = False  # close after each certificate reply
        self.trickle: float | None = None  # seconds between the bytes of an answer
        self.connections = 0
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self.start()

    def accepted(self, conn: socket.socket) -> None:
        self.connections += 1
        self._conns.append(conn)
        t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
        self._threads.append(t)
        t.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        reader = MessageReader(versions=self.versions or SUPPORTED_VERSIONS)
        with conn:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                try:
                    reader.feed(data)
                    msg = reader.next_message()
                except ProtocolError as exc:  # as provserver: say why, then close
                    conn.sendall(encode(ErrorReply(exc.code, exc.message)))
                    return
                if msg is None:
                    continue
                if isinstance(msg, DeviceReport):
                    conn.sendall(self.acknowledge(msg))
                    if self.protocol_version < 2 or self.close_after_reply:
                        return  # a version-1 server closes after a protocol error
                    continue
                assert isinstance(msg, (CertRequest, ReadyRequest))
                cert = isinstance(msg, CertRequest)
                if self.silent and isinstance(msg, CertRequest):  # ready, then silent
                    self.requests.append(msg)
                    continue
                if not self._send(conn, self.answer(msg)):
                    return
                if self.close_after_reply and cert:
                    return

    def _send(self, conn: socket.socket, data: bytes) -> bool:
        """Send ``data`` (a byte at a time with ``trickle``); False once stopped or closed."""
        try:
            if self.trickle is None:
                conn.sendall(data)
                return True
            for i in range(len(data)):  # bounded: one answer, at most a few KiB
                if self._stop.wait(self.trickle):
                    return False
                conn.sendall(data[i : i + 1])
        except OSError:
            return False
        return True

    def drop_connections(self) -> None:
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                continue
        self._conns.clear()

    def close(self) -> None:
        LoopbackListener.close(self)
        for t in self._threads:
            t.join(timeout=5)
