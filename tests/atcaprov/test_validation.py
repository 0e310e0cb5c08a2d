"""verify() and VALIDATE_CERTS on damaged parts and through transient faults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atcaprov import provision, verify
from atcaprov.device import Device
from atcaprov.emulator import Atecc508a
from atcaprov.errors import CommError, ExecutionError
from atcaprov.hal import Hal, open_hal
from atcaprov.hal.emulator import EmulatorHal
from atcaprov.hal.faults import FaultHal
from atcaprov.packet import Opcode
from atcaprov.return_codes import ReturnCode
from atcaprov.validation import VALIDATION_ATTEMPTS, ValidationError, validate_part
from tests.support.cert_server import InMemoryServer
from tests.support.hooks import RecordingHooks
from tests.support.pki import Pki

SIGNER_PUBKEY_SLOT = 11


class ArmAtSign(FaultHal):
    """``fault`` armed at the first Sign (the Signs after it go through); counts the Signs."""

    def __init__(self, inner: Hal, fault: int | str) -> None:
        super().__init__(inner)
        self.fault = fault
        self.signs = 0

    def transact(self, packet: bytes, exec_time_ms: float) -> bytes:
        if packet[1] == Opcode.SIGN:
            self.signs += 1
            if not self.fired:
                self.arm(self.fault)
        return super().transact(packet, exec_time_ms)


class RefuseSign(FaultHal):
    """Every Sign is refused by the chip (status 0x0F); counts them."""

    signs = 0

    def transact(self, packet: bytes, exec_time_ms: float) -> bytes:
        if packet[1] == Opcode.SIGN:
            self.signs += 1
            self.arm(0x0F)
        return super().transact(packet, exec_time_ms)


def _provisioned(pki: Pki, lock_slots: tuple[int, ...] = ()) -> Atecc508a:
    chip = Atecc508a()
    provision(
        Device(open_hal("emulator", chip=chip)),
        RecordingHooks(InMemoryServer(pki)),
        pki.cert_info,
        lock_slots=lock_slots,
    )
    return chip


def _with_slot(chip: Atecc508a, slot: int, data: bytes, tmp_path: Path) -> Atecc508a:
    """The same part, with other bytes in a slot (a part damaged before its data lock)."""
    path = tmp_path / "part.json"
    chip.save(path)
    doc = json.loads(path.read_text())
    doc["slots"][slot] = data.hex()
    path.write_text(json.dumps(doc))
    return Atecc508a.load(path)


def test_garbage_signer_key_is_a_failed_check_not_an_exception(pki: Pki, tmp_path: Path) -> None:
    damaged = _with_slot(_provisioned(pki), SIGNER_PUBKEY_SLOT, bytes(range(72)), tmp_path)
    device = Device(open_hal("emulator", chip=damaged))
    assert pki.cert_info.signer_cert_def.public_key_dev_loc.slot == SIGNER_PUBKEY_SLOT
    report = verify(device, pki.cert_info)
    assert not report.ok
    failed = [c for c in report.checks if not c.ok]
    assert [c.name for c in failed] == ["certificate chain"]
    assert "P-256" in failed[0].detail
    with pytest.raises(ValidationError) as info:  # what VALIDATE_CERTS reports
        validate_part(device, pki.cert_info, damaged.serial_number)
    assert info.value.code == ReturnCode.VALIDATION_FAILED


def test_verify_checks_the_expected_slot_locks(pki: Pki) -> None:
    device = Device(open_hal("emulator", chip=_provisioned(pki, lock_slots=(10,))))
    assert verify(device, pki.cert_info, lock_slots=(10,)).ok
    report = verify(device, pki.cert_info, lock_slots=(10, 12))
    assert not report.ok
    assert "FAIL slots locked: slot 12 not locked" in report.lines()
    assert verify(device, pki.cert_info, lock_slots=()).ok


@pytest.mark.parametrize("fault", [0x0F, 0x01, "lost", "crc"])
def test_verify_retries_the_key_challenge(pki: Pki, fault: int | str) -> None:
    chip = _provisioned(pki)

    hal = ArmAtSign(EmulatorHal(chip), fault)
    report = verify(Device(hal), pki.cert_info)
    assert report.ok, report.lines()
    assert hal.fired


def test_verify_gives_up_on_a_chip_that_always_refuses(pki: Pki) -> None:
    chip = _provisioned(pki)

    hal = RefuseSign(EmulatorHal(chip))
    report = verify(Device(hal), pki.cert_info)
    assert [c.name for c in report.checks if not c.ok] == ["device key challenge"]
    assert hal.signs == VALIDATION_ATTEMPTS


def test_verify_raises_for_a_board_that_is_gone(pki: Pki) -> None:
    hal = FaultHal(EmulatorHal(_provisioned(pki)))
    hal.arm("unplug", after=6)
    with pytest.raises(CommError):
        verify(Device(hal), pki.cert_info)


@pytest.mark.parametrize("fault", [0x0F, "lost", "crc"])
def test_validate_part_tries_the_first_challenge_again(pki: Pki, fault: int | str) -> None:
    """The first challenge is signed while the certificates are checked; a failed one is
    tried again once the certificates are known good."""
    chip = _provisioned(pki)

    hal = ArmAtSign(EmulatorHal(chip), fault)
    certs = validate_part(Device(hal), pki.cert_info, chip.serial_number)
    assert hal.fired and hal.signs >= 2
    assert certs.signer_cert == pki.signer_cert


def test_validate_part_gives_up_after_its_attempts(pki: Pki) -> None:
    chip = _provisioned(pki)

    hal = RefuseSign(EmulatorHal(chip))
    with pytest.raises(ExecutionError):
        validate_part(Device(hal), pki.cert_info, chip.serial_number)
    assert hal.signs == VALIDATION_ATTEMPTS


def test_validate_part_a_bad_certificate_fails_before_a_refused_challenge(
    pki: Pki, tmp_path: Path
) -> None:
    """The certificate check comes first, as it did when the challenge followed it: a part
    whose certificate does not check fails on that, whatever its challenge did."""
    damaged = _with_slot(_provisioned(pki), SIGNER_PUBKEY_SLOT, bytes(range(72)), tmp_path)

    with pytest.raises(ValidationError) as info:
        validate_part(
            Device(RefuseSign(EmulatorHal(damaged))), pki.cert_info, damaged.serial_number
        )
    assert info.value.code == ReturnCode.VALIDATION_FAILED
    assert "P-256" in info.value.message


def test_validate_part_refuses_a_signature_by_another_key(pki: Pki) -> None:
    """A chip whose key does not match the certificate's fails the challenge every time."""
    chip, other = _provisioned(pki), _provisioned(pki)

    class OtherKeySigns(EmulatorHal):
        def transact(self, packet: bytes, exec_time_ms: float) -> bytes:
            if packet[1] == Opcode.RANDOM:  # the challenge starts: the other chip takes it
                other.wake()
            if packet[1] in (Opcode.RANDOM, Opcode.NONCE, Opcode.SIGN):
                return other.execute(packet)
            return super().transact(packet, exec_time_ms)

    device = Device(OtherKeySigns(chip))
    with pytest.raises(ValidationError, match="did not sign the challenge"):
        validate_part(device, pki.cert_info, chip.serial_number)
