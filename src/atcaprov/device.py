"""The CryptoAuthLib-style basic API (``atcab_*``) for one ATECC508A behind a HAL.

Owns what the C "basic" layer does for its caller: build the command packet, wake the chip,
send, receive, check the response (CRC, status byte, length), idle; retry a failed wake a
bounded number of times; encode zone addresses; split zone reads and writes into 4- and 32-byte
accesses; keep the statistics the provisioning layer reports (``chip_floor_ms``,
``opcode_counts``).

Beyond the C layer, a command whose outcome is unknown (response lost, corrupt or malformed) is
handled by its opcode's :func:`retry_rule`: commands that are safe to run twice are sent again;
a Lock is never sent twice blindly, the lock bytes are read to learn whether it happened; the
rest (TempKey-dependent commands such as Sign) are reported, and the sequences this class owns
(:meth:`Device.sign`, :meth:`Device.verify_extern`) redo their Nonce before sending them again.
A command the chip says it did not run (status 0xFF, 0xEE, 0x11) is sent again where that is
safe. The table is in docs/library.md.

Every public method wakes the chip and leaves it idle, as the C functions do, unless it runs
inside ``with device.session():``, which keeps the chip awake across commands (TempKey and other
volatile state survive idle, but a session also saves the wake/idle round trips).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from .beside import During
from .closing import Closeable
from .datasheet import (
    ATECC508A,
    ATECC508A_CONFIG_MAP,
    LOCKED,
    WATCHDOG_S,
    ChipModel,
    model_for_revision,
    serial_number,
)
from .datasheet import BLOCK_SIZE as BLOCK_SIZE
from .datasheet import WORD_SIZE as WORD_SIZE
from .datasheet import slot_size as slot_size
from .errors import (
    AtcaprovError,
    BadParamError,
    CheckmacVerifyError,
    ChipCrcError,
    ChipStatusError,
    CommError,
    EccFaultError,
    MalformedPacketError,
    WakeFailedError,
    WakeTokenStatus,
    WatchdogError,
)
from .hal.base import Hal
from .packet import WAKE_RESPONSE, Opcode, build_command, exec_time_ms, parse_response

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# Zones (param1 bits 0-1 of Read/Write), as ATCA_ZONE_*.
ZONE_CONFIG = 0
ZONE_OTP = 1
ZONE_DATA = 2
ZONE_READWRITE_32 = 0x80
ZONE_ENCRYPTED = 0x40
# Zones of is_locked, as LOCK_ZONE_*.
LOCK_ZONE_CONFIG = 0
LOCK_ZONE_DATA = 1

CONFIG_SIZE = ATECC508A.config_size
OTP_SIZE = ATECC508A.otp_size
SLOT_COUNT = ATECC508A.slot_count
_READ_ONLY = ATECC508A_CONFIG_MAP.read_only  # config bytes 0..15
_NOT_BY_WRITE = ATECC508A_CONFIG_MAP.not_by_write  # config bytes 84..87 (UpdateExtra, Lock)
_CHIP_MODE_WORD = ATECC508A_CONFIG_MAP.chip_mode // WORD_SIZE  # word 4 of block 0: bytes 16-19
# Planning a wake: the commands sent in one wake must finish well inside the chip's watchdog
# (tWATCHDOG after the wake), at their max execution times plus an allowance per command for
# the host, the transport and the kit (a USB kit round trip is a few ms).
WAKE_PLAN_FRACTION = 0.5
"""Share of tWATCHDOG a planned wake may take (the rest is margin)."""
COMMAND_ALLOWANCE_MS = 10.0
"""Host, transport and kit time allowed per command when planning a wake."""
PUBKEY_SLOT_MIN = 8  # slots 8..15 are large enough for a 72-byte padded public key
PUB_KEY_PAD = 4

# Lock command param1.
LOCK_MODE_CONFIG = 0x00
LOCK_MODE_DATA = 0x01
LOCK_MODE_SLOT = 0x02
LOCK_MODE_NO_CRC = 0x80
# Other modes.
GENKEY_MODE_PRIVATE = 0x04
GENKEY_MODE_PUBLIC = 0x00
NONCE_MODE_SEED_UPDATE = 0x00
NONCE_MODE_NO_SEED_UPDATE = 0x01
NONCE_MODE_PASSTHROUGH = 0x03
RANDOM_MODE_SEED_UPDATE = 0x00
SIGN_MODE_INTERNAL = 0x00
SIGN_MODE_INVALIDATE = 0x01
SIGN_MODE_INCLUDE_SN = 0x40
SIGN_MODE_EXTERNAL = 0x80
VERIFY_MODE_EXTERNAL = 0x02
VERIFY_KEY_P256 = 0x0004
SHA_MODE_START = 0x00
SHA_MODE_UPDATE = 0x01
SHA_MODE_END = 0x02
SHA_BLOCK_SIZE = 64
INFO_MODE_REVISION = 0x00


def zone_size(zone: int, slot: int = 0) -> int:
    """Size of a zone in bytes (``slot`` matters for the data zone only)."""
    if zone == ZONE_CONFIG:
        return CONFIG_SIZE
    if zone == ZONE_OTP:
        return OTP_SIZE
    if zone == ZONE_DATA:
        return slot_size(slot)
    raise BadParamError(f"zone {zone!r} is not ZONE_CONFIG (0), ZONE_OTP (1) or ZONE_DATA (2)")


def _check_slot(slot: int) -> None:
    slot_size(slot)  # BadParamError for a slot the chip does not have


def _check_len(name: str, value: bytes, *sizes: int) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise BadParamError(f"{name} must be bytes, got {type(value).__name__}")
    value = bytes(value)
    if len(value) not in sizes:
        want = " or ".join(str(s) for s in sizes)
        raise BadParamError(f"{name} must be {want} bytes, got {len(value)}")
    return value


def get_addr(zone: int, slot: int, block: int, offset: int) -> int:
    """Read/Write param2 for a zone position (``offset`` is the 4-byte word in the block).

    Config/OTP: ``block << 3 | word``; data: ``block << 8 | slot << 3 | word``.
    """
    size = zone_size(zone, slot)
    if not isinstance(block, int) or block < 0 or block * BLOCK_SIZE >= size:
        where = f"slot {slot}" if zone == ZONE_DATA else f"zone {zone}"
        raise BadParamError(
            f"block {block!r} out of range for {where} ({size} bytes: blocks"
            f" 0..{(size - 1) // BLOCK_SIZE})"
        )
    if not isinstance(offset, int) or not 0 <= offset < BLOCK_SIZE // WORD_SIZE:
        raise BadParamError(f"word offset {offset!r} out of range 0..7")
    if zone == ZONE_DATA:
        return (block << 8) | (slot << 3) | offset
    return (block << 3) | offset


def _check_access(zone: int, slot: int, block: int, offset: int, length: int) -> int:
    """Validate a 4- or 32-byte access and return its address."""
    addr = get_addr(zone, slot, block, offset)
    if length == BLOCK_SIZE:
        if offset != 0:
            raise BadParamError(f"a 32-byte access must start at word 0, got word {offset}")
    elif length == WORD_SIZE:
        size = zone_size(zone, slot)
        end = block * BLOCK_SIZE + (offset + 1) * WORD_SIZE
        if end > size:
            raise BadParamError(
                f"word {offset} of block {block} ends at byte {end}, past the end of the"
                f" {size}-byte zone"
            )
    else:
        raise BadParamError(f"access length must be 4 or 32 bytes, got {length}")
    return addr


def zone_position(zone: int, addr: int, length: int) -> tuple[int, int]:
    """(slot, byte offset) a Read/Write address points at: the inverse of :func:`get_addr`
    (slot 0 for config/OTP; a 32-byte access starts at word 0 whatever the word bits say)."""
    word = 0 if length == BLOCK_SIZE else addr & 0x07
    if zone == ZONE_DATA:
        return (addr >> 3) & 0x0F, (addr >> 8) * BLOCK_SIZE + word * WORD_SIZE
    return 0, ((addr >> 3) & 0x03) * BLOCK_SIZE + word * WORD_SIZE


class Retry(Enum):
    """What :class:`Device` does when a command's outcome is unknown: its response was lost,
    or came back corrupt or malformed, so the chip may or may not have run it."""

    REPEAT = "send it again: running it twice does no harm"
    CHECK_LOCK = "read the lock bytes; send it again only if the lock did not happen"
    REPORT = "raise: it depends on volatile state the first run may have used up"


def retry_rule(opcode: int, param1: int) -> Retry:
    """The retry rule of a command (see :class:`Retry` and the table in docs/library.md).

    Read, Info, Random and Nonce change nothing a second run would spoil (a second Nonce just
    loads TempKey again); a clear Write writes the same bytes again; GenKey in create mode
    makes another fresh key (the one the lost run may have made is overwritten, never adopted
    unseen: the slot could hold a factory test key if the first run did not happen), in public
    mode it only computes; Counter in read mode only reads. A Lock is checked. Everything else
    (Sign, Verify, GenDig, MAC, CheckMac, HMAC, SHA, ECDH, DeriveKey, PrivWrite, an encrypted
    Write, GenKey digest modes, UpdateExtra, Counter increment, Pause) is reported.
    """
    if opcode in (Opcode.READ, Opcode.INFO, Opcode.RANDOM, Opcode.NONCE):
        return Retry.REPEAT
    if opcode == Opcode.WRITE:
        return Retry.REPORT if param1 & ZONE_ENCRYPTED else Retry.REPEAT
    if opcode == Opcode.GENKEY:
        plain = param1 in (GENKEY_MODE_PRIVATE, GENKEY_MODE_PUBLIC)
        return Retry.REPEAT if plain else Retry.REPORT
    if opcode == Opcode.COUNTER:
        return Retry.REPEAT if param1 == 0 else Retry.REPORT
    if opcode == Opcode.LOCK:
        return Retry.CHECK_LOCK
    return Retry.REPORT


@dataclass(frozen=True)
class LockState:
    """The lock bytes of a part (config bytes 86..89) as read from the chip."""

    config_locked: bool
    data_locked: bool
    slot_locked_bits: int  # SlotLocked: bit n is 0 when slot n is locked

    def slot_locked(self, slot: int) -> bool:
        _check_slot(slot)
        return not (self.slot_locked_bits >> slot) & 1

    @classmethod
    def from_config(cls, config: bytes) -> LockState:
        """The lock state held in config-zone bytes (at least the first 90)."""
        span = ATECC508A_CONFIG_MAP.slot_locked
        return cls(
            config_locked=config[ATECC508A_CONFIG_MAP.lock_config] == LOCKED,
            data_locked=config[ATECC508A_CONFIG_MAP.lock_value] == LOCKED,
            slot_locked_bits=int.from_bytes(config[span.offset : span.stop], "little"),
        )


def lock_crc(data: bytes) -> int:
    """The summary CRC the Lock command checks (the chip CRC-16 as the param2 value)."""
    from .packet import crc16_value

    return crc16_value(bytes(data))


class Device(Closeable):
    """One ATECC508A reached through ``hal``.

    ``wake_retries``: extra wake attempts after a wake that failed (no/invalid answer).
    ``crc_retries``: times a command is sent again after a fault its :func:`retry_rule`
    allows (and times :meth:`sign` / :meth:`verify_extern` redo their sequence).
    ``on_write``: if set, called as ``on_write(param1, param2, data)`` after every Write the
    chip acknowledged (the provisioning flow uses it to know what a hook wrote).
    """

    def __init__(self, hal: Hal, *, wake_retries: int = 3, crc_retries: int = 2) -> None:
        if wake_retries < 0 or crc_retries < 0:
            raise BadParamError(
                f"retries must be >= 0, got wake_retries={wake_retries} crc_retries={crc_retries}"
            )
        self.hal = hal
        self.wake_retries = wake_retries
        self.crc_retries = crc_retries
        self.chip_floor_ms = 0.0
        self.opcode_counts: Counter[int] = Counter()
        self.wake_count = 0
        self.retry_count = 0
        self.on_write: Callable[[int, int, bytes], None] | None = None
        self._depth = 0
        self._woken = False  # the outermost session's wake was sent
        self._during: During[Any] | None = None  # host work for the next command's execution
        self._lingering = False  # a linger session left the chip awake (no idle sent)
        self._woke_at = 0.0  # monotonic time of the last wake the chip answered
        self.clock: Callable[[], float] = time.monotonic
        """The monotonic clock (seconds) a wake's time is measured with (a test's fake)."""
        self._wake_planned_ms = 0.0  # wake_plan_ms of the commands sent since that wake
        # The chip model and its ChipMode byte (the 608's clock divider): execution times come
        # from that model's table. ATECC508A until :meth:`detect_model` reads the chip.
        self.model: ChipModel = ATECC508A
        self.chip_mode = 0
        self.model_detected = False

    # ---------------------------------------------------------------------------------------
    # life cycle
    # ---------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HAL."""
        self.hal.close()

    def reset_stats(self) -> None:
        """Zero ``chip_floor_ms``, ``opcode_counts`` and the wake/retry counters."""
        self.chip_floor_ms = 0.0
        self.opcode_counts.clear()
        self.wake_count = 0
        self.retry_count = 0

    @property
    def in_session(self) -> bool:
        return self._depth > 0

    @contextmanager
    def session(
        self, *, lazy: bool = False, linger: bool = False, _continue: bool = False
    ) -> Iterator[Device]:
        """Keep the chip awake for the commands of the ``with`` body; idle it at the end.

        Nested sessions share the outer one's wake. ``lazy``: wake only when the body's first
        command (or nested session) comes, so that a failed wake is that command's failure
        (and a body that sends nothing sends no wake or idle either). ``linger``: at the end
        leave the chip awake instead (no idle): the next :meth:`planned_session` goes on in
        the same wake if its plan still fits in what is left of it, any other session (or
        :meth:`end_linger`) idles it first.
        """
        if self._depth == 0:
            self._woken = False
            if self._lingering:
                if _continue:
                    self._lingering = False
                    self._woken = True  # still awake from the wake before (planned_session)
                else:
                    self.end_linger()
        if not self._woken and not (lazy and self._depth == 0):
            self.wake()
            self._woken = True
        self._depth += 1
        ok = False
        try:
            yield self
            ok = True
        finally:
            self._depth -= 1
            if self._depth == 0 and self._woken:
                self._woken = False
                if ok and linger:
                    self._lingering = True
                elif ok:
                    self.hal.idle()
                else:
                    self._idle_after_error()

    def end_linger(self) -> None:
        """Idle a chip a ``linger`` session left awake (nothing otherwise); a failed idle is
        logged: the chip falls asleep on its watchdog anyway."""
        if self._lingering:
            self._lingering = False
            self._idle_after_error()

    def wake_plan_ms(self, opcodes: Iterable[int]) -> float:
        """The time one wake holding these commands is planned to take: their max execution
        times (this model, this ChipMode) plus :data:`COMMAND_ALLOWANCE_MS` each."""
        return sum(
            exec_time_ms(op, model=self.model.name, chip_mode=self.chip_mode) + COMMAND_ALLOWANCE_MS
            for op in opcodes
        )

    @property
    def wake_budget_ms(self) -> float:
        """What a planned wake may take: :data:`WAKE_PLAN_FRACTION` of tWATCHDOG (the short
        one: the long watchdog is never counted on)."""
        return WAKE_PLAN_FRACTION * WATCHDOG_S * 1000.0

    def fits_one_wake(self, opcodes: Iterable[int]) -> bool:
        """Whether these commands may be planned in one wake (:meth:`wake_plan_ms` within
        :attr:`wake_budget_ms`)."""
        return self.wake_plan_ms(opcodes) <= self.wake_budget_ms

    def wake_groups(self, opcode: int, count: int) -> list[range]:
        """Split ``count`` commands of ``opcode`` into as few wakes as fit the budget, of
        near-equal sizes: the ranges of command indexes, one per wake."""
        per_wake = max(1, int(self.wake_budget_ms // self.wake_plan_ms((opcode,))))
        wakes = -(-count // per_wake)
        bounds = [count * k // wakes for k in range(wakes + 1)] if wakes else [0]
        return [range(bounds[k], bounds[k + 1]) for k in range(wakes)]

    @contextmanager
    def planned_session(self, opcodes: Iterable[int], *, linger: bool = False) -> Iterator[Device]:
        """One wake for the commands of the ``with`` body (``opcodes``: what it sends at
        most) when their plan fits the watchdog budget (:meth:`fits_one_wake`); otherwise each
        command wakes the chip as usual. A chip a ``linger`` session left awake goes on in
        that wake when the time since it plus this plan still fits the budget (the host's
        work in between, a server's answer, is counted as it was); otherwise it is idled and
        woken again. ``linger``: see :meth:`session`."""
        plan = list(opcodes)
        if self.fits_one_wake(plan):
            # what the wake has taken: its time so far, or the plan of what it held if more
            used_ms = max((self.clock() - self._woke_at) * 1000.0, self._wake_planned_ms)
            fits = used_ms + self.wake_plan_ms(plan) <= self.wake_budget_ms
            with self.session(lazy=True, linger=linger, _continue=self._lingering and fits):
                yield self
        else:
            self.end_linger()
            yield self

    @contextmanager
    def during(self, work: Callable[[], _T]) -> Iterator[During[_T]]:
        """Do ``work()`` (host work) while the chip executes the next command the ``with`` body
        sends: after its packet went out, before its answer is read (:mod:`atcaprov.beside`).
        Collect it with the yielded object's ``result()`` (done then if no command ran it);
        the work must take well under that command's execution time plus
        :data:`COMMAND_ALLOWANCE_MS`, since the answer is read after it."""
        job = During(work)
        self._during = job
        try:
            yield job
        finally:
            if self._during is job:
                self._during = None

    def _idle_after_error(self) -> None:
        try:
            self.hal.idle()
        except CommError as exc:
            # The original error is the one to report; the chip will fall asleep on its
            # watchdog anyway.
            log.warning("idle after a failed command also failed: %s", exc)

    def wake(self, *, retries: int | None = None) -> None:
        """Wake the chip (``04 11 33 43`` expected), retrying up to ``wake_retries`` times (or
        ``retries``)."""
        attempts = 1 + (self.wake_retries if retries is None else retries)
        problems: list[str] = []
        last: Exception | None = None
        for attempt in range(1, attempts + 1):
            self.wake_count += 1
            try:
                raw = self.hal.wake()
            except CommError as exc:
                problems.append(f"attempt {attempt}: {exc}")
                last = exc
                continue
            if raw == WAKE_RESPONSE:
                self._woke_at = self.clock()
                self._wake_planned_ms = 0.0
                if attempt > 1:
                    log.info("chip woke on attempt %d of %d", attempt, attempts)
                return
            problems.append(f"attempt {attempt}: answer {raw.hex(' ') or 'empty'}")
        raise WakeFailedError(
            f"chip did not wake after {attempts} attempts (expected 04 11 33 43): "
            + "; ".join(problems)
        ) from last

    def fresh_wake(self, *, retries: int | None = None) -> None:
        """Idle the chip (if it answers) and wake it again: a new watchdog period, TempKey
        kept. What is read right after this is what the chip holds, not a stale answer."""
        self._lingering = False
        try:
            self.hal.idle()
        except CommError as exc:
            log.debug("idle before a fresh wake failed: %s", exc)
        self.wake(retries=retries)

    def idle(self) -> None:
        """Send the idle token (only meaningful outside a session)."""
        self._lingering = False
        self.hal.idle()

    def sleep(self) -> None:
        """Send the sleep token: an awake chip sleeps and loses its volatile state; an idle or
        sleeping chip ignores it (wake it first to clear TempKey)."""
        self._lingering = False
        self.hal.sleep()

    # ---------------------------------------------------------------------------------------
    # command execution
    # ---------------------------------------------------------------------------------------
    def execute(
        self, opcode: int, p1: int, p2: int, data: bytes = b"", *, response_size: int | None = None
    ) -> bytes:
        """Run one command and return the response data (``b"\\x00"`` for a success status).

        A non-zero chip status raises the typed :class:`~atcaprov.errors.ChipStatusError`.
        ``response_size``: the data length a good answer has (1 for a bare status); another
        length counts as a malformed answer, which the command's retry rule handles.
        """
        if not isinstance(opcode, int) or not 0 <= opcode <= 0xFF:
            raise BadParamError(f"opcode {opcode!r} out of range 0..0xFF")
        if not isinstance(p1, int) or not 0 <= p1 <= 0xFF:
            raise BadParamError(f"param1 {p1!r} out of range 0..0xFF")
        if not isinstance(p2, int) or not 0 <= p2 <= 0xFFFF:
            raise BadParamError(f"param2 {p2!r} out of range 0..0xFFFF")
        try:
            packet = build_command(opcode, p1, p2, bytes(data))
        except ValueError as exc:
            raise BadParamError(f"cannot build command 0x{opcode:02X}: {exc}") from exc
        with self.session():
            out = self._send(opcode, p1, packet, response_size)
        if opcode == Opcode.WRITE and self.on_write is not None:
            self.on_write(p1, p2, bytes(data))
        return out

    def _send(self, opcode: int, p1: int, packet: bytes, response_size: int | None) -> bytes:
        rule = retry_rule(opcode, p1)
        attempts = 1 + self.crc_retries
        exec_ms = exec_time_ms(opcode, model=self.model.name, chip_mode=self.chip_mode)
        key: int = Opcode(opcode) if opcode in Opcode._value2member_map_ else opcode
        for attempt in range(1, attempts + 1):
            self.opcode_counts[key] += 1
            self.chip_floor_ms += exec_ms
            self._wake_planned_ms += exec_ms + COMMAND_ALLOWANCE_MS
            job, self._during = self._during, None
            try:
                raw = (
                    self.hal.transact(packet, exec_ms)
                    if job is None
                    else self.hal.transact_during(packet, exec_ms, job.run)
                )
                out = parse_response(raw)
                if response_size is not None and len(out) != response_size:
                    raise MalformedPacketError(
                        f"opcode 0x{opcode:02X}: expected {response_size} data bytes, got"
                        f" {len(out)} ({out.hex(' ')})"
                    )
                return out
            except (CommError, EccFaultError) as exc:
                # No (usable) answer: the chip may or may not have run the command. Or 0x05,
                # "computation failed, retry": handled the same way.
                if rule is Retry.REPORT:
                    raise
                if rule is Retry.CHECK_LOCK:
                    done = self._lock_done(p1)
                    if done is None:  # the lock bytes could not be read either
                        raise
                    if done:
                        log.info("lock 0x%02X: answer lost, the lock bytes show it done", p1)
                        return b"\x00"
                if attempt == attempts:
                    raise
                self.wake()
                what = str(exc)
            except ChipStatusError as exc:
                # The chip answered: it says whether it ran the command.
                if attempt == attempts or not self._resend_after_status(exc, rule):
                    raise
                what = str(exc)
            self.retry_count += 1
            log.info(
                "opcode 0x%02X attempt %d of %d: %s; sending it again",
                opcode,
                attempt,
                attempts,
                what,
            )
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _resend_after_status(self, exc: ChipStatusError, rule: Retry) -> bool:
        """Whether a command answered with this status may be sent again (after preparing)."""
        if isinstance(exc, ChipCrcError):  # 0xFF: the command arrived garbled and did not run
            return True
        if isinstance(exc, WatchdogError):  # 0xEE: not run; idle keeps TempKey, wake restarts
            self.fresh_wake()
            return True
        if isinstance(exc, WakeTokenStatus):  # 0x11: not run, the chip had been asleep
            if rule is Retry.REPORT:  # ... so its volatile state is gone
                return False
            self.wake()
            return True
        return False

    def _lock_done(self, p1: int) -> bool | None:
        """After a Lock whose answer was lost: did it happen? None if that cannot be read."""
        try:
            self.fresh_wake()
            state = self.read_lock_state(fresh=False)
        except AtcaprovError as exc:
            log.warning("lock 0x%02X: answer lost and the lock bytes cannot be read: %s", p1, exc)
            return None
        mode = p1 & 0x03
        if mode == LOCK_MODE_CONFIG:
            return state.config_locked
        if mode == LOCK_MODE_DATA:
            return state.data_locked
        return state.slot_locked((p1 >> 2) & 0x0F)

    def read_lock_state(self, *, fresh: bool = True, wake_retries: int | None = None) -> LockState:
        """The lock bytes as the chip holds them now (config bytes 84..91, two 4-byte Reads).

        ``fresh``: idle and wake the chip first (a new watchdog period, nothing stale), with
        ``wake_retries`` extra wake attempts (default ``wake_retries``)."""
        with self.session():
            if fresh:
                self.fresh_wake(retries=wake_retries)
            locks, _ = self._config_word_at(ATECC508A_CONFIG_MAP.user_extra)
            slots, _ = self._config_word_at(ATECC508A_CONFIG_MAP.slot_locked.offset)
        at = ATECC508A_CONFIG_MAP.user_extra
        return LockState.from_config(bytes(at) + locks + slots)

    @staticmethod
    def _expect(data: bytes, size: int, what: str) -> bytes:
        if len(data) != size:
            raise MalformedPacketError(
                f"{what}: expected {size} data bytes, got {len(data)} ({data.hex(' ')})"
            )
        return data

    # ---------------------------------------------------------------------------------------
    # Info, Random, Nonce
    # ---------------------------------------------------------------------------------------
    def info(self, mode: int = INFO_MODE_REVISION, param2: int = 0) -> bytes:
        """Info command: 4 bytes (mode 0 = revision, ``00 00 50 00`` on an ATECC508A)."""
        if mode not in (0, 1, 2, 3):
            raise BadParamError(f"Info mode {mode!r} must be 0..3")
        return self.execute(Opcode.INFO, mode, param2, response_size=4)

    def detect_model(self, *, read_chip_mode: bool = True) -> ChipModel:
        """Read the chip's model (Info revision) and ChipMode (config byte 19), in one wake;
        later commands use that model's execution times. ``read_chip_mode=False``: Info only,
        for a caller that reads the config zone next and sets :attr:`chip_mode` from it. Raises
        :class:`~atcaprov.datasheet.UnknownChipModelError` for a revision no supported model
        answers."""
        with self.session():
            revision = self.info()
            word = (
                self.read_zone(ZONE_CONFIG, 0, 0, _CHIP_MODE_WORD, WORD_SIZE)
                if read_chip_mode
                else None
            )
        self.model = model_for_revision(revision)
        if word is not None:
            self.chip_mode = word[ATECC508A_CONFIG_MAP.chip_mode % WORD_SIZE]
        self.model_detected = True
        return self.model

    def random(self) -> bytes:
        """32 random bytes (``FF FF 00 00`` x 8 until the config zone is locked)."""
        return self.execute(Opcode.RANDOM, RANDOM_MODE_SEED_UPDATE, 0, response_size=32)

    def nonce(self, num_in: bytes) -> bytes:
        """Nonce: a 20-byte NumIn runs the random mode (seed update) and returns RandOut (32);
        a 32-byte NumIn is loaded into TempKey as is (pass-through) and returns ``b""``."""
        num_in = _check_len("Nonce NumIn", num_in, 20, 32)
        if len(num_in) == 32:
            self.nonce_load(num_in)
            return b""
        return self.execute(Opcode.NONCE, NONCE_MODE_SEED_UPDATE, 0, num_in, response_size=32)

    def nonce_load(self, value32: bytes) -> None:
        """Nonce pass-through: TempKey = ``value32``."""
        value32 = _check_len("Nonce pass-through value", value32, 32)
        self.execute(Opcode.NONCE, NONCE_MODE_PASSTHROUGH, 0, value32, response_size=1)

    # ---------------------------------------------------------------------------------------
    # Read / Write
    # ---------------------------------------------------------------------------------------
    def read_zone(self, zone: int, slot: int, block: int, offset: int, length: int) -> bytes:
        """Read 4 or 32 bytes at (zone, slot, block, word ``offset``)."""
        addr = _check_access(zone, slot, block, offset, length)
        p1 = zone | (ZONE_READWRITE_32 if length == BLOCK_SIZE else 0)
        return self.execute(Opcode.READ, p1, addr, response_size=length)

    def write_zone(self, zone: int, slot: int, block: int, offset: int, data: bytes) -> None:
        """Write 4 or 32 bytes (clear text) at (zone, slot, block, word ``offset``)."""
        data = _check_len("Write data", data, WORD_SIZE, BLOCK_SIZE)
        addr = _check_access(zone, slot, block, offset, len(data))
        if zone == ZONE_CONFIG:
            start = block * BLOCK_SIZE + offset * WORD_SIZE
            _check_config_writable(start, len(data))
        p1 = zone | (ZONE_READWRITE_32 if len(data) == BLOCK_SIZE else 0)
        self.execute(Opcode.WRITE, p1, addr, data, response_size=1)

    def read_bytes_zone(self, zone: int, slot: int, offset: int, length: int) -> bytes:
        """Read ``length`` bytes from byte ``offset`` of a zone, with as few Reads as possible
        (32-byte blocks where a whole block lies in the zone, 4-byte words otherwise)."""
        size = zone_size(zone, slot)
        if offset < 0 or length < 0 or offset + length > size:
            raise BadParamError(
                f"bytes {offset}..{offset + length} out of the {size}-byte zone (zone {zone},"
                f" slot {slot})"
            )
        out = bytearray()
        pos, end = offset, offset + length
        with self.session():
            while pos < end:
                block = pos // BLOCK_SIZE
                if (block + 1) * BLOCK_SIZE <= size:
                    base = block * BLOCK_SIZE
                    chunk = self.read_zone(zone, slot, block, 0, BLOCK_SIZE)
                else:
                    word = (pos % BLOCK_SIZE) // WORD_SIZE
                    base = block * BLOCK_SIZE + word * WORD_SIZE
                    chunk = self.read_zone(zone, slot, block, word, WORD_SIZE)
                take = chunk[pos - base : min(end, base + len(chunk)) - base]
                out += take
                pos += len(take)
        return bytes(out)

    def write_bytes_zone(self, zone: int, slot: int, offset: int, data: bytes) -> None:
        """Write ``data`` at byte ``offset`` of a zone (offset and length multiples of 4).

        32-byte Writes where a block starts and at least 32 bytes remain, 4-byte Writes
        otherwise. In the config zone block 2 is always written by words and word 5 (bytes
        84..87: UserExtra, Selector, LockValue, LockConfig) is skipped, as CryptoAuthLib does;
        bytes 0..15 cannot be written at all.
        """
        data = bytes(data)
        size = zone_size(zone, slot)
        if offset % WORD_SIZE or len(data) % WORD_SIZE:
            raise BadParamError(
                f"offset {offset} and length {len(data)} must both be multiples of 4"
            )
        if offset < 0 or offset + len(data) > size:
            raise BadParamError(
                f"bytes {offset}..{offset + len(data)} out of the {size}-byte zone (zone {zone},"
                f" slot {slot})"
            )
        if zone == ZONE_CONFIG and data and offset < _READ_ONLY.stop:
            raise BadParamError(
                f"config bytes {_READ_ONLY.offset}..{_READ_ONLY.stop - 1} (serial number,"
                f" revision) are read-only; write starts at byte {offset}"
            )
        pos, index = offset, 0
        with self.session():
            while index < len(data):
                block, word = divmod(pos, BLOCK_SIZE)
                word //= WORD_SIZE
                remaining = len(data) - index
                by_words = zone == ZONE_CONFIG and block == _NOT_BY_WRITE.offset // BLOCK_SIZE
                if word == 0 and remaining >= BLOCK_SIZE and not by_words:
                    self.write_zone(zone, slot, block, 0, data[index : index + BLOCK_SIZE])
                    step = BLOCK_SIZE
                else:
                    if not (zone == ZONE_CONFIG and pos in _NOT_BY_WRITE.offsets):
                        self.write_zone(zone, slot, block, word, data[index : index + WORD_SIZE])
                    step = WORD_SIZE
                pos += step
                index += step

    def read_config_zone(self) -> bytes:
        """The whole 128-byte config zone (four 32-byte Reads)."""
        return self.read_bytes_zone(ZONE_CONFIG, 0, 0, CONFIG_SIZE)

    def write_config_zone(self, config128: bytes) -> None:
        """Write config bytes 16..127, skipping 84..87 (4-byte Writes for blocks 0 and 2,
        32-byte Writes for blocks 1 and 3). The config zone must be unlocked."""
        config128 = _check_len("config zone", config128, CONFIG_SIZE)
        start = _READ_ONLY.stop
        self.write_bytes_zone(ZONE_CONFIG, 0, start, config128[start:])

    def write_config_changes(self, current: bytes, config128: bytes) -> int:
        """Write only the config words of 16..127 (84..87 skipped) where ``config128`` differs
        from ``current`` (the zone as read); return the number of Writes sent.

        A block whose words may all be written by one 32-byte Write (blocks 1 and 3) takes one
        Write however many of its words differ; blocks 0 and 2 are written word by word. The
        config zone must be unlocked."""
        current = _check_len("current config zone", current, CONFIG_SIZE)
        config128 = _check_len("config zone", config128, CONFIG_SIZE)
        plan: list[tuple[int, int, bytes]] = []  # (block, word, data) of each Write
        for block in range(CONFIG_SIZE // BLOCK_SIZE):
            words = [
                w
                for w in range(BLOCK_SIZE // WORD_SIZE)
                if _config_word_writable(block * BLOCK_SIZE + w * WORD_SIZE)
                and _word(current, block, w) != _word(config128, block, w)
            ]
            if not words:
                continue
            base = block * BLOCK_SIZE
            whole = all(
                _config_word_writable(base + w * WORD_SIZE) for w in range(BLOCK_SIZE // WORD_SIZE)
            )
            if whole and len(words) > 1:
                plan.append((block, 0, config128[base : base + BLOCK_SIZE]))
            else:
                plan.extend((block, w, _word(config128, block, w)) for w in words)
        for group in self.wake_groups(Opcode.WRITE, len(plan)):  # no wake when nothing differs
            with self.session():
                for block, word, data in plan[group.start : group.stop]:
                    self.write_zone(ZONE_CONFIG, 0, block, word, data)
        return len(plan)

    def read_serial_number(self) -> bytes:
        """The 9-byte serial number: config[0:4] + config[8:13]."""
        return serial_number(self.read_zone(ZONE_CONFIG, 0, 0, 0, BLOCK_SIZE))

    def read_pubkey(self, slot: int) -> bytes:
        """Read a P-256 public key stored padded in slot 8..15; return X||Y (64 bytes).

        Stored form (72 bytes): 4 pad bytes, X (32), 4 pad bytes, Y (32).
        """
        _check_pubkey_slot(slot)
        raw = self.read_bytes_zone(ZONE_DATA, slot, 0, 72)
        return raw[PUB_KEY_PAD : PUB_KEY_PAD + 32] + raw[2 * PUB_KEY_PAD + 32 : 72]

    def write_pubkey(self, slot: int, pub64: bytes) -> None:
        """Write X||Y into slot 8..15 in the 72-byte padded form, as three 32-byte Writes
        (the only form allowed before the data zone is locked; the tail of the third block lies
        past the slot and is zero)."""
        _check_pubkey_slot(slot)
        pub64 = _check_len("public key", pub64, 64)
        formatted = bytearray(3 * BLOCK_SIZE)
        formatted[PUB_KEY_PAD : PUB_KEY_PAD + 32] = pub64[:32]
        formatted[2 * PUB_KEY_PAD + 32 : 72] = pub64[32:]
        with self.session():
            for block in range(3):
                chunk = bytes(formatted[block * BLOCK_SIZE : (block + 1) * BLOCK_SIZE])
                self.write_zone(ZONE_DATA, slot, block, 0, chunk)

    # ---------------------------------------------------------------------------------------
    # Locks
    # ---------------------------------------------------------------------------------------
    def _config_word_at(self, offset: int) -> tuple[bytes, int]:
        """The 4-byte config word holding byte ``offset``, and the byte's index in it."""
        block, rest = divmod(offset, BLOCK_SIZE)
        word, index = divmod(rest, WORD_SIZE)
        return self.read_zone(ZONE_CONFIG, 0, block, word, WORD_SIZE), index

    def is_locked(self, zone: int) -> bool:
        """Lock state of LOCK_ZONE_CONFIG (byte 87) or LOCK_ZONE_DATA (byte 86); 0x00 = locked."""
        if zone == LOCK_ZONE_CONFIG:
            offset = ATECC508A_CONFIG_MAP.lock_config
        elif zone == LOCK_ZONE_DATA:
            offset = ATECC508A_CONFIG_MAP.lock_value
        else:
            raise BadParamError(
                f"lock zone {zone!r} is not LOCK_ZONE_CONFIG (0) or LOCK_ZONE_DATA (1)"
            )
        word, index = self._config_word_at(offset)
        return word[index] == LOCKED

    def is_slot_locked(self, slot: int) -> bool:
        """SlotLocked bit of ``slot`` (config bytes 88-89; a 0 bit means locked)."""
        _check_slot(slot)
        word, index = self._config_word_at(ATECC508A_CONFIG_MAP.slot_locked.offset)
        bits = word[index] | (word[index + 1] << 8)
        return not (bits >> slot) & 1

    def _lock(self, mode: int, crc: int | None) -> None:
        if crc is None:
            self.execute(Opcode.LOCK, mode | LOCK_MODE_NO_CRC, 0, response_size=1)
            return
        if not isinstance(crc, int) or not 0 <= crc <= 0xFFFF:
            raise BadParamError(f"lock summary CRC {crc!r} out of range 0..0xFFFF")
        self.execute(Opcode.LOCK, mode, crc, response_size=1)

    def lock_config_zone(self, crc: int | None = None) -> None:
        """Lock the config zone; with ``crc`` (see :func:`lock_crc`) the chip checks it first."""
        self._lock(LOCK_MODE_CONFIG, crc)

    def lock_data_zone(self, crc: int | None = None) -> None:
        """Lock the data and OTP zones; with ``crc`` the chip checks their summary CRC."""
        self._lock(LOCK_MODE_DATA, crc)

    def lock_data_slot(self, slot: int) -> None:
        """Lock one slot (its KeyConfig.Lockable must be set)."""
        _check_slot(slot)
        self.execute(Opcode.LOCK, (slot << 2) | LOCK_MODE_SLOT, 0, response_size=1)

    # ---------------------------------------------------------------------------------------
    # Keys, signatures
    # ---------------------------------------------------------------------------------------
    def genkey(self, slot: int) -> bytes:
        """Create a new private key in ``slot``; return its public key X||Y (64)."""
        _check_slot(slot)
        return self.execute(Opcode.GENKEY, GENKEY_MODE_PRIVATE, slot, response_size=64)

    def get_pubkey(self, slot: int) -> bytes:
        """Public key X||Y (64) of the private key in ``slot`` (GenKey public mode)."""
        _check_slot(slot)
        return self.execute(Opcode.GENKEY, GENKEY_MODE_PUBLIC, slot, response_size=64)

    def sign(self, slot: int, msg32: bytes) -> bytes:
        """ECDSA-sign the 32-byte digest ``msg32`` with the key in ``slot``: R||S (64).

        As CryptoAuthLib: Random (RNG seed update), Nonce pass-through, Sign external. When the
        Sign's outcome is unknown (or the chip lost TempKey), the whole sequence is redone on a
        new wake (up to ``crc_retries`` times): signing the same digest twice does no harm.
        """
        _check_slot(slot)
        msg32 = _check_len("message digest", msg32, 32)

        def once() -> bytes:
            with self.session():
                self.random()
                self.nonce_load(msg32)
                return self.execute(Opcode.SIGN, SIGN_MODE_EXTERNAL, slot, response_size=64)

        return self._redo("Sign", once)

    def _redo(self, what: str, sequence: Callable[[], _T]) -> _T:
        """Run a TempKey sequence, again from its Nonce when the chip's part is unknown."""
        attempts = 1 + self.crc_retries
        for attempt in range(1, attempts + 1):
            try:
                return sequence()
            except (CommError, WakeTokenStatus, EccFaultError) as exc:
                if attempt == attempts or isinstance(exc, WakeFailedError):
                    raise
                self.retry_count += 1
                log.info(
                    "%s attempt %d of %d: %s; redoing the sequence from its Nonce",
                    what,
                    attempt,
                    attempts,
                    exc,
                )
                if self.in_session:  # inside a caller's wake: the redo still gets a new one
                    self.fresh_wake()
        raise AssertionError("unreachable: the last attempt returns or raises")

    def sign_internal(
        self, slot: int, *, is_invalidate: bool = False, is_full_sn: bool = False
    ) -> bytes:
        """Sign an internally generated message (TempKey from a prior GenDig/GenKey): R||S."""
        _check_slot(slot)
        mode = SIGN_MODE_INTERNAL
        if is_invalidate:
            mode |= SIGN_MODE_INVALIDATE
        if is_full_sn:
            mode |= SIGN_MODE_INCLUDE_SN
        return self._expect(self.execute(Opcode.SIGN, mode, slot), 64, "Sign internal")

    def verify_extern(self, msg32: bytes, sig64: bytes, pub64: bytes) -> bool:
        """Verify R||S over ``msg32`` with the public key X||Y; False on a miscompare.

        Nonce pass-through, then Verify external; redone from the Nonce as :meth:`sign` is."""
        msg32 = _check_len("message digest", msg32, 32)
        sig64 = _check_len("signature", sig64, 64)
        pub64 = _check_len("public key", pub64, 64)

        def once() -> bool:
            with self.session():
                self.nonce_load(msg32)
                try:
                    self.execute(
                        Opcode.VERIFY,
                        VERIFY_MODE_EXTERNAL,
                        VERIFY_KEY_P256,
                        sig64 + pub64,
                        response_size=1,
                    )
                except CheckmacVerifyError:
                    return False
            return True

        return self._redo("Verify", once)

    # ---------------------------------------------------------------------------------------
    # SHA, GenDig, MAC, CheckMac
    # ---------------------------------------------------------------------------------------
    def sha(self, message: bytes) -> bytes:
        """SHA-256 of ``message`` computed by the chip (start, 64-byte updates, end)."""
        message = bytes(message)
        with self.session():
            self.execute(Opcode.SHA, SHA_MODE_START, 0)
            full = len(message) - len(message) % SHA_BLOCK_SIZE
            for i in range(0, full, SHA_BLOCK_SIZE):
                block = message[i : i + SHA_BLOCK_SIZE]
                self.execute(Opcode.SHA, SHA_MODE_UPDATE, SHA_BLOCK_SIZE, block)
            rest = message[full:]
            out = self.execute(Opcode.SHA, SHA_MODE_END, len(rest), rest)
        return self._expect(out, 32, "SHA end")

    def gendig(self, zone: int, key_id: int, other: bytes = b"") -> None:
        """GenDig: fold a key (data zone), config/OTP block, or shared nonce (zone 3) into
        TempKey. ``other`` is 0, 4 or 32 bytes (32 required for zone 3)."""
        if zone not in (0, 1, 2, 3):
            raise BadParamError(f"GenDig zone {zone!r} must be 0 (config), 1 (OTP), 2 (data), 3")
        if not isinstance(key_id, int) or not 0 <= key_id <= 0xFFFF:
            raise BadParamError(f"GenDig key_id {key_id!r} out of range 0..0xFFFF")
        other = _check_len("GenDig other data", other, 0, 4, 32)
        if zone == 3 and len(other) != 32:
            raise BadParamError(f"GenDig zone 3 (shared nonce) needs 32 bytes, got {len(other)}")
        self.execute(Opcode.GENDIG, zone, key_id, other)

    def mac(self, mode: int, key_id: int, challenge: bytes = b"") -> bytes:
        """MAC command: the 32-byte digest. A challenge (32 bytes) is sent unless mode bit 0
        takes the second block from TempKey."""
        if not isinstance(mode, int) or mode & ~0x77 or not 0 <= mode <= 0xFF:
            raise BadParamError(f"MAC mode 0x{mode:02X} has bits outside 0x77")
        if not isinstance(key_id, int) or not 0 <= key_id <= 0xFFFF:
            raise BadParamError(f"MAC key_id {key_id!r} out of range 0..0xFFFF")
        if mode & 0x01:
            challenge = _check_len("MAC challenge (mode takes TempKey)", challenge, 0)
        else:
            challenge = _check_len("MAC challenge", challenge, 32)
        return self._expect(self.execute(Opcode.MAC, mode, key_id, challenge), 32, "MAC")

    def checkmac(
        self, mode: int, key_id: int, challenge32: bytes, response32: bytes, other13: bytes
    ) -> bool:
        """CheckMac: True when the chip's MAC equals ``response32``, False on a miscompare."""
        if not isinstance(mode, int) or mode & ~0x27 or not 0 <= mode <= 0xFF:
            raise BadParamError(f"CheckMac mode 0x{mode:02X} has bits outside 0x27")
        if not isinstance(key_id, int) or not 0 <= key_id <= 0xFFFF:
            raise BadParamError(f"CheckMac key_id {key_id!r} out of range 0..0xFFFF")
        challenge32 = _check_len("CheckMac client challenge", challenge32, 32)
        response32 = _check_len("CheckMac client response", response32, 32)
        other13 = _check_len("CheckMac other data", other13, 13)
        try:
            out = self.execute(Opcode.CHECKMAC, mode, key_id, challenge32 + response32 + other13)
        except CheckmacVerifyError:
            return False
        return out == b"\x00"


def _check_pubkey_slot(slot: int) -> None:
    _check_slot(slot)
    if slot < PUBKEY_SLOT_MIN:
        raise BadParamError(
            f"slot {slot} is too small for a public key (36 bytes); use slots 8..15 (72+ bytes)"
        )


def _check_config_writable(start: int, length: int) -> None:
    end = start + length
    if start < _READ_ONLY.stop:
        raise BadParamError(
            f"config bytes {start}..{end - 1} overlap the read-only bytes"
            f" {_READ_ONLY.offset}..{_READ_ONLY.stop - 1}"
        )
    if start < _NOT_BY_WRITE.stop and end > _NOT_BY_WRITE.offset:
        raise BadParamError(
            f"config bytes {start}..{end - 1} overlap bytes"
            f" {_NOT_BY_WRITE.offset}..{_NOT_BY_WRITE.stop - 1} (UserExtra, Selector, lock"
            " bytes), which only UpdateExtra and Lock change"
        )


def _config_word_writable(start: int) -> bool:
    """Whether the config word at byte ``start`` may be written by a Write."""
    return start >= _READ_ONLY.stop and not (
        start < _NOT_BY_WRITE.stop and start + WORD_SIZE > _NOT_BY_WRITE.offset
    )


def _word(zone: bytes, block: int, word: int) -> bytes:
    at = block * BLOCK_SIZE + word * WORD_SIZE
    return zone[at : at + WORD_SIZE]
