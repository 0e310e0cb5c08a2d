"""What the flow sends, and what it no longer sends: config words that already hold the target,
the config read-back (the config lock's CRC checks instead), the GenKey (public) of
VALIDATE_CERTS, and the data lock without the summary CRC (``data_lock_crc=False``)."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from atcaprov import provision, verify
from atcaprov.config import DEFAULT_CONFIG
from atcaprov.datasheet import ATECC508A, SN_LAST, SN_PREFIX, WATCHDOG_S
from atcaprov.device import LOCK_MODE_NO_CRC, Device
from atcaprov.emulator import Atecc508a
from atcaprov.emulator.state import Memory
from atcaprov.emulator.zones import default_config
from atcaprov.hal import Hal, open_hal
from atcaprov.hal.faults import FaultHal
from atcaprov.packet import Opcode
from atcaprov.provisioning import PartState, ProvisioningError, ServerNotReadyError
from atcaprov.return_codes import ReturnCode
from atcaprov.stages import ProvStage
from tests.support.cert_server import InMemoryServer
from tests.support.chip import FakeClock
from tests.support.hooks import RecordingHooks
from tests.support.pki import Pki

WRITABLE = (*range(16, 84), *range(88, 128))


def _part(differing: tuple[int, ...] = ()) -> Atecc508a:
    """A blank part holding the default config but for the bytes ``differing``."""
    config = default_config(SN_PREFIX + bytes(range(6)) + bytes((SN_LAST,)))
    for i in WRITABLE:
        config[i] = DEFAULT_CONFIG[i] ^ (0x5A if i in differing else 0)
    return Atecc508a(_memory=Memory.blank(config, ATECC508A))


class Recording(FaultHal):
    """Records (opcode, param1) of every command sent."""

    def __init__(self, inner: Hal) -> None:
        super().__init__(inner)
        self.sent: list[tuple[int, int]] = []

    def transact(self, packet: bytes, exec_time_ms: float) -> bytes:
        self.sent.append((packet[1], packet[2]))
        return super().transact(packet, exec_time_ms)


def _run(pki: Pki, chip: Atecc508a, **kwargs: object) -> tuple[Recording, Device]:
    hal = Recording(open_hal("emulator", chip=chip))
    device = Device(hal)
    provision(device, RecordingHooks(InMemoryServer(pki)), pki.cert_info, **kwargs)  # type: ignore[arg-type]
    assert verify(device, pki.cert_info, expected_config=DEFAULT_CONFIG).ok
    return hal, device


def _config_writes(hal: Recording) -> int:
    return sum(1 for op, p1 in hal.sent if op == Opcode.WRITE and p1 & 0x03 == 0)


@pytest.mark.parametrize(
    ("differing", "writes"),
    [
        ((), 0),  # config already the target: no config Write at all
        ((17,), 1),  # one word of block 0
        ((40, 41, 60), 1),  # two words of block 1: one 32-byte Write
        ((70, 90), 2),  # two words of block 2: word by word
        (WRITABLE, 13),  # every word: 4 + 1 + 7 + 1
    ],
)
def test_only_config_words_that_differ_are_written(
    pki: Pki, differing: tuple[int, ...], writes: int
) -> None:
    chip = _part(differing)
    hal, _ = _run(pki, chip)
    assert _config_writes(hal) == writes
    assert bytes(chip.config_zone[16:84]) == DEFAULT_CONFIG[16:84]
    assert bytes(chip.config_zone[90:]) == DEFAULT_CONFIG[90:]


def test_the_config_is_not_read_back_and_validation_sends_no_genkey(pki: Pki) -> None:
    hal, device = _run(pki, _part(WRITABLE))
    counts = Counter(op for op, _ in hal.sent)
    config_reads = sum(1 for op, p1 in hal.sent if op == Opcode.READ and p1 & 0x03 == 0)
    # the first read (4), the lock word after the config lock (1) and after the data lock (1),
    # nothing else; the verify() above reads its own, after the flow
    flow = hal.sent[: next(i for i, (op, p1) in enumerate(hal.sent) if op == Opcode.SIGN) + 1]
    assert sum(1 for op, p1 in flow if op == Opcode.READ and p1 & 0x03 == 0) == 6
    assert sum(1 for op, _ in flow if op == Opcode.GENKEY) == 1  # GEN_KEY's only
    assert counts[Opcode.LOCK] == 2 and config_reads >= 6
    assert device.opcode_counts[Opcode.WRITE] == 13 + 46


def test_a_config_write_that_did_not_land_makes_the_config_lock_fail(pki: Pki) -> None:
    chip = _part((17,))
    hal = FaultHal(open_hal("emulator", chip=chip))
    device = Device(hal)
    hooks = RecordingHooks(InMemoryServer(pki))
    # the Info (model), the 4 first-read Reads, then the one Write: acknowledged, not run
    hal.arm(0x00, after=5)
    with pytest.raises(ProvisioningError) as info:
        provision(device, hooks, pki.cert_info)
    assert hal.fired and hal.fired[0][1] == 0x00
    assert info.value.stage == ProvStage.CONFIG_LOCK
    assert info.value.code == ReturnCode.CONFIG_MISMATCH
    assert "config byte 17 reads back" in info.value.message
    assert info.value.part_state == PartState.UNLOCKED and not chip.config_locked
    provision(device, hooks, pki.cert_info)  # the part can be provisioned again
    assert chip.data_locked


def test_no_data_lock_crc_writes_only_the_certificate_blocks(pki: Pki) -> None:
    hal, _ = _run(pki, _part(), data_lock_crc=False)
    data_writes = [p1 for op, p1 in hal.sent if op == Opcode.WRITE and p1 & 0x03 != 0]
    assert len(data_writes) == 9  # 3 records of 72 bytes
    locks = [p1 for op, p1 in hal.sent if op == Opcode.LOCK]
    assert locks[1] == 0x01 | LOCK_MODE_NO_CRC  # the data lock, without the CRC


def test_no_data_lock_crc_still_checks_before_the_lock(pki: Pki) -> None:
    chip = _part()
    device = Device(open_hal("emulator", chip=chip))

    class Tampering(RecordingHooks):
        def certreq_recv(self, n: int) -> bytes:
            data = super().certreq_recv(n)
            if len(data) > 200:  # the reply body: flip a byte of the signer cert's signature
                data = data[:-5] + bytes((data[-5] ^ 1,)) + data[-4:]
            return data

    with pytest.raises(ProvisioningError) as info:
        provision(device, Tampering(InMemoryServer(pki)), pki.cert_info, data_lock_crc=False)
    assert info.value.stage in (ProvStage.CERTS_WRITE, ProvStage.CERTS_REQUEST)
    assert not chip.data_locked


class Wakes(FaultHal):
    """Records the commands (opcodes) sent in each wake."""

    def __init__(self, inner: Hal) -> None:
        super().__init__(inner)
        self.per_wake: list[list[int]] = []

    def wake(self) -> bytes:
        self.per_wake.append([])
        return super().wake()

    def transact(self, packet: bytes, exec_time_ms: float) -> bytes:
        self.per_wake[-1].append(packet[1])
        return super().transact(packet, exec_time_ms)


@pytest.mark.parametrize(("crc", "wakes"), [(True, 7), (False, 3)])
def test_a_run_plans_few_wakes_each_well_inside_the_watchdog(
    pki: Pki, crc: bool, wakes: int
) -> None:
    # Real max execution times on a simulated clock, the watchdog on: the chip's time is the
    # only time that passes, so a wake planned past the watchdog would show as a 0xEE retry.
    clock = FakeClock()
    chip = Atecc508a(
        _memory=_part()._state.memory, timing_scale=1.0, clock=clock, sleeper=clock.advance
    )
    hal = Wakes(open_hal("emulator", chip=chip))
    device = Device(hal)
    provision(device, RecordingHooks(InMemoryServer(pki)), pki.cert_info, data_lock_crc=crc)
    assert device.retry_count == 0 and chip.data_locked
    # Info (the model); the first read, config lock + read + GenKey in one wake (the chip kept
    # awake across the readiness question), without the CRC the 9 certificate Writes in it too
    # (kept awake across the certificate request); with the CRC the 37 fill-only Writes in
    # three wakes while the request is out, then the 9 with certificate data in one; the data
    # lock and its check with the validation (no slot locks: one wake)
    assert len(hal.per_wake) == wakes, hal.per_wake
    assert all(ops for ops in hal.per_wake)  # no wake without a command
    for ops in hal.per_wake:
        assert device.wake_plan_ms(ops) <= device.wake_budget_ms
        assert device.wake_plan_ms(ops) <= 0.5 * WATCHDOG_S * 1000
    first = [Opcode.READ] * 4 + [Opcode.LOCK, Opcode.READ, Opcode.GENKEY]
    assert hal.per_wake[1] == (first if crc else first + [Opcode.WRITE] * 9)
    last = hal.per_wake[-1]
    assert last[:2] == [Opcode.LOCK, Opcode.READ] and last[-3:] == [
        Opcode.RANDOM,
        Opcode.NONCE,
        Opcode.SIGN,
    ]


def test_slot_locks_keep_the_validation_in_a_wake_of_its_own(pki: Pki) -> None:
    clock = FakeClock()
    chip = Atecc508a(
        _memory=_part()._state.memory, timing_scale=1.0, clock=clock, sleeper=clock.advance
    )
    hal = Wakes(open_hal("emulator", chip=chip))
    device = Device(hal)
    provision(
        device,
        RecordingHooks(InMemoryServer(pki)),
        pki.cert_info,
        data_lock_crc=False,
        lock_slots=(10,),
    )
    assert device.retry_count == 0 and chip.data_locked
    assert hal.per_wake[-3][0] == Opcode.LOCK  # the data lock (and its check)
    assert Opcode.LOCK in hal.per_wake[-2]  # the slot lock
    assert hal.per_wake[-1][-1] == Opcode.SIGN  # the validation


def test_fill_only_writes_go_out_while_the_certificate_request_is_out(pki: Pki) -> None:
    # The server's answer is held back until the chip has taken the 37 Writes that hold no
    # certificate data: without the overlap this run would wait for ever (bounded here).
    chip = _part()
    hal = Recording(open_hal("emulator", chip=chip))
    device = Device(hal)

    def data_writes() -> int:
        return sum(1 for op, p1 in hal.sent if op == Opcode.WRITE and p1 & 0x03 != 0)

    class Slow(RecordingHooks):
        def certreq_recv(self, n: int) -> bytes:
            deadline = time.monotonic() + 10
            while data_writes() < 37 and time.monotonic() < deadline:
                time.sleep(0.005)
            return super().certreq_recv(n)

    provision(device, Slow(InMemoryServer(pki)), pki.cert_info)
    assert data_writes() == 46 and chip.data_locked  # each block once
    assert verify(device, pki.cert_info, expected_config=DEFAULT_CONFIG).ok


def test_a_refused_certificate_request_leaves_the_part_to_provision_again(pki: Pki) -> None:
    chip = _part()
    device = Device(open_hal("emulator", chip=chip))

    class Refusing(RecordingHooks):
        def certreq_recv(self, n: int) -> bytes:
            raise ConnectionResetError("server went away")

    with pytest.raises(ProvisioningError) as info:
        provision(device, Refusing(InMemoryServer(pki)), pki.cert_info)
    assert info.value.stage == ProvStage.CERTS_REQUEST
    assert info.value.part_state == PartState.CONFIG_LOCKED and not chip.data_locked
    provision(device, RecordingHooks(InMemoryServer(pki)), pki.cert_info)
    assert verify(device, pki.cert_info, expected_config=DEFAULT_CONFIG).ok


class Tokens(Wakes):
    """Wakes, and the idle tokens sent."""

    def __init__(self, inner: Hal) -> None:
        super().__init__(inner)
        self.idles = 0
        self.tokens: list[str] = []

    def wake(self) -> bytes:
        self.tokens.append("wake")
        return super().wake()

    def idle(self) -> None:
        self.idles += 1
        self.tokens.append("idle")
        super().idle()


def test_a_slow_server_answer_gets_the_writes_a_fresh_wake(pki: Pki) -> None:
    """The chip kept awake across the certificate request goes on in that wake only if the
    Writes still fit in what is left of it: a server that took 0.6 s (the chip's clock) makes
    the flow idle it and wake it again before the Writes."""
    clock = FakeClock()
    chip = Atecc508a(
        _memory=_part()._state.memory, timing_scale=1.0, clock=clock, sleeper=clock.advance
    )
    hal = Tokens(open_hal("emulator", chip=chip))
    device = Device(hal)

    device.clock = clock  # the wake's time as the chip counts it

    class SlowServer(RecordingHooks):
        def certreq_send(self, data: bytes) -> None:
            super().certreq_send(data)
            if self.server.requests:  # the certificate request (not the readiness question)
                clock.advance(0.6)

    provision(device, SlowServer(InMemoryServer(pki)), pki.cert_info, data_lock_crc=False)
    assert device.retry_count == 0 and chip.data_locked
    first = [Opcode.READ] * 4 + [Opcode.LOCK, Opcode.READ, Opcode.GENKEY]
    assert hal.per_wake[1] == first  # the Writes did not go on in that wake
    assert hal.per_wake[2] == [Opcode.WRITE] * 9


def test_a_run_stopped_by_a_server_not_ready_idles_the_chip(pki: Pki) -> None:
    hal = Tokens(open_hal("emulator", chip=_part()))
    device = Device(hal)
    server = InMemoryServer(pki)

    class NotReady(RecordingHooks):
        def check_ready(self, request: object) -> None:
            raise ConnectionRefusedError("server down")

    with pytest.raises(ServerNotReadyError):
        provision(device, NotReady(server), pki.cert_info)
    # the first read's wake was left open for the config lock: the stopped run idles it
    assert hal.tokens[-1] == "idle"
    assert hal.tokens.count("wake") == hal.tokens.count("idle")
