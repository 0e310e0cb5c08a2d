"""Device (the atcab_* basic API) against the emulator HAL, plus retry behaviour with fakes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from atcaprov import device as dv
from atcaprov.device import Device, get_addr, lock_crc
from atcaprov.emulator import Atecc508a, PowerState
from atcaprov.errors import (
    BadParamError,
    ChipCrcError,
    ChipParseError,
    ChipStatusError,
    CommTimeoutError,
    ExecutionError,
    ResponseCrcError,
    WakeFailedError,
)
from atcaprov.hal.emulator import EmulatorHal
from atcaprov.packet import Opcode, build_status, parse_command
from tests.support.config import TEST_CONFIG
from tests.support.keys import new_key, sign_digest, verify_raw
from tests.support.keys import pub as raw_pub

SLOT4_KEY = bytes(range(0x40, 0x60))


class RecordingHal(EmulatorHal):
    """Emulator HAL that records packets and can corrupt answers or fail wakes on demand."""

    def __init__(self, chip: Atecc508a | None = None) -> None:
        super().__init__(chip or Atecc508a())
        self.packets: list[bytes] = []
        self.corrupt_next = 0  # flip a CRC bit of the next N responses
        self.status_ff_next = 0  # answer 04 FF .. to the next N commands without running them
        self.wake_fail_next = 0  # next N wakes answer nothing
        self.wake_timeout_next = 0  # next N wakes raise a timeout
        self.idles = 0

    def wake(self) -> bytes:
        if self.wake_timeout_next:
            self.wake_timeout_next -= 1
            raise CommTimeoutError("no wake answer (injected)")
        if self.wake_fail_next:
            self.wake_fail_next -= 1
            return b""
        return super().wake()

    def idle(self) -> None:
        self.idles += 1
        super().idle()

    def transact(self, packet: bytes, exec_time_ms: float) -> bytes:
        self.packets.append(packet)
        if self.status_ff_next:
            self.status_ff_next -= 1
            return build_status(0xFF)
        raw = super().transact(packet, exec_time_ms)
        if self.corrupt_next:
            self.corrupt_next -= 1
            raw = raw[:-1] + bytes((raw[-1] ^ 0x01,))
        return raw

    def commands(self, opcode: int) -> list[tuple[int, int, int]]:
        """(p1, p2, data length) of the recorded commands with ``opcode``."""
        out = []
        for packet in self.packets:
            cmd = parse_command(packet)
            if cmd.opcode == opcode:
                out.append((cmd.param1, cmd.param2, len(cmd.data)))
        return out


@pytest.fixture
def hal() -> RecordingHal:
    return RecordingHal()


@pytest.fixture
def dev(hal: RecordingHal) -> Device:
    return Device(hal)


def configure(dev: Device) -> None:
    dev.write_config_zone(TEST_CONFIG)
    dev.lock_config_zone(crc=lock_crc(dev.read_config_zone()))


@pytest.fixture
def provisioned(hal: RecordingHal, dev: Device) -> Iterator[tuple[Device, RecordingHal, bytes]]:
    """Config written and locked, key in slot 0, MAC key in slot 4, pubkey in slot 11, locked."""
    configure(dev)
    pub = dev.genkey(0)
    dev.write_zone(dv.ZONE_DATA, 4, 0, 0, SLOT4_KEY)
    dev.write_pubkey(11, pub)
    dev.lock_data_zone()
    yield dev, hal, pub


# ---- basics, statistics, sessions ---------------------------------------------------------------
def test_info_stats_and_idle(dev: Device, hal: RecordingHal) -> None:
    assert dev.info() == b"\x00\x00\x50\x00"
    assert dev.opcode_counts == {Opcode.INFO: 1}
    assert dev.chip_floor_ms == 2.0
    assert dev.wake_count == 1 and hal.idles == 1
    assert hal.chip.power_state is PowerState.IDLE
    dev.reset_stats()
    assert dev.chip_floor_ms == 0 and not dev.opcode_counts and dev.wake_count == 0


def test_session_keeps_chip_awake(dev: Device, hal: RecordingHal) -> None:
    with dev.session():
        dev.info()
        assert hal.chip.power_state is PowerState.AWAKE
        with dev.session():  # nested: no extra wake or idle
            dev.random()
        assert dev.in_session
    assert not dev.in_session
    assert dev.wake_count == 1 and hal.idles == 1
    assert hal.chip.power_state is PowerState.IDLE


def test_a_planned_session_wakes_at_its_first_command(dev: Device, hal: RecordingHal) -> None:
    with dev.planned_session((Opcode.INFO, Opcode.RANDOM)):
        assert dev.wake_count == 0  # nothing sent yet: no wake
        dev.info()
        dev.random()
    assert dev.wake_count == 1 and hal.idles == 1
    with dev.planned_session((Opcode.INFO,)):
        pass  # nothing sent: no wake, no idle
    assert dev.wake_count == 1 and hal.idles == 1
    hal.wake_fail_next = 1 + dev.wake_retries
    with pytest.raises(WakeFailedError), dev.planned_session((Opcode.INFO,)):
        dev.info()  # the wake fails inside the body: the command's failure
    assert hal.idles == 1  # never woken: no idle


def test_a_plan_past_the_watchdog_budget_wakes_per_command(dev: Device, hal: RecordingHal) -> None:
    plan = (Opcode.GENKEY,) * 6  # 6 x (115 + 10) ms: more than half of 1.3 s
    assert not dev.fits_one_wake(plan)
    with dev.planned_session(plan):
        dev.info()
        dev.info()
    assert dev.wake_count == 2 and hal.idles == 2


def test_wake_groups_split_evenly_within_the_budget(dev: Device) -> None:
    assert dev.wake_budget_ms == 650.0
    groups = dev.wake_groups(Opcode.WRITE, 46)  # 36 ms planned each: 18 per wake at most
    assert [len(g) for g in groups] == [15, 15, 16]
    assert [i for g in groups for i in g] == list(range(46))
    assert dev.wake_groups(Opcode.WRITE, 0) == []
    assert [len(g) for g in dev.wake_groups(Opcode.WRITE, 9)] == [9]


def test_session_idles_after_error(dev: Device, hal: RecordingHal) -> None:
    with pytest.raises(ChipParseError):
        dev.execute(0x7F, 0, 0)  # unknown opcode: status 0x03
    assert hal.idles == 1
    assert hal.chip.power_state is PowerState.IDLE


def test_execute_generic_and_validation(dev: Device) -> None:
    assert dev.execute(Opcode.INFO, 0, 0) == b"\x00\x00\x50\x00"
    with pytest.raises(BadParamError, match="opcode 256"):
        dev.execute(256, 0, 0)
    with pytest.raises(BadParamError, match="param1 -1"):
        dev.execute(0x30, -1, 0)
    with pytest.raises(BadParamError, match="param2 65536"):
        dev.execute(0x30, 0, 0x10000)
    with pytest.raises(BadParamError, match="command data too long"):
        dev.execute(0x47, 0, 0, bytes(200))
    with pytest.raises(BadParamError, match="Info mode 9"):
        dev.info(9)


def test_serial_and_config(dev: Device, hal: RecordingHal) -> None:
    assert dev.read_serial_number() == hal.chip.serial_number
    assert dev.read_config_zone() == hal.chip.config_zone
    assert hal.commands(Opcode.READ)[-4:] == [
        (0x80, 0x00, 0),
        (0x80, 0x08, 0),
        (0x80, 0x10, 0),
        (0x80, 0x18, 0),
    ]
    assert dev.random() == b"\xff\xff\x00\x00" * 8  # config not locked yet


# ---- config zone writes, locks ----------------------------------------------------------------
def test_write_config_zone_pattern(dev: Device, hal: RecordingHal) -> None:
    dev.write_config_zone(TEST_CONFIG)
    writes = hal.commands(Opcode.WRITE)
    expected = (
        [(0x00, w, 4) for w in (0x04, 0x05, 0x06, 0x07)]  # block 0 words 4-7 (bytes 16-31)
        + [(0x80, 0x08, 32)]  # block 1
        + [(0x00, 0x10 + w, 4) for w in (0, 1, 2, 3, 4, 6, 7)]  # block 2, skipping word 5
        + [(0x80, 0x18, 32)]  # block 3
    )
    assert writes == expected
    config = dev.read_config_zone()
    assert config[16:84] == TEST_CONFIG[16:84]
    assert config[88:] == TEST_CONFIG[88:]
    assert config[84:88] == hal.chip.config_zone[84:88]
    assert dev.opcode_counts[Opcode.WRITE] == 13
    assert dev.wake_count == 2  # one for the whole write, one for the read


def test_write_config_zone_length(dev: Device) -> None:
    with pytest.raises(BadParamError, match="config zone must be 128 bytes, got 127"):
        dev.write_config_zone(bytes(127))


def test_lock_config_with_crc(dev: Device, hal: RecordingHal) -> None:
    dev.write_config_zone(TEST_CONFIG)
    assert not dev.is_locked(dv.LOCK_ZONE_CONFIG)
    config = dev.read_config_zone()
    with pytest.raises(ChipStatusError):
        dev.lock_config_zone(crc=lock_crc(config) ^ 0x0101)
    assert not dev.is_locked(dv.LOCK_ZONE_CONFIG)
    dev.lock_config_zone(crc=lock_crc(config))
    assert dev.is_locked(dv.LOCK_ZONE_CONFIG)
    assert not dev.is_locked(dv.LOCK_ZONE_DATA)
    assert hal.commands(Opcode.LOCK)[-1] == (0x00, lock_crc(config), 0)
    with pytest.raises(BadParamError, match=r"out of range 0\.\.0xFFFF"):
        dev.lock_config_zone(crc=0x10000)
    with pytest.raises(BadParamError, match="lock zone 2"):
        dev.is_locked(2)


def test_lock_without_crc_modes(dev: Device, hal: RecordingHal) -> None:
    dev.write_config_zone(TEST_CONFIG)
    dev.lock_config_zone()
    dev.lock_data_zone()
    assert hal.commands(Opcode.LOCK) == [(0x80, 0, 0), (0x81, 0, 0)]
    assert dev.is_locked(dv.LOCK_ZONE_DATA)


# ---- keys, data, signatures ---------------------------------------------------------------------
def test_provisioned_keys_and_pubkey(provisioned: tuple[Device, RecordingHal, bytes]) -> None:
    dev, hal, pub = provisioned
    assert dev.is_locked(dv.LOCK_ZONE_CONFIG) and dev.is_locked(dv.LOCK_ZONE_DATA)
    assert dev.get_pubkey(0) == pub
    # three 32-byte writes of the padded form
    assert hal.commands(Opcode.WRITE)[-3:] == [
        (0x82, get_addr(dv.ZONE_DATA, 11, b, 0), 32) for b in range(3)
    ]
    hal.packets.clear()
    assert dev.read_pubkey(11) == pub
    # two 32-byte reads, then the 8-byte tail of the 72-byte slot as two word reads
    assert hal.commands(Opcode.READ) == [
        (0x82, 0x0058, 0),
        (0x82, 0x0158, 0),
        (0x02, 0x0258, 0),
        (0x02, 0x0259, 0),
    ]
    raw = dev.read_bytes_zone(dv.ZONE_DATA, 11, 0, 72)
    assert raw[:4] == bytes(4) and raw[36:40] == bytes(4)
    assert raw[4:36] + raw[40:72] == pub
    assert dev.read_bytes_zone(dv.ZONE_DATA, 11, 30, 12) == raw[30:42]


def test_sign_and_verify(provisioned: tuple[Device, RecordingHal, bytes]) -> None:
    dev, hal, pub = provisioned
    digest = hashlib.sha256(b"hello").digest()
    dev.reset_stats()
    sig = dev.sign(0, digest)
    assert dev.opcode_counts == {Opcode.RANDOM: 1, Opcode.NONCE: 1, Opcode.SIGN: 1}
    assert dev.chip_floor_ms == 23 + 29 + 60
    assert dev.wake_count == 1  # one session for the three commands
    verify_raw(pub, digest, sig)
    assert dev.verify_extern(digest, sig, pub) is True
    assert dev.verify_extern(hashlib.sha256(b"other").digest(), sig, pub) is False
    assert hal.commands(Opcode.VERIFY)[-1] == (0x02, 0x0004, 128)


def test_verify_extern_foreign_key(dev: Device) -> None:
    key = new_key()
    digest = hashlib.sha256(b"x").digest()
    pub = raw_pub(key)
    sig = sign_digest(key, digest)
    assert dev.verify_extern(digest, sig, pub) is True


def test_sign_internal_modes(provisioned: tuple[Device, RecordingHal, bytes]) -> None:
    dev, hal, _ = provisioned
    with dev.session():
        dev.nonce_load(bytes(32))
        dev.gendig(dv.ZONE_DATA, 4)
        sig = dev.sign_internal(0, is_full_sn=True)
    assert len(sig) == 64
    assert hal.commands(Opcode.SIGN)[-1] == (0x40, 0, 0)
    with dev.session():
        dev.nonce_load(bytes(32))
        dev.gendig(dv.ZONE_DATA, 4)
        with pytest.raises(ChipParseError):  # the 508A has no invalidate mode
            dev.sign_internal(0, is_invalidate=True)
    assert hal.commands(Opcode.SIGN)[-1] == (0x01, 0, 0)


def test_slot_lock(provisioned: tuple[Device, RecordingHal, bytes]) -> None:
    dev, hal, _ = provisioned
    assert not dev.is_slot_locked(10)
    dev.lock_data_slot(10)
    assert hal.commands(Opcode.LOCK)[-1] == ((10 << 2) | 2, 0, 0)
    assert dev.is_slot_locked(10)
    assert not dev.is_slot_locked(11)


def test_random_nonce_after_lock(provisioned: tuple[Device, RecordingHal, bytes]) -> None:
    dev, hal, _ = provisioned
    assert dev.random() != b"\xff\xff\x00\x00" * 8
    rand_out = dev.nonce(bytes(range(20)))
    assert len(rand_out) == 32
    assert dev.nonce(bytes(32)) == b""
    assert hal.commands(Opcode.NONCE)[-2:] == [(0x00, 0, 20), (0x03, 0, 32)]
    with pytest.raises(BadParamError, match="Nonce NumIn must be 20 or 32 bytes, got 21"):
        dev.nonce(bytes(21))


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 200])
def test_sha(dev: Device, size: int) -> None:
    message = bytes((i * 7) & 0xFF for i in range(size))
    assert dev.sha(message) == hashlib.sha256(message).digest()


def _mac_message(key: bytes, challenge: bytes, mode: int, key_id: int, sn: bytes) -> bytes:
    # facts 3.8, mode without OTP/SN bits
    return (
        key
        + challenge
        + bytes((0x08, mode))
        + key_id.to_bytes(2, "little")
        + bytes(8)
        + bytes(3)
        + sn[8:9]
        + bytes(4)
        + sn[0:2]
        + bytes(2)
    )


def test_mac_and_checkmac(provisioned: tuple[Device, RecordingHal, bytes]) -> None:
    dev, hal, _ = provisioned
    sn = dev.read_serial_number()
    challenge = bytes(range(32))
    response = dev.mac(0x00, 4, challenge)
    assert response == hashlib.sha256(_mac_message(SLOT4_KEY, challenge, 0, 4, sn)).digest()
    other = bytes((0x08, 0x00, 0x04, 0x00)) + bytes(9)
    assert dev.checkmac(0x00, 4, challenge, response, other) is True
    assert dev.checkmac(0x00, 4, challenge, bytes(32), other) is False
    assert hal.commands(Opcode.CHECKMAC)[-1] == (0x00, 4, 77)


def test_gendig_then_mac_from_tempkey(provisioned: tuple[Device, RecordingHal, bytes]) -> None:
    dev, _, _ = provisioned
    sn = dev.read_serial_number()
    seed = bytes(range(100, 132))
    with dev.session():
        dev.nonce_load(seed)
        dev.gendig(dv.ZONE_DATA, 4)
        response = dev.mac(0x05, 4)  # block 2 from TempKey, TempKey source = input
    tempkey = hashlib.sha256(
        SLOT4_KEY + bytes((0x15, 0x02, 0x04, 0x00)) + sn[8:9] + sn[0:2] + bytes(25) + seed
    ).digest()
    assert response == hashlib.sha256(_mac_message(SLOT4_KEY, tempkey, 0x05, 4, sn)).digest()


def test_mac_gendig_validation(dev: Device) -> None:
    with pytest.raises(BadParamError, match="MAC challenge must be 32 bytes, got 0"):
        dev.mac(0, 4)
    with pytest.raises(BadParamError, match="takes TempKey"):
        dev.mac(1, 4, bytes(32))
    with pytest.raises(BadParamError, match="bits outside 0x77"):
        dev.mac(0x80, 4, bytes(32))
    with pytest.raises(BadParamError, match="GenDig zone 4"):
        dev.gendig(4, 0)
    with pytest.raises(BadParamError, match="GenDig other data must be 0 or 4 or 32 bytes"):
        dev.gendig(2, 0, bytes(5))
    with pytest.raises(BadParamError, match=r"zone 3 .* needs 32 bytes"):
        dev.gendig(3, 0, bytes(4))
    with pytest.raises(BadParamError, match="CheckMac other data must be 13 bytes"):
        dev.checkmac(0, 0, bytes(32), bytes(32), bytes(12))


# ---- addressing and argument checks -----------------------------------------------------------
def test_get_addr_encoding() -> None:
    assert get_addr(dv.ZONE_CONFIG, 0, 2, 5) == 0x15
    assert get_addr(dv.ZONE_OTP, 0, 1, 7) == 0x0F
    assert get_addr(dv.ZONE_DATA, 10, 1, 0) == 0x0150  # facts 1.5
    assert get_addr(dv.ZONE_DATA, 8, 12, 7) == (12 << 8) | (8 << 3) | 7


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((3, 0, 0, 0, 4), "zone 3 is not ZONE_CONFIG"),
        ((2, 16, 0, 0, 4), "slot 16 out of range"),
        ((0, 0, 4, 0, 4), "block 4 out of range for zone 0"),
        ((1, 0, 2, 0, 4), "block 2 out of range"),
        ((2, 0, 2, 0, 4), "block 2 out of range for slot 0 (36 bytes"),
        ((2, 9, 3, 0, 4), "block 3 out of range for slot 9 (72 bytes"),
        ((0, 0, 0, 8, 4), "word offset 8 out of range"),
        ((0, 0, 0, 1, 32), "32-byte access must start at word 0"),
        ((2, 0, 1, 1, 4), "past the end of the 36-byte zone"),
        ((0, 0, 0, 0, 5), "access length must be 4 or 32"),
    ],
)
def test_read_zone_validation(
    dev: Device, args: tuple[int, int, int, int, int], fragment: str
) -> None:
    with pytest.raises(BadParamError) as info:
        dev.read_zone(*args)
    assert fragment in str(info.value)
    assert dev.wake_count == 0  # nothing was sent


def test_write_validation(dev: Device) -> None:
    with pytest.raises(BadParamError, match="Write data must be 4 or 32 bytes, got 3"):
        dev.write_zone(0, 0, 1, 0, b"abc")
    with pytest.raises(BadParamError, match=r"read-only bytes 0\.\.15"):
        dev.write_zone(0, 0, 0, 0, bytes(4))
    with pytest.raises(BadParamError, match=r"bytes 84\.\.87"):
        dev.write_zone(0, 0, 2, 5, bytes(4))
    with pytest.raises(BadParamError, match=r"bytes 84\.\.87"):
        dev.write_zone(0, 0, 2, 0, bytes(32))
    with pytest.raises(BadParamError, match="multiples of 4"):
        dev.write_bytes_zone(0, 0, 18, bytes(4))
    with pytest.raises(BadParamError, match="out of the 64-byte zone"):
        dev.write_bytes_zone(1, 0, 48, bytes(32))
    with pytest.raises(BadParamError, match="read-only"):
        dev.write_bytes_zone(0, 0, 12, bytes(8))
    with pytest.raises(BadParamError, match="out of the 416-byte zone"):
        dev.read_bytes_zone(2, 8, 400, 20)
    with pytest.raises(BadParamError, match="slot 3 is too small for a public key"):
        dev.read_pubkey(3)
    with pytest.raises(BadParamError, match="public key must be 64 bytes, got 65"):
        dev.write_pubkey(11, bytes(65))
    with pytest.raises(BadParamError, match="message digest must be 32 bytes, got 31"):
        dev.sign(0, bytes(31))
    assert dev.wake_count == 0


def test_write_bytes_zone_splits(dev: Device, hal: RecordingHal) -> None:
    dev.write_config_zone(TEST_CONFIG)
    dev.lock_config_zone()
    hal.packets.clear()
    # data zone, before the data lock: 32-byte writes only, here slot 8 blocks 1 and 2
    dev.write_bytes_zone(dv.ZONE_DATA, 8, 32, bytes(range(64)))
    assert hal.commands(Opcode.WRITE) == [(0x82, 0x0140, 32), (0x82, 0x0240, 32)]
    hal.packets.clear()
    # config zone through write_bytes_zone: words in block 2, word 5 skipped
    dev.reset_stats()
    with pytest.raises(ExecutionError):  # config is locked now: the chip refuses
        dev.write_bytes_zone(dv.ZONE_CONFIG, 0, 76, bytes(16))
    assert hal.commands(Opcode.WRITE) == [(0x00, 0x13, 4)]


def test_write_bytes_zone_skips_lock_word(dev: Device, hal: RecordingHal) -> None:
    dev.write_bytes_zone(dv.ZONE_CONFIG, 0, 76, bytes(range(20)))
    assert hal.commands(Opcode.WRITE) == [
        (0x00, 0x13, 4),
        (0x00, 0x14, 4),
        (0x00, 0x16, 4),
        (0x00, 0x17, 4),
    ]


def test_negative_retries_refused(hal: RecordingHal) -> None:
    with pytest.raises(BadParamError, match="retries must be >= 0"):
        Device(hal, wake_retries=-1)


# ---- retries ---------------------------------------------------------------------------------
def test_crc_error_is_resent(dev: Device, hal: RecordingHal) -> None:
    hal.corrupt_next = 1
    assert dev.info() == b"\x00\x00\x50\x00"
    assert dev.opcode_counts[Opcode.INFO] == 2
    assert dev.retry_count == 1
    assert dev.chip_floor_ms == 4.0
    assert len(hal.packets) == 2 and hal.packets[0] == hal.packets[1]


def test_status_ff_is_resent(dev: Device, hal: RecordingHal) -> None:
    hal.status_ff_next = 2
    assert dev.read_serial_number() == hal.chip.serial_number
    assert dev.opcode_counts[Opcode.READ] == 3


def test_crc_retries_are_bounded(hal: RecordingHal) -> None:
    dev = Device(hal, crc_retries=2)
    hal.corrupt_next = 3
    with pytest.raises(ResponseCrcError):
        dev.info()
    assert len(hal.packets) == 3
    hal.status_ff_next = 5
    with pytest.raises(ChipCrcError):
        Device(hal, crc_retries=0).info()
    assert len(hal.packets) == 4
    assert hal.chip.power_state is PowerState.IDLE  # idled despite the failure


def test_other_chip_errors_not_retried(dev: Device, hal: RecordingHal) -> None:
    with pytest.raises(ChipParseError):
        dev.execute(0x7F, 0, 0)
    assert len(hal.packets) == 1


def test_wake_retries(hal: RecordingHal) -> None:
    dev = Device(hal, wake_retries=3)
    hal.wake_fail_next = 2
    hal.wake_timeout_next = 1
    assert dev.info() == b"\x00\x00\x50\x00"
    assert dev.wake_count == 4


def test_wake_retries_exhausted(hal: RecordingHal) -> None:
    dev = Device(hal, wake_retries=2)
    hal.wake_fail_next = 2
    hal.wake_timeout_next = 1
    with pytest.raises(WakeFailedError) as info:
        dev.info()
    text = str(info.value)
    assert "after 3 attempts" in text
    assert "attempt 1: no wake answer (injected)" in text
    assert "attempt 3: answer empty" in text
    assert not hal.packets  # no command sent to a chip that did not wake
