"""The outcome report's acknowledgement read after the flow (``LinkHooks.report_outcome``):
the ``installed`` report does not wait for it, the link reads it before its next use, and an
acknowledgement that is lost or refused is still said. Against a scripted server on loopback."""

from __future__ import annotations

import io
import socket
import threading
import time

from atcaprov.certreq import ready_request
from atcaprov.protocol import (
    DeviceReport,
    ErrorReply,
    MessageReader,
    ProtocolError,
    ReadyReply,
    ReadyRequest,
    RecordedState,
    ReportAck,
    ReportOutcome,
    ReportPartState,
    encode,
)
from atcaprov.return_codes import ReturnCode
from provclient_cdc.output import Output
from provclient_cdc.server_link import LinkHooks, ServerLink
from tests.support.net import LoopbackListener
from tests.support.pki import Pki

WAIT_S = 5.0  # bound of every wait in these tests


class ScriptedServer(LoopbackListener):
    """One client at a time; answers a ReadyRequest with ready and a DeviceReport as
    ``on_report`` says: ``"ack"`` (once ``release`` is set), ``"close"`` (no answer, the
    connection closed), ``"silent"`` (no answer), ``"refuse"`` (an error reply), ``"v1"``
    (UNSUPPORTED_VERSION, as a version-1 server)."""

    def __init__(self, on_report: str = "ack") -> None:
        super().__init__(backlog=4, poll_s=0.1)
        self.on_report = on_report
        self.release = threading.Event()
        self.reports: list[DeviceReport] = []
        self.got_report = threading.Event()
        self.start()

    def accepted(self, conn: socket.socket) -> None:
        with conn:
            self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        reader = MessageReader()
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
                messages = list(iter(reader.next_message, None))
            except ProtocolError:  # e.g. the client's TLS probe after a close: not ours
                return
            for msg in messages:
                if isinstance(msg, ReadyRequest):
                    conn.sendall(encode(ReadyReply(ReturnCode.SUCCESS, "ready")))
                    continue
                assert isinstance(msg, DeviceReport), msg
                self.reports.append(msg)
                self.got_report.set()
                if not self._answer(conn):
                    return

    def _answer(self, conn: socket.socket) -> bool:
        """Answer a report as scripted; False: the connection is to be closed."""
        if self.on_report == "close":
            return False
        if self.on_report == "silent":
            return True
        if self.on_report == "refuse":
            conn.sendall(encode(ErrorReply(ReturnCode.RECORDS_UNAVAILABLE, "ledger is full")))
            return True
        if self.on_report == "v1":
            conn.sendall(encode(ErrorReply(ReturnCode.UNSUPPORTED_VERSION, "version 1 only")))
            return False
        self.release.wait(WAIT_S)
        conn.sendall(encode(ReportAck(RecordedState.INSTALLED), 2))
        return True

    def close(self) -> None:
        self.release.set()
        super().close()


def _report(outcome: ReportOutcome = ReportOutcome.INSTALLED) -> DeviceReport:
    return DeviceReport(
        outcome=outcome,
        stage=10,
        part_state=ReportPartState.PROVISIONED,
        code=ReturnCode.SUCCESS,
        device_sn=bytes(range(9)),
        device_public_key=bytes(range(64)),
        station_id="test-station",
        message="",
    )


def _hooks(port: int, io_timeout: float = WAIT_S) -> tuple[LinkHooks, io.StringIO]:
    out = io.StringIO()
    link = ServerLink("127.0.0.1", port, connect_timeout=WAIT_S, io_timeout=io_timeout)
    link.connect()
    return LinkHooks(link, Output(out), "test-station"), out


def test_installed_report_does_not_wait_for_its_ack() -> None:
    server = ScriptedServer("ack")  # the ack comes only once released
    try:
        hooks, out = _hooks(server.port)
        hooks.report_outcome(_report())  # would block until released if it waited
        assert server.got_report.wait(WAIT_S)
        assert hooks.link.pending and hooks.recorded is None
        server.release.set()
        hooks.settle_report()
        assert not hooks.link.pending
        assert hooks.recorded is RecordedState.INSTALLED
        assert out.getvalue() == ""
        assert hooks.link.alive()  # the stream is in step: nothing left unread
    finally:
        server.close()


def test_the_ack_is_read_before_the_link_is_used_again(pki: Pki) -> None:
    server = ScriptedServer("ack")
    server.release.set()
    try:
        hooks, out = _hooks(server.port)
        hooks.report_outcome(_report())
        assert hooks.link.pending
        # the next board's readiness question: its answer is the ready reply, not the ack
        hooks.check_ready(ready_request(pki.cert_info, "test-station"))
        assert hooks.recorded is RecordedState.INSTALLED
        assert not hooks.link.pending
        assert out.getvalue() == ""
    finally:
        server.close()


def test_closing_the_link_reads_the_ack_first() -> None:
    server = ScriptedServer("ack")
    server.release.set()
    try:
        hooks, _ = _hooks(server.port)
        hooks.report_outcome(_report())
        hooks.link.close()
        assert hooks.recorded is RecordedState.INSTALLED
        assert not hooks.link.connected
    finally:
        server.close()


def test_a_lost_ack_is_still_said() -> None:
    server = ScriptedServer("close")  # takes the report, closes without answering
    try:
        hooks, out = _hooks(server.port)
        hooks.report_outcome(_report())
        hooks.settle_report()
        assert server.reports and hooks.recorded is None
        assert "Outcome not reported to the server:" in out.getvalue()
        assert not hooks.link.connected  # closed: its stream is not trusted
    finally:
        server.close()


def test_an_ack_that_never_comes_times_out_and_is_said() -> None:
    server = ScriptedServer("silent")
    try:
        hooks, out = _hooks(server.port, io_timeout=0.3)
        hooks.report_outcome(_report())
        hooks.settle_report()  # bounded by the link's io_timeout
        assert hooks.recorded is None
        assert "Outcome not reported to the server:" in out.getvalue()
        assert "within 0.3 s" in out.getvalue()
    finally:
        server.close()


def test_an_ack_read_after_its_deadline_is_taken_if_it_came() -> None:
    server = ScriptedServer("ack")
    server.release.set()
    try:
        hooks, out = _hooks(server.port, io_timeout=0.2)
        hooks.report_outcome(_report())
        time.sleep(0.4)  # the station was busy past the answer's deadline; the ack is there
        hooks.settle_report()
        assert hooks.recorded is RecordedState.INSTALLED
        assert out.getvalue() == ""
    finally:
        server.close()


def test_a_refused_report_is_said_when_its_answer_is_read() -> None:
    server = ScriptedServer("refuse")
    try:
        hooks, out = _hooks(server.port)
        hooks.report_outcome(_report())
        hooks.settle_report()
        assert "Outcome not recorded by the server: ledger is full" in out.getvalue()
        assert hooks.server_records_outcomes
    finally:
        server.close()


def test_a_version_1_answer_stops_the_reports() -> None:
    server = ScriptedServer("v1")
    try:
        hooks, out = _hooks(server.port)
        hooks.report_outcome(_report())
        hooks.settle_report()
        assert not hooks.server_records_outcomes
        assert "does not record provisioning outcomes" in out.getvalue()
        hooks.report_outcome(_report())  # not sent again
        assert len(server.reports) == 1 and not hooks.link.pending
    finally:
        server.close()


def test_a_failed_run_report_is_waited_for() -> None:
    server = ScriptedServer("ack")
    server.release.set()
    try:
        hooks, _ = _hooks(server.port)
        hooks.report_outcome(_report(ReportOutcome.FAILED))
        assert not hooks.link.pending
        assert hooks.recorded is RecordedState.INSTALLED  # (this server acks all alike)
    finally:
        server.close()


def test_the_ack_is_read_from_the_link_the_report_went_to() -> None:
    """A station that moved to another server meanwhile (failover) reads the ack from the
    first one's connection, not from the one now in use."""
    first, second = ScriptedServer("ack"), ScriptedServer("ack")
    first.release.set()
    try:
        hooks, out = _hooks(first.port)
        hooks.report_outcome(_report())
        sent_on = hooks.link
        other = ServerLink("127.0.0.1", second.port, connect_timeout=WAIT_S, io_timeout=WAIT_S)
        other.connect()
        hooks.link = other
        sent_on.close()  # the pool moving on closes the first link: its ack is read first
        assert hooks.recorded is RecordedState.INSTALLED
        assert hooks.link is other and other.alive()
        assert out.getvalue() == ""
        other.close()
    finally:
        first.close()
        second.close()
