"""The flow's outcome report (protocol version 2): when it is made, what it says, how it is sent."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import pytest

from atcaprov import provision
from atcaprov.certreq import send_report
from atcaprov.device import Device
from atcaprov.emulator import Atecc508a
from atcaprov.hal import open_hal
from atcaprov.hal.faults import FaultHal
from atcaprov.protocol import (
    CertReply,
    DeviceReport,
    RecordedState,
    ReportOutcome,
    ReportPartState,
    ServerError,
)
from atcaprov.provisioning import ProvisioningError
from atcaprov.return_codes import ReturnCode
from atcaprov.stages import ProvStage, ProvStatus
from tests.support.cert_server import InMemoryServer
from tests.support.hooks import RecordingHooks
from tests.support.pki import Pki, make_pki


@dataclass
class ReportingHooks(RecordingHooks):
    reports: list[DeviceReport] = field(default_factory=list)
    unplug_at: ProvStage | None = None
    hal: FaultHal | None = None
    station_id: str = "line-7"

    def report_outcome(self, report: DeviceReport) -> None:
        self.reports.append(report)

    def notify(self, stage: ProvStage, status: ProvStatus) -> None:
        super().notify(stage, status)
        if stage == self.unplug_at and status == ProvStatus.START and self.hal is not None:
            self.hal.arm("unplug")


def _setup(pki: Pki) -> tuple[Atecc508a, FaultHal, Device, ReportingHooks]:
    chip = Atecc508a()
    hal = FaultHal(open_hal("emulator", chip=chip))
    hooks = ReportingHooks(InMemoryServer(pki), hal=hal)
    return chip, hal, Device(hal), hooks


def test_installed_after_validation(pki: Pki) -> None:
    _chip, _hal, device, hooks = _setup(pki)
    result = provision(device, hooks, pki.cert_info)
    (report,) = hooks.reports
    assert report == DeviceReport(
        ReportOutcome.INSTALLED,
        int(ProvStage.VALIDATE_CERTS),
        ReportPartState.PROVISIONED,
        ReturnCode.SUCCESS,
        result.serial_number,
        result.public_key,
        "line-7",
        "",
    )
    assert hooks.events[-1] == (ProvStage.VALIDATE_CERTS, ProvStatus.DONE)  # report comes last


def test_installed_without_validation_says_so(pki: Pki) -> None:
    _chip, _hal, device, hooks = _setup(pki)
    provision(device, hooks, pki.cert_info, validate=False)
    (report,) = hooks.reports
    assert report.outcome is ReportOutcome.INSTALLED and "validation skipped" in report.message
    assert report.stage == ProvStage.DATA_LOCK


def test_a_part_removed_after_it_got_a_key_is_abandoned(pki: Pki) -> None:
    _chip, _hal, device, hooks = _setup(pki)
    hooks.unplug_at = ProvStage.CERTS_WRITE
    with pytest.raises(ProvisioningError):
        provision(device, hooks, pki.cert_info)
    (report,) = hooks.reports
    assert (report.outcome, report.stage, report.part_state, report.code) == (
        ReportOutcome.ABANDONED,
        ProvStage.CERTS_WRITE,
        ReportPartState.UNKNOWN,
        ReturnCode.DEVICE_ERROR,
    )  # the part is gone: its state cannot be read
    assert len(report.device_public_key) == 64 and report.device_public_key != bytes(64)


@pytest.mark.parametrize("stage", [ProvStage.CONFIG_LOCK, ProvStage.GEN_KEY])
def test_no_report_before_the_part_has_a_key(pki: Pki, stage: ProvStage) -> None:
    _chip, _hal, device, hooks = _setup(pki)
    hooks.unplug_at = stage
    with pytest.raises(ProvisioningError):
        provision(device, hooks, pki.cert_info)
    assert hooks.reports == []


def test_a_failed_check_is_reported_failed(pki: Pki) -> None:
    _chip, _hal, device, hooks = _setup(pki)
    other = make_pki(signer_id=pki.cert_info.signer_id)

    def swap_signer(reply: CertReply) -> CertReply:
        return replace(reply, signer_cert=other.signer_cert)

    hooks.server.tamper = swap_signer
    with pytest.raises(ProvisioningError) as info:
        provision(device, hooks, pki.cert_info)
    (report,) = hooks.reports
    assert report.outcome is ReportOutcome.FAILED and report.stage == ProvStage.CERTS_WRITE
    assert report.code is info.value.code and report.message == info.value.message


def test_a_refusal_by_the_server_is_not_reported(pki: Pki) -> None:
    _chip, _hal, device, hooks = _setup(pki)
    hooks.server.error = (ReturnCode.DEVICE_ALREADY_PROVISIONED, "installed with another key")
    with pytest.raises(ProvisioningError) as info:
        provision(device, hooks, pki.cert_info)
    assert info.value.code is ReturnCode.DEVICE_ALREADY_PROVISIONED
    assert hooks.reports == []


def test_a_failing_report_hook_does_not_change_the_result(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    _chip, _hal, device, hooks = _setup(pki)

    class Broken(ReportingHooks):
        def report_outcome(self, report: DeviceReport) -> None:
            raise OSError("server gone")

    broken = Broken(hooks.server)
    with caplog.at_level(logging.WARNING, logger="atcaprov.provisioning"):
        provision(device, broken, pki.cert_info)
    assert "not reported: server gone" in caplog.text


def test_send_report_over_the_hooks(pki: Pki) -> None:
    server = InMemoryServer(pki)
    hooks = RecordingHooks(server)
    report = DeviceReport(
        ReportOutcome.FAILED,
        6,
        ReportPartState.CONFIG_LOCKED,
        ReturnCode.CERT_MISMATCH,
        bytes(9),
        bytes(64),
        None,
        "mismatch",
    )
    ack = send_report(hooks, report)
    assert ack.state is RecordedState.FAILED and server.reports == [report]
    assert hooks.calls == ["start", "send", "done"]
    server.protocol_version = 1  # an older server: the report's version is unknown to it
    with pytest.raises(ServerError) as info:
        send_report(hooks, report)
    assert info.value.code is ReturnCode.UNSUPPORTED_VERSION
    assert hooks.errors == []  # not a request error: the board's result does not change
