"""The fault tools: FaultHal (chip link) and ServerCutHooks (server link)."""

from __future__ import annotations

import pytest

from atcaprov import provision
from atcaprov.device import Device
from atcaprov.emulator import Atecc508a, PowerState
from atcaprov.errors import CommError, CommTimeoutError, ResponseCrcError
from atcaprov.hal import open_hal
from atcaprov.hal.emulator import EmulatorHal
from atcaprov.hal.faults import FaultHal
from atcaprov.packet import Opcode, build_command, parse_response
from atcaprov.protocol import ProtocolError
from atcaprov.provisioning import ProvisioningError
from atcaprov.return_codes import ReturnCode
from atcaprov.server_faults import SERVER_CUTS, ServerCutHooks
from atcaprov.stages import ProvStage
from tests.support.cert_server import InMemoryServer
from tests.support.hooks import RecordingHooks
from tests.support.pki import Pki

INFO = build_command(Opcode.INFO, 0, 0)
LOCK_CONFIG = build_command(Opcode.LOCK, 0x80, 0)


def _hal() -> tuple[Atecc508a, FaultHal]:
    chip = Atecc508a()
    hal = FaultHal(EmulatorHal(chip))
    hal.wake()
    return chip, hal


def test_open_by_name_and_bad_arguments() -> None:
    hal = open_hal("fault", inner=open_hal("emulator"))
    assert isinstance(hal, FaultHal)
    with pytest.raises(ValueError, match="unknown fault 'smoke'"):
        hal.arm("smoke")
    with pytest.raises(ValueError, match="out of range"):
        hal.arm(0x100)
    with pytest.raises(ValueError, match="times >= 1"):
        hal.arm("crc", times=0)


def test_unplug_is_a_power_loss_and_stays() -> None:
    chip, hal = _hal()
    dev = Device(hal)
    dev.nonce_load(bytes(32))  # TempKey loaded; the chip is left idle, TempKey kept
    assert dev.info(2)[1] & 0x80  # Info(State): TempKey valid
    hal.arm("unplug")
    with pytest.raises(CommError, match="board removed"):
        hal.transact(INFO, 2)
    assert chip.power_state is PowerState.ASLEEP  # the chip lost power...
    chip.wake()
    state = parse_response(chip.execute(build_command(Opcode.INFO, 2, 0)))
    assert not state[1] & 0x80  # ... and TempKey with it
    for call in (hal.wake, hal.idle, hal.sleep, lambda: hal.transact(INFO, 2)):
        with pytest.raises(CommError):
            call()
    assert hal.unplugged and hal.fired == [(2, "unplug")]


def test_unplug_calls_the_given_power_off() -> None:
    cuts: list[str] = []
    hal = FaultHal(EmulatorHal(Atecc508a()), power_off=lambda: cuts.append("cut"))
    hal.wake()
    hal.arm("unplug_after")
    with pytest.raises(CommError):
        hal.transact(LOCK_CONFIG, 32)
    assert cuts == ["cut"]


@pytest.mark.parametrize(
    ("fault", "executed", "error"),
    [
        ("timeout", False, CommTimeoutError),
        ("unplug", False, CommError),
        ("lost", True, CommTimeoutError),
        ("unplug_after", True, CommError),
    ],
)
def test_before_or_after_the_chip_ran_it(
    fault: str, executed: bool, error: type[Exception]
) -> None:
    chip, hal = _hal()
    hal.arm(fault)
    with pytest.raises(error):
        hal.transact(LOCK_CONFIG, 32)
    assert chip.config_locked is executed


def test_crc_fault_runs_the_command_and_repeats_for_times() -> None:
    chip, hal = _hal()
    hal.arm("crc", after=1, times=2)
    assert parse_response(hal.transact(INFO, 2)) == b"\x00\x00\x50\x00"
    for packet in (LOCK_CONFIG, INFO):
        with pytest.raises(ResponseCrcError):
            parse_response(hal.transact(packet, 32))
    assert chip.config_locked
    assert parse_response(hal.transact(INFO, 2)) == b"\x00\x00\x50\x00"
    assert hal.fired == [(1, "crc"), (2, "crc")] and hal.armed is None


def test_status_answers_without_running_the_command() -> None:
    chip, hal = _hal()
    hal.arm(0x00)
    assert parse_response(hal.transact(LOCK_CONFIG, 32)) == b"\x00"  # "done", but ...
    assert not chip.config_locked  # ... it never reached the chip


def test_wake_fault_counts_wakes() -> None:
    _chip, hal = _hal()
    hal.arm("wake", after=1, times=2)
    hal.transact(INFO, 2)  # commands do not bring a wake fault closer
    assert hal.wake() == b"\x04\x11\x33\x43"
    assert hal.wake() == b"" and hal.wake() == b""
    assert hal.wake() == b"\x04\x11\x33\x43"
    dev = Device(hal, wake_retries=1)
    hal.arm("wake")
    assert dev.info() == b"\x00\x00\x50\x00"  # one failed wake is absorbed


# ---- the server link -------------------------------------------------------------------------
@pytest.mark.parametrize("cut", SERVER_CUTS)
def test_server_cut_points(pki: Pki, cut: str) -> None:
    server = InMemoryServer(pki)
    inner = RecordingHooks(server)
    hooks = ServerCutHooks(inner, cut)
    chip = Atecc508a()
    with pytest.raises(ProvisioningError) as info:
        provision(Device(open_hal("emulator", chip=chip)), hooks, pki.cert_info)
    assert info.value.stage == ProvStage.CERTS_REQUEST
    assert info.value.code == ReturnCode.COMM_ERROR
    cause = info.value.__cause__
    expected: dict[str, type[BaseException]] = {
        "refused": ConnectionRefusedError,
        "timeout": TimeoutError,
        "reset": ConnectionResetError,
    }
    assert isinstance(cause, expected.get(cut, ProtocolError))
    if cut in ("after_send", "mid_header", "mid_body"):
        got = {
            "after_send": "after 0 of 12",
            "mid_header": "after 6 of 12",
            "mid_body": "of the reply body",
        }[cut]
        assert got in info.value.message
    assert inner.calls == ([] if cut == "refused" else ["start", "send", "done"])
    assert hooks.cuts_done == 1
    # the cut happens once: the next run goes through the same hooks
    provision(Device(open_hal("emulator", chip=chip)), hooks, pki.cert_info)
    assert chip.data_locked


def test_server_cut_hooks_pass_other_attributes(pki: Pki) -> None:
    inner = RecordingHooks(InMemoryServer(pki))
    hooks = ServerCutHooks(inner)
    assert hooks.extra_data is inner.extra_data
    with pytest.raises(ValueError, match="unknown server cut"):
        hooks.arm("fire")
