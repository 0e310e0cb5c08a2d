"""The ten-stage flow against the emulated chip and an in-memory server."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from atcaprov import provision, verify
from atcaprov.config import DEFAULT_CONFIG, ConfigError
from atcaprov.datasheet import ATECC508A, SN_LAST, SN_PREFIX
from atcaprov.device import Device
from atcaprov.emulator import Atecc508a
from atcaprov.emulator.state import Memory
from atcaprov.emulator.zones import default_config
from atcaprov.errors import AtcaprovError, ExecutionError
from atcaprov.hal import Hal, open_hal
from atcaprov.hal.faults import FaultHal
from atcaprov.packet import Opcode
from atcaprov.protocol import CertReply
from atcaprov.provisioning import (
    AlreadyProvisionedError,
    ConfigMismatchError,
    PartState,
    ProvisioningError,
)
from atcaprov.return_codes import ReturnCode
from atcaprov.stages import ProvStage, ProvStatus
from tests.support.cert_server import InMemoryServer
from tests.support.hooks import RecordingHooks
from tests.support.pki import Pki, make_pki
from tests.support.sweep import factory_part

S, D, K, E = ProvStatus.START, ProvStatus.DONE, ProvStatus.SKIPPED, ProvStatus.ERROR


def _setup(
    pki: Pki, chip: Atecc508a | None = None
) -> tuple[Atecc508a, FaultHal, Device, InMemoryServer, RecordingHooks]:
    chip = chip or Atecc508a()
    hal = FaultHal(open_hal("emulator", chip=chip))
    device = Device(hal)
    server = InMemoryServer(pki)
    return chip, hal, device, server, RecordingHooks(server)


def test_full_flow_notify_sequence_and_result(pki: Pki) -> None:
    chip, _hal, device, server, hooks = _setup(pki)
    result = provision(device, hooks, pki.cert_info)
    assert hooks.events == [
        (ProvStage.CONFIG_WRITE, S),
        (ProvStage.CONFIG_WRITE, D),
        (ProvStage.CONFIG_LOCK, S),
        (ProvStage.CONFIG_LOCK, D),
        (ProvStage.CONFIG_READ, S),
        (ProvStage.CONFIG_READ, D),
        (ProvStage.GEN_KEY, S),
        (ProvStage.GEN_KEY, D),
        (ProvStage.CERTS_REQUEST, S),
        (ProvStage.CERTS_REQUEST, D),
        (ProvStage.CERTS_WRITE, S),
        (ProvStage.CERTS_WRITE, D),
        (ProvStage.DATA_WRITE, S),
        (ProvStage.DATA_WRITE, D),
        (ProvStage.DATA_LOCK, S),
        (ProvStage.DATA_LOCK, D),
        (ProvStage.SLOTS_LOCK, K),
        (ProvStage.VALIDATE_CERTS, S),
        (ProvStage.VALIDATE_CERTS, D),
    ]
    assert hooks.calls == ["start", "send", "done"]
    assert chip.config_locked and chip.data_locked
    assert result.serial_number == chip.serial_number
    assert result.skipped == [ProvStage.SLOTS_LOCK]
    request = server.requests[0]
    assert request.config_zone == result.config_zone
    assert request.device_public_key == result.public_key
    assert request.signer_id == pki.cert_info.signer_id
    # the part verifies independently, and its certificates are the ones the server issued
    report = verify(device, pki.cert_info, expected_config=DEFAULT_CONFIG)
    assert report.ok, report.lines()
    assert report.device_cert == result.device_cert
    assert report.signer_cert == result.signer_cert


def test_partial_recv_delivery(pki: Pki) -> None:
    _chip, _hal, device, _server, hooks = _setup(pki)
    hooks.chunk = 7
    result = provision(device, hooks, pki.cert_info, validate=False)
    assert hooks.recv_sizes[0] == 12  # the header first, exactly
    assert len(hooks.recv_sizes) > 20  # many partial reads were needed
    assert sum(min(n, 7) for n in hooks.recv_sizes) >= len(result.device_cert)
    assert (ProvStage.VALIDATE_CERTS, K) in hooks.events


def test_server_error_reaches_request_error(pki: Pki) -> None:
    chip, _hal, device, server, hooks = _setup(pki)
    server.error = (ReturnCode.SIGNER_LOCKED, "Signer (0123, Test) waits for its password")
    with pytest.raises(ProvisioningError) as info:
        provision(device, hooks, pki.cert_info)
    assert hooks.errors == [
        (ReturnCode.SIGNER_LOCKED, "Signer (0123, Test) waits for its password")
    ]
    assert info.value.code == ReturnCode.SIGNER_LOCKED
    assert info.value.stage == ProvStage.CERTS_REQUEST
    assert info.value.part_state == PartState.CONFIG_LOCKED
    assert hooks.events[-1] == (ProvStage.CERTS_REQUEST, E)
    assert hooks.calls == ["start", "send", "done"]
    assert chip.config_locked and not chip.data_locked


def test_server_closing_connection_midway(pki: Pki) -> None:
    _chip, _hal, device, _server, hooks = _setup(pki)

    class Cut(RecordingHooks):
        def certreq_recv(self, n: int) -> bytes:
            return b"" if self.recv_sizes else super().certreq_recv(n)

    cut = Cut(hooks.server)
    with pytest.raises(ProvisioningError) as info:
        provision(device, cut, pki.cert_info)
    assert info.value.code == ReturnCode.COMM_ERROR
    assert "closed the connection" in info.value.message


STAGE_STATES = [
    (ProvStage.CONFIG_WRITE, PartState.UNLOCKED),
    (ProvStage.CONFIG_LOCK, PartState.UNLOCKED),
    (ProvStage.CONFIG_READ, PartState.CONFIG_LOCKED),
    (ProvStage.GEN_KEY, PartState.CONFIG_LOCKED),
    (ProvStage.CERTS_WRITE, PartState.CONFIG_LOCKED),
    (ProvStage.DATA_WRITE, PartState.CONFIG_LOCKED),
    (ProvStage.DATA_LOCK, PartState.CONFIG_LOCKED),
    (ProvStage.SLOTS_LOCK, PartState.PROVISIONED),
    (ProvStage.VALIDATE_CERTS, PartState.PROVISIONED),
]


def _fault_at_stage(
    hal: FaultHal, server: InMemoryServer, stage: ProvStage, fault: int | str
) -> RecordingHooks:
    class Faulting(RecordingHooks):
        def notify(self, st: ProvStage, status: ProvStatus) -> None:
            super().notify(st, status)
            if st == stage and status == ProvStatus.START:
                hal.arm(fault)

        def write_data_zone(self, device: Device) -> None:
            device.write_zone(2, 9, 0, 0, bytes(range(32)))

    return Faulting(server)


def _part_to_configure() -> Atecc508a:
    """A blank part whose config differs from the default in every writable word, so that
    CONFIG_WRITE has Writes to send."""
    config = default_config(SN_PREFIX + bytes(6) + bytes((SN_LAST,)))
    for i in (*range(16, 84), *range(88, 128)):
        config[i] = DEFAULT_CONFIG[i] ^ 0x5A
    return Atecc508a(_memory=Memory.blank(config, ATECC508A))


def _chip_state(chip: Atecc508a) -> PartState:
    if chip.data_locked:
        return PartState.PROVISIONED
    return PartState.CONFIG_LOCKED if chip.config_locked else PartState.UNLOCKED


@pytest.mark.parametrize(("stage", "state"), STAGE_STATES)
def test_board_removed_at_each_chip_stage(pki: Pki, stage: ProvStage, state: PartState) -> None:
    chip, hal, device, server, _hooks = _setup(pki, _part_to_configure())
    hooks = _fault_at_stage(hal, server, stage, "unplug")
    lock = (10,) if stage == ProvStage.SLOTS_LOCK else ()
    with pytest.raises(ProvisioningError) as info:
        provision(device, hooks, pki.cert_info, lock_slots=lock)
    assert info.value.stage == stage
    assert info.value.code == ReturnCode.DEVICE_ERROR
    # the lock bytes cannot be read from a removed board: the state is not guessed
    assert info.value.part_state == PartState.UNKNOWN
    assert "plug the part in again" in info.value.part_state.value
    assert hooks.events[-2:] == [(stage, S), (stage, E)]
    assert _chip_state(chip) == state


@pytest.mark.parametrize(("stage", "state"), STAGE_STATES[:-1])  # VALIDATE_CERTS retries it
def test_part_state_is_read_from_the_chip(pki: Pki, stage: ProvStage, state: PartState) -> None:
    chip, hal, device, server, _hooks = _setup(pki, _part_to_configure())
    hooks = _fault_at_stage(hal, server, stage, 0x0F)  # the stage's first command refused
    lock = (10,) if stage == ProvStage.SLOTS_LOCK else ()
    with pytest.raises(ProvisioningError) as info:
        provision(device, hooks, pki.cert_info, lock_slots=lock)
    assert info.value.stage == stage
    assert info.value.part_state == state == _chip_state(chip)


class FaultAtOpcode(FaultHal):
    """Arms ``fault`` right before the ``position``-th command whose opcode is in ``opcodes``."""

    def __init__(
        self, inner: Hal, opcodes: tuple[int, ...], position: int, fault: int | str
    ) -> None:
        super().__init__(inner)
        self.targets, self.position, self.fault, self.seen = opcodes, position, fault, 0

    def transact(self, packet: bytes, exec_time_ms: float) -> bytes:
        if packet[1] in self.targets:
            if self.seen == self.position:
                self.arm(self.fault)
            self.seen += 1
        return super().transact(packet, exec_time_ms)


@pytest.mark.parametrize("fault", ["lost", "crc", "timeout", 0xFF, 0xEE, 0x11, 0x05])
@pytest.mark.parametrize(
    "position", range(5), ids=["config-lock", "data-lock", "slot-10", "slot-12", "sign"]
)
def test_lost_answer_at_a_lock_or_the_sign_does_not_fail_the_run(
    pki: Pki, fault: int | str, position: int
) -> None:
    chip = Atecc508a()
    hal = FaultAtOpcode(
        open_hal("emulator", chip=chip), (Opcode.LOCK, Opcode.SIGN), position, fault
    )
    device = Device(hal)
    provision(device, RecordingHooks(InMemoryServer(pki)), pki.cert_info, lock_slots=(10, 12))
    assert len(hal.fired) == 1
    assert chip.data_locked and device.is_slot_locked(10) and device.is_slot_locked(12)
    if fault in ("lost", "crc"):  # the chip did lock: the Lock was never sent twice
        assert device.opcode_counts[Opcode.LOCK] == 4


def test_chip_error_status_at_gen_key(pki: Pki) -> None:
    _chip, hal, device, _server, hooks = _setup(pki)

    class Failing(RecordingHooks):
        def notify(self, st: ProvStage, status: ProvStatus) -> None:
            super().notify(st, status)
            if st == ProvStage.GEN_KEY and status == ProvStatus.START:
                hal.arm(0x0F)

    with pytest.raises(ProvisioningError) as info:
        provision(device, Failing(hooks.server), pki.cert_info)
    assert info.value.stage == ProvStage.GEN_KEY
    assert "0x0F" in str(info.value)


def test_write_data_zone_hook_error_stops_before_lock(pki: Pki) -> None:
    chip, _hal, device, _server, hooks = _setup(pki)

    class Broken(RecordingHooks):
        def write_data_zone(self, device: Device) -> None:
            raise RuntimeError("operator database unreachable")

    with pytest.raises(ProvisioningError) as info:
        provision(device, Broken(hooks.server), pki.cert_info)
    assert info.value.stage == ProvStage.DATA_WRITE
    assert "operator database unreachable" in info.value.message
    assert not chip.data_locked


def test_extra_data_written_before_lock(pki: Pki) -> None:
    _chip, _hal, device, _server, hooks = _setup(pki)
    hooks.extra_data = {13: bytes(range(64))}
    provision(device, hooks, pki.cert_info)
    assert device.read_bytes_zone(2, 13, 0, 64) == bytes(range(64))


def test_tampered_certificate_caught_before_data_lock(pki: Pki) -> None:
    chip, _hal, device, server, hooks = _setup(pki)
    other = make_pki(signer_id=pki.cert_info.signer_id)

    def swap_signer(reply: CertReply) -> CertReply:
        return replace(reply, signer_cert=other.signer_cert)

    server.tamper = swap_signer
    with pytest.raises(ProvisioningError) as info:
        provision(device, hooks, pki.cert_info)
    assert info.value.stage == ProvStage.CERTS_WRITE
    assert info.value.code in (ReturnCode.CERT_MISMATCH, ReturnCode.VALIDATION_FAILED)
    assert not chip.data_locked  # stopped before the point of no return


def test_resume_config_locked_same_config(pki: Pki) -> None:
    chip, hal, device, server, _hooks = _setup(pki)

    class Unplug(RecordingHooks):
        def notify(self, st: ProvStage, status: ProvStatus) -> None:
            super().notify(st, status)
            if st == ProvStage.GEN_KEY and status == ProvStatus.START:
                hal.arm("unplug")

    with pytest.raises(ProvisioningError):
        provision(device, Unplug(server), pki.cert_info)
    assert chip.config_locked and not chip.data_locked
    # replug: same chip, fresh transport
    device2 = Device(open_hal("emulator", chip=chip))
    hooks2 = RecordingHooks(server)
    provision(device2, hooks2, pki.cert_info)
    assert hooks2.events[:2] == [(ProvStage.CONFIG_WRITE, K), (ProvStage.CONFIG_LOCK, K)]
    assert chip.data_locked


def test_resume_config_locked_different_config(pki: Pki) -> None:
    chip, _hal, device, _server, hooks = _setup(pki)
    provision_config = bytearray(DEFAULT_CONFIG)
    provision_config[16] = 0xB0  # another I2C address
    device.write_config_zone(bytes(provision_config))
    device.lock_config_zone()
    with pytest.raises(ConfigMismatchError) as info:
        provision(device, hooks, pki.cert_info)
    assert "byte 16" in info.value.message
    assert info.value.code == ReturnCode.CONFIG_MISMATCH
    assert hooks.events == [(ProvStage.CONFIG_WRITE, S), (ProvStage.CONFIG_WRITE, E)]
    assert not chip.data_locked


def test_already_provisioned_part_untouched(pki: Pki) -> None:
    chip, _hal, device, _server, hooks = _setup(pki)
    provision(device, hooks, pki.cert_info)
    before = chip.chip_time_ms
    hooks2 = RecordingHooks(hooks.server)
    writes_before = device.opcode_counts.get(0x12, 0)
    with pytest.raises(AlreadyProvisionedError) as info:
        provision(device, hooks2, pki.cert_info)
    assert info.value.code == ReturnCode.ALREADY_PROVISIONED
    assert info.value.part_state == PartState.PROVISIONED
    assert device.opcode_counts.get(0x12, 0) == writes_before  # no Write was sent
    assert chip.chip_time_ms > before  # only the config read ran
    assert hooks2.calls == []  # the server was never asked


def test_lock_slots(pki: Pki) -> None:
    _chip, _hal, device, _server, hooks = _setup(pki)
    provision(device, hooks, pki.cert_info, lock_slots=[10, 12])
    assert (ProvStage.SLOTS_LOCK, D) in hooks.events
    assert device.is_slot_locked(10) and device.is_slot_locked(12)
    assert not device.is_slot_locked(11)


def test_bad_lock_slot_refused_before_touching_part(pki: Pki) -> None:
    chip, _hal, device, _server, hooks = _setup(pki)
    with pytest.raises(ConfigError, match="slot 2 is not lockable"):
        provision(device, hooks, pki.cert_info, lock_slots=[2])
    with pytest.raises(ConfigError, match="slot 16 does not exist"):
        provision(device, hooks, pki.cert_info, lock_slots=[16])
    assert hooks.events == []
    assert not chip.config_locked


def test_config_that_breaks_the_flow_is_refused(pki: Pki) -> None:
    _chip, _hal, device, _server, hooks = _setup(pki)
    bad = bytearray(DEFAULT_CONFIG)
    bad[96] = 0x3C  # KeyConfig[0]: not a private key any more
    with pytest.raises(ConfigError) as info:
        provision(device, hooks, pki.cert_info, config=bytes(bad))
    assert info.value.offset is not None
    assert hooks.events == []


def test_verify_reports_blank_and_foreign_parts(pki: Pki) -> None:
    _chip, _hal, device, _server, hooks = _setup(pki)
    report = verify(device, pki.cert_info)
    assert not report.ok
    assert [c.name for c in report.checks if not c.ok] == [
        "config zone locked",
        "data zone locked",
        "certificates",
    ]
    provision(device, hooks, pki.cert_info)
    foreign = make_pki()
    report = verify(device, foreign.cert_info)
    assert not report.ok
    assert any(c.name == "certificate chain" and not c.ok for c in report.checks)


# ---- every failure is a ProvisioningError, the first config read included -------------------
@pytest.mark.parametrize(
    ("fault", "state"),
    [("unplug", PartState.UNKNOWN), (0x0F, PartState.UNLOCKED), (0x03, PartState.UNLOCKED)],
)
def test_fault_in_the_first_config_read(pki: Pki, fault: int | str, state: PartState) -> None:
    _chip, hal, device, _server, hooks = _setup(pki)
    hal.arm(fault, after=1)  # the second of the four config reads
    with pytest.raises(ProvisioningError) as info:
        provision(device, hooks, pki.cert_info)
    assert info.value.stage == ProvStage.CONFIG_WRITE
    assert info.value.code == ReturnCode.DEVICE_ERROR
    assert info.value.part_state == state
    assert hooks.events == [(ProvStage.CONFIG_WRITE, S), (ProvStage.CONFIG_WRITE, E)]
    assert isinstance(info.value.__cause__, AtcaprovError)


def test_transient_fault_in_the_first_config_read_is_absorbed(pki: Pki) -> None:
    chip, hal, device, _server, hooks = _setup(pki)
    hal.arm("crc", after=2, times=2)
    provision(device, hooks, pki.cert_info)
    assert chip.data_locked


# ---- slot locks left undone are finished by the next run --------------------------------------
def _stop_at_first_slot_lock(pki: Pki) -> tuple[Atecc508a, InMemoryServer]:
    chip = Atecc508a()
    hal = FaultAtOpcode(open_hal("emulator", chip=chip), (Opcode.LOCK,), 2, "unplug")
    server = InMemoryServer(pki)
    with pytest.raises(ProvisioningError) as info:
        provision(Device(hal), RecordingHooks(server), pki.cert_info, lock_slots=(10, 12))
    assert info.value.stage == ProvStage.SLOTS_LOCK
    assert chip.data_locked
    return chip, server


def test_resumed_part_finishes_the_slot_locks(pki: Pki) -> None:
    chip, server = _stop_at_first_slot_lock(pki)
    device = Device(open_hal("emulator", chip=chip))
    assert not device.is_slot_locked(10) and not device.is_slot_locked(12)
    report = verify(device, pki.cert_info, lock_slots=(10, 12))
    assert not report.ok and "slot 10, 12 not locked" in report.lines()[2]
    hooks = RecordingHooks(server)
    requests = len(server.requests)
    result = provision(device, hooks, pki.cert_info, lock_slots=(10, 12))
    assert device.is_slot_locked(10) and device.is_slot_locked(12)
    assert len(server.requests) == requests  # nothing was asked of the server
    assert (ProvStage.SLOTS_LOCK, D) in hooks.events
    assert (ProvStage.VALIDATE_CERTS, D) in hooks.events
    assert ProvStage.GEN_KEY in result.skipped and ProvStage.DATA_LOCK in result.skipped
    assert result.device_cert == verify(device, pki.cert_info).device_cert
    assert verify(device, pki.cert_info, lock_slots=(10, 12)).ok
    with pytest.raises(AlreadyProvisionedError):  # and then it is done
        provision(device, RecordingHooks(server), pki.cert_info, lock_slots=(10, 12))


def test_slot_locks_not_finished_on_a_part_that_is_not_ours(pki: Pki) -> None:
    chip, _server = _stop_at_first_slot_lock(pki)
    other = make_pki()
    device = Device(open_hal("emulator", chip=chip))
    hooks = RecordingHooks(InMemoryServer(other))
    with pytest.raises(ProvisioningError) as info:
        provision(device, hooks, other.cert_info, lock_slots=(10, 12))
    assert info.value.stage == ProvStage.SLOTS_LOCK
    assert "slots are left unlocked" in info.value.message
    assert info.value.part_state == PartState.PROVISIONED
    assert not device.is_slot_locked(10) and not device.is_slot_locked(12)


def test_data_locked_part_without_pending_slot_locks_is_left_alone(pki: Pki) -> None:
    chip, server = _stop_at_first_slot_lock(pki)
    device = Device(open_hal("emulator", chip=chip))
    with pytest.raises(AlreadyProvisionedError):  # no slot lock asked for this time
        provision(device, RecordingHooks(server), pki.cert_info)
    assert not device.is_slot_locked(10)


# ---- the data lock carries the summary CRC ----------------------------------------------------
def test_unknown_factory_data_is_overwritten_and_locked_with_crc(pki: Pki) -> None:
    chip = factory_part(random.Random(7))
    device = Device(open_hal("emulator", chip=chip))
    hooks = RecordingHooks(InMemoryServer(pki))
    hooks.extra_data = {13: bytes(range(64))}
    provision(device, hooks, pki.cert_info)
    assert chip.data_locked
    assert device.read_bytes_zone(2, 13, 0, 72) == bytes(range(64)) + bytes(8)
    assert device.read_bytes_zone(2, 14, 0, 72) == bytes(72)  # a slot nothing went to: zeros
    assert device.read_bytes_zone(1, 0, 0, 64) == b"\xff" * 64  # the OTP zone: erased
    assert verify(device, pki.cert_info).ok


def test_write_acknowledged_but_not_done_is_caught_by_the_lock_crc(pki: Pki) -> None:
    chip = factory_part(random.Random(8))
    hal = FaultAtOpcode(open_hal("emulator", chip=chip), (Opcode.WRITE,), 40, 0x00)
    device = Device(hal)
    server = InMemoryServer(pki)
    with pytest.raises(ProvisioningError) as info:
        provision(device, RecordingHooks(server), pki.cert_info)
    assert hal.fired
    assert info.value.stage == ProvStage.DATA_LOCK
    assert "refused the data lock" in info.value.message
    assert info.value.part_state == PartState.CONFIG_LOCKED
    assert not chip.data_locked
    provision(Device(open_hal("emulator", chip=chip)), RecordingHooks(server), pki.cert_info)
    assert chip.data_locked


def test_lock_acknowledged_but_not_done_fails_the_run(pki: Pki) -> None:
    chip = Atecc508a()
    hal = FaultAtOpcode(open_hal("emulator", chip=chip), (Opcode.LOCK,), 1, 0x00)
    with pytest.raises(ProvisioningError) as info:
        provision(Device(hal), RecordingHooks(InMemoryServer(pki)), pki.cert_info)
    assert info.value.stage == ProvStage.DATA_LOCK
    assert "acknowledged" in info.value.message
    assert info.value.part_state == PartState.CONFIG_LOCKED and not chip.data_locked


def test_hook_overwriting_certificate_data_is_refused(pki: Pki) -> None:
    chip, _hal, device, _server, hooks = _setup(pki)
    hooks.extra_data = {10: bytes(range(32))}  # slot 10 holds the device certificate
    with pytest.raises(ProvisioningError) as info:
        provision(device, hooks, pki.cert_info)
    assert info.value.stage == ProvStage.DATA_WRITE
    assert info.value.code == ReturnCode.CERT_MISMATCH
    assert "overwrote certificate data in slot 10" in info.value.message
    assert not chip.data_locked


def test_hook_writing_the_otp_zone_is_covered_by_the_crc(pki: Pki) -> None:
    chip, _hal, device, _server, hooks = _setup(pki)

    class OtpHooks(RecordingHooks):
        def write_data_zone(self, device: Device) -> None:
            device.write_zone(1, 0, 1, 0, b"OTP!" * 8)

    provision(device, OtpHooks(hooks.server), pki.cert_info)
    assert chip.data_locked
    assert device.read_bytes_zone(1, 0, 32, 32) == b"OTP!" * 8


def test_failure_after_the_data_lock_says_which_slot_locks_are_pending(pki: Pki) -> None:
    chip = Atecc508a()
    hal = FaultAtOpcode(open_hal("emulator", chip=chip), (Opcode.LOCK,), 3, 0x0F)
    with pytest.raises(ProvisioningError) as info:
        provision(
            Device(hal), RecordingHooks(InMemoryServer(pki)), pki.cert_info, lock_slots=(10, 12)
        )
    assert info.value.stage == ProvStage.SLOTS_LOCK
    assert info.value.part_state == PartState.PROVISIONED
    assert info.value.message.endswith(
        "slot lock 12 not done yet: provision the part again to finish it"
    )
    assert isinstance(info.value.__cause__, ExecutionError)


def test_refused_data_lock_keeps_the_chip_status_as_cause(pki: Pki) -> None:
    chip = Atecc508a()
    hal = FaultAtOpcode(open_hal("emulator", chip=chip), (Opcode.LOCK,), 1, 0x0F)
    with pytest.raises(ProvisioningError) as info:
        provision(Device(hal), RecordingHooks(InMemoryServer(pki)), pki.cert_info)
    assert info.value.stage == ProvStage.DATA_LOCK
    cause = info.value.__cause__
    assert isinstance(cause, ExecutionError) and cause.status == 0x0F
