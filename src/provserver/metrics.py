"""``provserver --metrics HOST:PORT``: Prometheus metrics at ``/metrics``, a health check at
``/healthz``.

This module owns what is measured and the small HTTP listener that serves it; the server's
other modules only give it hook points:

* :meth:`ServerMetrics.cert_handler`, :meth:`~ServerMetrics.ready_handler` and
  :meth:`~ServerMetrics.report_handler` wrap the signing service's handlers (latency, signings
  by signer and result, refusals by reason);
* :meth:`ServerMetrics.metered` wraps the record store (ledger commit latency, and whether a
  certificate went out as a new issuance or again for a resumed part);
* :meth:`ServerMetrics.connection_refused` is the TCP server's ``on_refusal`` hook (too many
  stations, TLS handshake refused);
* :meth:`ServerMetrics.attach` gives the signer manager, record store and TCP server whose live
  state (modules present / locked / busy, open connections, health) is read at each scrape.

Metrics live in their own :class:`prometheus_client.CollectorRegistry` (never the global one),
so two servers in one process (tests) do not mix. Everything runs in the server's event loop:
the listener is an asyncio server bound to the given address only, one request per connection,
a whole request within :data:`HTTP_READ_TIMEOUT_S`, headers up to :data:`HTTP_MAX_HEADER`
bytes. ``/healthz`` answers 200 when at least one signer module is ready to sign and records
can be written, else 503; both with a short JSON body (``{"status": ..., "reason": ...}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from atcaprov.errors import AtcaprovError
from atcaprov.protocol import (
    CertReply,
    CertRequest,
    DeviceReport,
    ErrorReply,
    ReadyReply,
    ReadyRequest,
    ReportAck,
)
from atcaprov.return_codes import ReturnCode

from .peer import Peer
from .records import RecordStore, SigningRecord

if TYPE_CHECKING:
    from .ledger.model import IssueOp, IssueResult, RefusalOp, ReportOp, ReportResult
    from .manager import SignerManager
    from .server import ProvisioningServer

CONTENT_TYPE_METRICS = "text/plain; version=0.0.4; charset=utf-8"
HTTP_READ_TIMEOUT_S = 5.0
HTTP_MAX_HEADER = 8192
# Request latency (s): a ready answer takes well under a millisecond, a signature with a
# software key ~1 ms, an HSM or a batch commit tens of ms.
REQUEST_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
UNKNOWN_SIGNER = "unknown"  # label of a request naming a signer this server does not have


class MetricsAddressError(AtcaprovError):
    """A ``--metrics`` value that is not ``HOST:PORT``."""


class MetricsStartError(AtcaprovError):
    """The metrics listener cannot listen on its address."""


def parse_listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` (port 0: any free port); the host is required, so that
    the listener is bound to exactly the address given."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise MetricsAddressError(f"{text!r}: expected [IPv6]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise MetricsAddressError(f"{text!r}: expected HOST:PORT (IPv6: [ADDRESS]:PORT)")
    if not host:
        raise MetricsAddressError(f"{text!r}: the host is required (e.g. 127.0.0.1:9464)")
    try:
        port = int(port_text)
    except ValueError:
        raise MetricsAddressError(f"{text!r}: {port_text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise MetricsAddressError(f"{text!r}: port {port} is outside 0..65535")
    return host, port


def _reason_label(code: ReturnCode) -> str:
    return code.name.lower()


@dataclass
class _Outcome:
    """What the record store decided for the request being answered (set by :class:`_Store`)."""

    action: str | None = None


_outcome: ContextVar[_Outcome | None] = ContextVar("atcaprov_metrics_outcome", default=None)

_R = TypeVar("_R")


class _LiveState(Collector):
    """Gauges read at scrape time: modules per signer and state, open connections."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # read at scrape time only (the manager may not exist yet)

    def collect(self) -> Iterator[Metric]:
        modules = GaugeMetricFamily(
            "atcaprov_signer_modules",
            "Signer modules by signer id and state: present (open), locked (waiting for its"
            " password), busy (a signature running or queued).",
            labels=["signer", "state"],
        )
        manager = self._metrics.manager
        counts: dict[str, dict[str, int]] = {}
        if manager is not None:
            for module in manager.modules():
                if module.dropped:
                    continue
                row = counts.setdefault(
                    module.identity.signer_id.hex().upper(), {"present": 0, "locked": 0, "busy": 0}
                )
                row["present"] += 1
                row["locked"] += 0 if module.ready else 1
                row["busy"] += 1 if module.pending > 0 else 0
        for signer, row in sorted(counts.items()):
            for state, value in row.items():
                modules.add_metric([signer, state], value)
        yield modules
        server = self._metrics.server
        yield GaugeMetricFamily(
            "atcaprov_open_connections",
            "Stations connected now.",
            value=server.connection_count if server is not None else 0,
        )


class ServerMetrics:
    """The server's metrics and health (see the module docstring)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.signings = Counter(
            "atcaprov_signings",
            "Certificate requests answered, by signer id and result: issued (a new"
            " certificate), reissued (the same certificate again, resumed part), refused.",
            ["signer", "result"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "atcaprov_refusals",
            "Requests and stations refused, by reason (the return code, or"
            " too_many_connections / tls_handshake).",
            ["reason"],
            registry=self.registry,
        )
        self.not_ready = Counter(
            "atcaprov_not_ready_answers",
            "Readiness questions answered not ready, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.reports = Counter(
            "atcaprov_outcome_reports",
            "Outcome reports from stations, by outcome (installed, failed, abandoned).",
            ["outcome"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "atcaprov_request_duration_seconds",
            "Time to answer a station's message, by type (cert, ready, report).",
            ["type"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "atcaprov_ledger_commit_seconds",
            "Time until a record is durable in the ledger (its batch committed), by"
            " operation (issue, refuse, report).",
            ["operation"],
            buckets=COMMIT_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_LiveState(self))
        self.manager: SignerManager | None = None
        self.records: RecordStore | None = None
        self.server: ProvisioningServer | None = None

    # -- hook points --------------------------------------------------------------------------
    def attach(
        self,
        *,
        manager: SignerManager | None = None,
        records: RecordStore | None = None,
        server: ProvisioningServer | None = None,
    ) -> None:
        """The parts whose live state the scrape and the health check read."""
        if manager is not None:
            self.manager = manager
        if records is not None:
            self.records = records
        if server is not None:
            self.server = server

    def metered(self, records: RecordStore) -> RecordStore:
        """``records`` with its commit times measured (and attached for the health check)."""
        store = _Store(records, self)
        self.records = store
        return store

    def connection_refused(self, reason: str) -> None:
        """The TCP server refused a station before any request (``on_refusal`` hook)."""
        self.refusals.labels(reason).inc()

    def cert_handler(
        self, handler: Callable[[CertRequest, Peer], Awaitable[CertReply | ErrorReply]]
    ) -> Callable[[CertRequest, Peer], Awaitable[CertReply | ErrorReply]]:
        async def handle(request: CertRequest, peer: Peer) -> CertReply | ErrorReply:
            outcome = _Outcome()
            token = _outcome.set(outcome)
            started = time.perf_counter()
            try:
                reply = await handler(request, peer)
            finally:
                _outcome.reset(token)
                self.request_seconds.labels("cert").observe(time.perf_counter() - started)
            signer = self._signer_label(request.signer_id)
            if isinstance(reply, ErrorReply):
                self.signings.labels(signer, "refused").inc()
                self.refusals.labels(_reason_label(reply.code)).inc()
            else:
                result = "reissued" if outcome.action == "reissued" else "issued"
                self.signings.labels(signer, result).inc()
            return reply

        return handle

    def ready_handler(
        self, handler: Callable[[ReadyRequest, Peer], Awaitable[ReadyReply]]
    ) -> Callable[[ReadyRequest, Peer], Awaitable[ReadyReply]]:
        async def handle(request: ReadyRequest, peer: Peer) -> ReadyReply:
            started = time.perf_counter()
            try:
                reply = await handler(request, peer)
            finally:
                self.request_seconds.labels("ready").observe(time.perf_counter() - started)
            if not reply.ready:
                self.not_ready.labels(_reason_label(reply.code)).inc()
            return reply

        return handle

    def report_handler(
        self, handler: Callable[[DeviceReport, Peer], Awaitable[ReportAck | ErrorReply]]
    ) -> Callable[[DeviceReport, Peer], Awaitable[ReportAck | ErrorReply]]:
        async def handle(report: DeviceReport, peer: Peer) -> ReportAck | ErrorReply:
            started = time.perf_counter()
            try:
                reply = await handler(report, peer)
            finally:
                self.request_seconds.labels("report").observe(time.perf_counter() - started)
            self.reports.labels(report.outcome.name.lower()).inc()
            return reply

        return handle

    def _signer_label(self, signer_id: bytes) -> str:
        """The signer id in hex when this server has such a module; else ``unknown`` (the text
        of a request must not make new label values)."""
        manager = self.manager
        if manager is not None and any(
            m.identity.signer_id == signer_id for m in manager.modules()
        ):
            return signer_id.hex().upper()
        return UNKNOWN_SIGNER

    def listener(self, host: str, port: int) -> MetricsServer:
        """The HTTP listener serving these metrics on ``host:port`` (not started)."""
        return MetricsServer(self, host, port)

    # -- reading ------------------------------------------------------------------------------
    def exposition(self) -> bytes:
        """The Prometheus text of every metric."""
        return generate_latest(self.registry)

    def health(self) -> tuple[bool, dict[str, object]]:
        """(healthy, JSON body): healthy when a signer module is ready and records can be
        written."""
        manager, records = self.manager, self.records
        if manager is None or records is None:
            return False, {"status": "unavailable", "reason": "the server is starting"}
        modules = [m for m in manager.modules() if not m.dropped]
        ready = [m for m in modules if m.ready]
        if not ready:
            reason = (
                "no signer module present"
                if not modules
                else f"no signer ready: {len(modules)} module(s) present, all locked"
                " (password not entered)"
            )
            return False, {"status": "unavailable", "reason": reason}
        problem = records.problem()
        if problem is not None:
            return False, {
                "status": "unavailable",
                "reason": f"records cannot be written: {problem}",
            }
        return True, {"status": "ok", "signers_ready": len(ready)}


class _Store(RecordStore):
    """A record store whose writes are timed; everything is the wrapped store's."""

    def __init__(self, inner: RecordStore, metrics: ServerMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def _timed(self, operation: str, call: Awaitable[_R]) -> _R:
        started = time.perf_counter()
        result = await call
        self._metrics.commit_seconds.labels(operation).observe(time.perf_counter() - started)
        return result

    async def open(self) -> None:
        await self._inner.open()

    async def close(self) -> None:
        await self._inner.close()

    async def log_signing(
        self, record: SigningRecord, device_cert_pem: str, signer_cert_pem: str
    ) -> None:
        await self._timed(
            "issue", self._inner.log_signing(record, device_cert_pem, signer_cert_pem)
        )

    async def log_refusal(self, record: SigningRecord) -> None:
        await self._timed("refuse", self._inner.log_refusal(record))

    def problem(self) -> str | None:
        return self._inner.problem()

    @property
    def failure(self) -> str | None:
        return self._inner.failure

    async def issue(self, op: IssueOp) -> IssueResult:
        result = await self._timed("issue", self._inner.issue(op))
        outcome = _outcome.get()
        if outcome is not None:
            outcome.action = result.action
        return result

    async def refuse(self, op: RefusalOp) -> None:
        await self._timed("refuse", self._inner.refuse(op))

    async def report(self, op: ReportOp) -> ReportResult:
        return await self._timed("report", self._inner.report(op))


class MetricsServer:
    """The HTTP listener: ``GET /metrics`` and ``GET /healthz`` (``HEAD`` too), nothing else."""

    def __init__(self, metrics: ServerMetrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(
                self._on_connect, self.host, self.port, reuse_address=True, limit=HTTP_MAX_HEADER
            )
        except OSError as exc:
            raise MetricsStartError(
                f"metrics: cannot listen on {self.host}:{self.port}: {exc}"
            ) from exc
        sockets = self._server.sockets
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 5.0)
        self._server = None

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HTTP_READ_TIMEOUT_S)
            except (
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                asyncio.TimeoutError,
                ConnectionError,
            ):
                return  # not a whole request in time: dropped without an answer
            status, ctype, body, head_only = self._answer(head)
            lines = [
                f"HTTP/1.1 {status}",
                f"Content-Type: {ctype}",
                f"Content-Length: {len(body)}",
                "Connection: close",
                "",
                "",
            ]
            writer.write("\r\n".join(lines).encode("ascii") + (b"" if head_only else body))
            with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
                await asyncio.wait_for(writer.drain(), HTTP_READ_TIMEOUT_S)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.TimeoutError, OSError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    def _answer(self, head: bytes) -> tuple[str, str, bytes, bool]:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return "400 Bad Request", "text/plain", b"bad request\n", False
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"GET or HEAD only\n", False
        head_only = method == "HEAD"
        if target == "/metrics":
            return "200 OK", CONTENT_TYPE_METRICS, self.metrics.exposition(), head_only
        if target == "/healthz":
            healthy, body = self.metrics.health()
            status = "200 OK" if healthy else "503 Service Unavailable"
            data = (json.dumps(body) + "\n").encode("utf-8")
            return status, "application/json", data, head_only
        return "404 Not Found", "text/plain", b"not found: /metrics or /healthz\n", head_only
