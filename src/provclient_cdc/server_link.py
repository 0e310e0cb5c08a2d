"""The connection to ``provserver`` (TCP, optionally TLS) and the provisioning library's hooks.

* :class:`ServerLink`: one blocking socket with timeouts; :meth:`~ServerLink.connect` raises
  :class:`ServerUnreachableError` (COMM_ERROR) whose ``reason`` is the short text the operator
  sees (``connection refused``, ``timed out``, ``host not found``, ``TLS: ...``). The I/O
  timeout is a deadline for a whole answer: it runs from the end of :meth:`~ServerLink.send`
  to the last byte received, however the bytes trickle in. TLS mismatches are named: a TLS
  station meeting a plain server fails the handshake with ``TLS mismatch: ...``; a plain
  station whose first request is met by a close without a byte probes the server with a TLS
  handshake and, if it speaks TLS, says so.
* :func:`connect_with_retry`: the start-up connect with a visible countdown between attempts
  (``Connecting to localhost:11235...failed (connection refused), retrying in 5 s``), bounded by
  ``retries``; ESC during the countdown quits.
* :class:`LinkHooks`: :class:`atcaprov.hooks.BaseHooks` over the link. It keeps the connection
  open between boards (the server serves many requests per connection) and reconnects once,
  before sending, if the server closed it meanwhile (idle timeout). A request is never resent
  after its bytes went out (the station's :class:`~provclient_cdc.failover.FailoverHooks` sends a
  certificate request again to the same server only, when its reply was lost before its first
  byte). Progress goes to :class:`~provclient_cdc.output.Output`; the
  server's error reply is kept as written for the operator. Its ``check_ready`` asks the
  server (:func:`atcaprov.certreq.ask_ready`) before the library writes or locks anything.
  It also sends the flow's outcome report (installed / failed / abandoned, protocol version 2)
  to the server; a server of protocol version 1 answers ``UNSUPPORTED_VERSION`` once, and no
  report is sent to it again. The ``installed`` report does not wait for its acknowledgement
  inside the flow: the link holds the reading of it (:meth:`ServerLink.defer`) and does it
  before the link is used for anything else (:meth:`ServerLink.settle`: a send, a connect, a
  close, the alive check), and the station settles it as soon as the board's result is out;
  an acknowledgement that is lost or refused is said then, as it was when waited for.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from atcaprov.certreq import (
    NotReadyError,
    ServerTooOldError,
    ask_ready,
    finish_report,
    send_report,
    start_report,
)
from atcaprov.device import Device
from atcaprov.errors import AtcaprovError
from atcaprov.hooks import BaseHooks
from atcaprov.protocol import (
    DeviceReport,
    ReadyRequest,
    RecordedState,
    ReportAck,
    ReportOutcome,
    ServerError,
)
from atcaprov.return_codes import ReturnCode, ReturnCodeError
from atcaprov.stages import ProvStage, ProvStatus
from atcaprov.terminal import ESC

from .console import Keys, OperatorQuit
from .output import Output

log = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_IO_TIMEOUT_S = 30.0
TLS_SETTLE_S = 0.3
LATE_READ_S = 0.001  # a deferred answer read after its deadline: only what already arrived


class ServerUnreachableError(ReturnCodeError):
    """The server cannot be reached (code COMM_ERROR); ``reason`` is the operator's short text;
    ``retryable`` is False when trying again cannot help (a TLS mismatch)."""

    def __init__(self, host: str, port: int, reason: str, *, retryable: bool = True) -> None:
        self.host, self.port, self.reason, self.retryable = host, port, reason, retryable
        super().__init__(ReturnCode.COMM_ERROR, f"cannot connect to {host}:{port}: {reason}")


class ServerLinkError(ReturnCodeError):
    """The connection failed while talking to the server (code COMM_ERROR or TIMEOUT)."""


class TlsSetupError(AtcaprovError):
    """The TLS files given on the command line cannot be loaded."""


@dataclass(frozen=True)
class TlsOptions:
    """``--tls-ca`` (server CA), ``--tls-cert``/``--tls-key`` (station certificate), and the
    name to check in the server certificate (default: the ``--host`` value)."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    server_name: str | None = None

    @property
    def enabled(self) -> bool:
        return self.ca is not None or self.cert is not None or self.key is not None


def make_client_tls(opts: TlsOptions) -> ssl.SSLContext | None:
    """A client TLS context, or None when no TLS option is given."""
    if not opts.enabled:
        return None
    if (opts.cert is None) != (opts.key is None):
        raise TlsSetupError("a station certificate needs both --tls-cert and --tls-key")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if opts.ca is not None:
            ctx.load_verify_locations(cafile=str(opts.ca))
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if opts.cert is not None and opts.key is not None:
            ctx.load_cert_chain(certfile=str(opts.cert), keyfile=str(opts.key))
    except (OSError, ssl.SSLError) as exc:
        raise TlsSetupError(
            f"cannot load TLS files (ca {opts.ca}, cert {opts.cert}, key {opts.key}): {exc}"
        ) from exc
    return ctx


# OpenSSL's reasons when the bytes answering a ClientHello are not TLS records.
_NOT_TLS_REASONS = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "UNKNOWN_PROTOCOL",
        "RECORD_LAYER_FAILURE",
        "PACKET_LENGTH_TOO_LONG",
        "HTTP_REQUEST",
        "UNEXPECTED_RECORD",
    }
)


def _answered_without_tls(exc: BaseException) -> bool:
    return isinstance(exc, ssl.SSLError) and exc.reason in _NOT_TLS_REASONS


def describe_connect_error(exc: BaseException) -> str:
    """The short reason shown after ``failed (``."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: server certificate not accepted: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError) and _answered_without_tls(exc):
        return (
            f"TLS mismatch: the server did not answer in TLS ({exc.reason}); it runs"
            " without TLS, while this station uses TLS (--tls-ca/--tls-cert)"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, TlsRefusedError):
        return str(exc)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return "host not found"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, OSError):
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "host unreachable"
        return exc.strerror or str(exc)
    return str(exc)


class TlsRefusedError(AtcaprovError):
    """The server closed the connection right after the TLS handshake (or spoke unasked);
    :meth:`ServerLink.connect` reports it as :class:`ServerUnreachableError`."""


def _check_tls_accepted(sock: socket.socket, settle: float) -> None:
    """With TLS 1.3 the server checks the station certificate after the client's handshake has
    completed; a refusal arrives as an alert or a close within moments. Wait up to ``settle``
    seconds for one (session tickets are taken and ignored) so that it is reported at connect
    time, not as a lost connection at the first request."""
    deadline = time.monotonic() + settle
    sock.settimeout(0)
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], left)
        if not readable:
            return
        try:
            data = sock.recv(1)
        except (ssl.SSLWantReadError, BlockingIOError):
            continue
        if not data:
            raise TlsRefusedError(
                "TLS: the server closed the connection after the handshake"
                " (station certificate missing or not accepted?)"
            )
        raise TlsRefusedError("TLS: the server sent data before any request")


def server_speaks_tls(host: str, port: int, timeout: float) -> bool:
    """True if a TLS handshake with ``host:port`` gets a TLS answer (a completed handshake or a
    TLS alert); used only to name a failure, so the server certificate is not checked."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return False
    try:
        with ctx.wrap_socket(sock):
            return True
    except ssl.SSLError as exc:
        return "ALERT" in str(exc.reason or "")  # the server answered in TLS, with a refusal
    except OSError:
        return False
    finally:
        sock.close()


def _arrived(sock: socket.socket) -> bool:
    """Bytes are waiting to be read on ``sock`` (checked without waiting)."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return bool(readable)


class ServerLink:
    """A blocking connection to the server with bounded connect and I/O times.

    ``io_timeout`` bounds a whole send (``sendall``) and, separately, a whole answer: from the
    end of :meth:`send` to the last byte that :meth:`recv` returns for it.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        server_name: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        io_timeout: float = DEFAULT_IO_TIMEOUT_S,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.server_name = server_name or host
        self.connect_timeout = connect_timeout
        self.io_timeout = io_timeout
        self._sock: socket.socket | None = None
        self._answer_deadline: float | None = None  # monotonic time the answer must be in by
        self._answer_bytes = 0  # received since the last send
        self._received = 0  # received on this connection
        self._pending: Callable[[], None] | None = None  # reads an answer left for later
        self._settling = False  # that reading is under way: an answer past its time is polled

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def defer(self, collect: Callable[[], None]) -> None:
        """Leave the answer to the request just sent for later: ``collect()`` reads it (with
        :meth:`recv`, within the request's ``io_timeout``, or from what already arrived if
        that has passed) and must never raise. :meth:`settle` calls it; so does every use of
        the link (send, connect, close, the alive check) before going on, so the link's
        stream is always in step."""
        self.settle()
        self._pending = collect

    @property
    def pending(self) -> bool:
        """An answer is left for :meth:`settle`."""
        return self._pending is not None

    def settle(self) -> None:
        """Read the answer :meth:`defer` left, if any (now: it blocks until it comes)."""
        collect, self._pending = self._pending, None
        if collect is None:
            return
        self._settling = True
        try:
            collect()
        finally:
            self._settling = False

    def connect(self) -> None:
        """Open the connection (closing any previous one)."""
        self.close()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            raise ServerUnreachableError(self.host, self.port, describe_connect_error(exc)) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.server_name)
                _check_tls_accepted(sock, TLS_SETTLE_S)
            sock.settimeout(self.io_timeout)
        except (OSError, TlsRefusedError) as exc:
            sock.close()
            raise ServerUnreachableError(
                self.host,
                self.port,
                describe_connect_error(exc),
                retryable=not _answered_without_tls(exc),
            ) from exc
        self._sock = sock
        self._answer_deadline = None
        self._answer_bytes = self._received = 0

    def alive(self) -> bool:
        """False if there is no connection or the server has closed it (checked without
        waiting; data the server sent unasked also counts as a broken conversation)."""
        self.settle()
        sock = self._sock
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            self.close()
            return False
        if not readable:
            return True
        # Readable: EOF, a reset, unexpected bytes (the stream is out of step), or with TLS 1.3
        # only session tickets, which the TLS layer takes without giving any data.
        alive = False
        try:
            sock.settimeout(0)
            sock.recv(1)
        except (ssl.SSLWantReadError, BlockingIOError):
            alive = True
        except OSError:
            alive = False
        finally:
            try:
                sock.settimeout(self.io_timeout)
            except OSError:
                alive = False
        if not alive:
            self.close()
        return alive

    def send(self, data: bytes) -> None:
        """Send all of ``data`` (within ``io_timeout``); the answer's deadline starts now."""
        self.settle()
        sock = self._require()
        try:
            sock.settimeout(self.io_timeout)
            sock.sendall(data)
        except TimeoutError as exc:
            self.close()
            raise ServerLinkError(
                ReturnCode.TIMEOUT, f"sending to the server at {self.address} timed out"
            ) from exc
        except OSError as exc:
            self.close()
            raise ServerLinkError(
                ReturnCode.COMM_ERROR,
                f"connection to the server at {self.address} lost while sending:"
                f" {describe_connect_error(exc)}",
            ) from exc
        self._answer_deadline = time.monotonic() + self.io_timeout
        self._answer_bytes = 0

    def recv(self, n: int) -> bytes:
        """Up to ``n`` bytes of the answer; b"" when the server closed the connection.

        Raises ServerLinkError TIMEOUT once ``io_timeout`` has passed since the request was
        sent, however many bytes came meanwhile; COMM_ERROR for a lost connection, or for a
        close before any byte when the server turns out to speak TLS (this link does not).
        """
        sock = self._require()
        if self._answer_deadline is None:
            self._answer_deadline = time.monotonic() + self.io_timeout
        left = self._answer_deadline - time.monotonic()
        try:
            if left <= 0 and self._settling and _arrived(sock):
                left = LATE_READ_S  # a deferred answer read late: what came in is taken
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            data = sock.recv(n)
        except TimeoutError as exc:
            self.close()
            got = f"; {self._answer_bytes} bytes of it arrived" if self._answer_bytes else ""
            raise ServerLinkError(
                ReturnCode.TIMEOUT,
                f"no complete answer from the server at {self.address} within"
                f" {self.io_timeout:g} s{got}",
            ) from exc
        except OSError as exc:
            self.close()
            raise ServerLinkError(
                ReturnCode.COMM_ERROR,
                f"connection to the server at {self.address} lost while receiving:"
                f" {describe_connect_error(exc)}",
            ) from exc
        if not data:
            self.close()
            if (
                self._received == 0
                and self.tls is None
                and server_speaks_tls(self.host, self.port, self.connect_timeout)
            ):
                raise ServerLinkError(
                    ReturnCode.COMM_ERROR,
                    f"TLS mismatch: the server at {self.address} speaks TLS and closed this"
                    " plain connection; start provclient-cdc with --tls-ca (and --tls-cert/"
                    "--tls-key if the server asks for a station certificate)",
                )
            return data
        self._answer_bytes += len(data)
        self._received += len(data)
        return data

    def close(self) -> None:
        """Close the connection (after reading a deferred answer: :meth:`settle`)."""
        self.settle()
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError as exc:  # closing a dead socket: nothing else to release
                log.debug("closing the connection to %s: %s", self.address, exc)

    def _require(self) -> socket.socket:
        if self._sock is None:
            raise ServerLinkError(
                ReturnCode.COMM_ERROR, f"not connected to the server at {self.address}"
            )
        return self._sock


def connect_with_retry(
    link: ServerLink,
    output: Output,
    keys: Keys,
    *,
    retries: int,
    interval: float,
    verb: str = "Connecting",
) -> None:
    """Connect, printing ``Connecting to HOST:PORT...ok``; on failure count down ``interval``
    seconds and try again, at most ``retries`` more times, then raise the last
    :class:`ServerUnreachableError` (at once if it is not ``retryable``: a TLS mismatch). ESC
    during the countdown raises :class:`OperatorQuit`."""
    attempt = 0
    while True:
        head = f"{verb} to {link.address}..."
        output.begin(head)
        try:
            link.connect()
        except ServerUnreachableError as exc:
            attempt += 1
            if attempt > retries or not exc.retryable:
                output.end(f"failed ({exc.reason})")
                raise
            _countdown(output, keys, head, exc.reason, interval)
            continue
        output.end("ok")
        return


def _countdown(output: Output, keys: Keys, head: str, reason: str, interval: float) -> None:
    tail = f"failed ({reason}), retrying in "
    if not output.live:
        output.end(f"{tail}{interval:g} s")
    deadline = time.monotonic() + interval
    shown: int | None = None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            whole = max(int(left + 0.999), 1)
            if output.live and whole != shown:
                output.update(f"{head}{tail}{whole} s")
                shown = whole
            if keys.poll(min(left, 0.25)) == ESC:
                raise OperatorQuit("ESC pressed while waiting for the server")
    finally:
        if output.live:
            output.end("")


class LinkHooks(BaseHooks):
    """The library's hooks for one station: server I/O over ``link``, progress to ``output``.

    ``station_id`` is sent with every request. Per board, :meth:`reset` clears
    :attr:`server_error` (the server's error reply: code and message as written) and
    :attr:`last_stage` (the last stage started) and :attr:`last_stage_over` (whether it has
    ended: an interrupt between two stages is "after" the last one, not "during" it).
    """

    def __init__(self, link: ServerLink, output: Output, station_id: str | None) -> None:
        self.link = link
        self.output = output
        self.station_id = station_id
        self.server_error: tuple[ReturnCode, str] | None = None
        self.last_stage: ProvStage | None = None
        self.last_stage_over = False  # last_stage has ended (done or skipped)
        self.reconnects = 0
        self.server_records_outcomes = True  # False once a version-1 server refused a report
        self.recorded: RecordedState | None = None  # the server's answer to the last report
        self.server_protocol_version = 1  # 2 once the server answered a ReadyRequest

    def reset(self) -> None:
        self.server_error = None
        self.last_stage = None
        self.last_stage_over = False
        self.recorded = None

    def certreq_start(self) -> None:
        if self.link.alive():
            return
        self.reconnects += 1
        self.link.connect()  # one attempt; ServerUnreachableError fails the stage

    def certreq_send(self, data: bytes) -> None:
        self.link.send(data)

    def certreq_recv(self, n: int) -> bytes:
        return self.link.recv(n)

    def request_error(self, code: ReturnCode, message: str) -> None:
        self.server_error = (code, message)

    def notify(self, stage: ProvStage, status: ProvStatus) -> None:
        if status in (ProvStatus.START, ProvStatus.SKIPPED):
            self.last_stage = stage
        if stage is self.last_stage:
            self.last_stage_over = status in (ProvStatus.DONE, ProvStatus.SKIPPED)
        self.output.stage(stage, status)

    def check_ready(self, request: ReadyRequest) -> None:
        """Ask the server whether it can sign for ``request`` now (reconnecting once if it
        closed the link); raise NotReadyError / the link's errors if not. After anything but
        a plain not-ready answer the connection is closed: its stream is not trusted."""
        try:
            ask_ready(self, request)
        except NotReadyError as exc:
            if isinstance(exc, ServerTooOldError):  # a version-1 server closes it anyway
                self.server_protocol_version = 1
                self.link.close()
            raise
        except BaseException:
            self.link.close()
            raise
        self.server_protocol_version = 2  # it answered: CertRequest2 carries the device type

    def write_data_zone(self, device: Device) -> None:
        """No extra data: the client writes only what the certificates need."""

    def report_outcome(self, report: DeviceReport) -> None:
        """Send the run's outcome to the server's ledger (once per board; never raises).

        ``installed`` is sent without waiting for the acknowledgement (the run is over: the
        flow need not wait for the server's ledger): the link reads it before its next use,
        and the station settles it once the board's result is out (:meth:`settle_report`).
        A failed or abandoned run's report is waited for, as the board's failure is being
        told."""
        if not self.server_records_outcomes:
            return
        if report.outcome is not ReportOutcome.INSTALLED:
            self._report_answer(lambda: send_report(self, report))
            return
        try:
            start_report(self, report)
        except (AtcaprovError, OSError) as exc:
            self.output.detail(f"Outcome not reported to the server: {exc}")
            return
        link = self.link

        def collect() -> None:  # from the link the report went to, whichever is in use now
            current, self.link = self.link, link
            try:
                self._report_answer(lambda: finish_report(self))
            finally:
                self.link = current

        link.defer(collect)

    def settle_report(self) -> None:
        """Read the acknowledgement of an outcome report sent without waiting, if one is left
        (the link would read it before its next use anyway)."""
        self.link.settle()

    def _report_answer(self, answer: Callable[[], ReportAck]) -> None:
        """What the server answered to a report (``answer()``), said as the operator needs."""
        try:
            self.recorded = answer().state
        except ServerError as exc:
            if exc.code in (ReturnCode.UNSUPPORTED_VERSION, ReturnCode.UNKNOWN_MESSAGE_TYPE):
                self.server_records_outcomes = False
                self.output.detail(
                    "The server does not record provisioning outcomes (protocol version 1)."
                )
                return
            self.output.detail(f"Outcome not recorded by the server: {exc.message}")
        except (AtcaprovError, OSError) as exc:
            self.output.detail(f"Outcome not reported to the server: {exc}")
