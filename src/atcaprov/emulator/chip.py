"""The emulated ATECC508A: power states, watchdog, timing model and command dispatch.

:class:`Atecc508a` answers command packets byte for byte as the chip does (``count | opcode |
p1 | p2 | data | crc`` in, ``count | data | crc`` out). It is also the base of the other models
(:mod:`.chip608`): a subclass names its :class:`~atcaprov.datasheet.ChipModel` (``MODEL``) and
its command table (``HANDLERS``), and everything else is shared. ``Atecc508a.load`` returns the
part a file holds, whichever model (:func:`chip_class` maps model names to classes). It shares
nothing with the host side but :mod:`atcaprov.packet`, :mod:`atcaprov.errors` and the chip facts
of :mod:`atcaprov.datasheet`. The command handlers live in the ``cmd_*`` modules; memory layout
in :mod:`.zones`; state in :mod:`.state`; files in :mod:`.persist`. One lock guards all state,
so a board server may call it from threads.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import ClassVar

from ..datasheet import (
    ATECC508A,
    CHIP_MODE_WATCHDOG_LONG,
    SN_LAST,
    SN_PREFIX,
    WATCHDOG_LONG_S,
    WATCHDOG_S,
    ChipModel,
    UnknownChipModelError,
    model_named,
)
from ..errors import ChipStatusError, MalformedPacketError, ResponseCrcError
from ..packet import (
    WAKE_RESPONSE,
    Command,
    Opcode,
    build_response,
    build_status,
    exec_time_ms,
    parse_command,
)
from . import cmd_derivekey, cmd_hmac, cmd_keys, cmd_memory, cmd_nonce, cmd_sha
from .exceptions import DeviceAsleepError, InvalidSerialError, StateFileError
from .persist import load_memory, save_memory
from .state import ChipState, Memory
from .zones import default_config

Handler = Callable[[ChipState, Command], bytes]

HANDLERS: dict[int, Handler] = {
    Opcode.INFO: cmd_memory.handle_info,
    Opcode.READ: cmd_memory.handle_read,
    Opcode.WRITE: cmd_memory.handle_write,
    Opcode.LOCK: cmd_memory.handle_lock,
    Opcode.UPDATE_EXTRA: cmd_memory.handle_update_extra,
    Opcode.COUNTER: cmd_memory.handle_counter,
    Opcode.GENKEY: cmd_keys.handle_genkey,
    Opcode.SIGN: cmd_keys.handle_sign,
    Opcode.VERIFY: cmd_keys.handle_verify,
    Opcode.ECDH: cmd_keys.handle_ecdh,
    Opcode.PRIVWRITE: cmd_keys.handle_privwrite,
    Opcode.NONCE: cmd_nonce.handle_nonce,
    Opcode.RANDOM: cmd_nonce.handle_random,
    Opcode.SHA: cmd_sha.handle_sha,
    Opcode.GENDIG: cmd_nonce.handle_gendig,
    Opcode.MAC: cmd_nonce.handle_mac,
    Opcode.CHECKMAC: cmd_nonce.handle_checkmac,
    Opcode.HMAC: cmd_hmac.handle_hmac,
    Opcode.DERIVE_KEY: cmd_derivekey.handle_derivekey,
}
"""Opcodes the emulated ATECC508A implements; any other opcode is answered with status 0x03."""

WATCHDOG_SHORT_S = WATCHDOG_S
STATUS_WATCHDOG = 0xEE
STATUS_COMM_ERROR = 0xFF


class PowerState(Enum):
    ASLEEP = "asleep"
    IDLE = "idle"
    AWAKE = "awake"


def check_serial(serial: bytes) -> bytes:
    """Return ``serial`` if an ATECC part could carry it, else raise :class:`InvalidSerialError`."""
    serial = bytes(serial)
    if len(serial) != 9:
        raise InvalidSerialError(f"serial number must be 9 bytes, got {len(serial)}")
    if serial[0:2] != SN_PREFIX or serial[8] != SN_LAST:
        raise InvalidSerialError(
            f"serial number {serial.hex(' ')}: an ATECC part has SN[0:2] = 01 23 and SN[8] = EE"
        )
    return serial


_CLASSES: dict[str, type[Atecc508a]] = {}


def chip_class(model: str | ChipModel) -> type[Atecc508a]:
    """The emulator class of a chip model (``"ATECC608B"``, any case, or the model itself)."""
    name = model.name if isinstance(model, ChipModel) else model_named(model).name
    try:
        return _CLASSES[name]
    except KeyError:
        raise UnknownChipModelError(f"no emulator for chip model {name}") from None


class Atecc508a:
    """One emulated ATECC508A (and, through subclasses, the models of :mod:`.chip608`).

    ``serial``: 9 bytes (01 23 .. .. .. .. .. .. EE), random if omitted.
    ``timing_scale``: ``execute()`` takes the command's max execution time times this (0 =
    instant). ``clock`` (seconds, monotonic) drives the watchdog; ``sleeper`` does the timing
    waits; ``random_source(n)`` feeds the RNG (keys, Random, Nonce). All three are injectable
    so tests are deterministic. ``watchdog=False`` switches the watchdog off (not chip-like:
    for stepping through a flow in a debugger).
    """

    MODEL: ClassVar[ChipModel] = ATECC508A
    """The chip model this class emulates."""
    HANDLERS: ClassVar[Mapping[int, Handler]] = HANDLERS
    """Opcode -> handler of the commands this model implements (others: status 0x03)."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        _CLASSES[cls.MODEL.name] = cls

    def __init__(
        self,
        serial: bytes | None = None,
        *,
        timing_scale: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleeper: Callable[[float], None] = time.sleep,
        random_source: Callable[[int], bytes] = os.urandom,
        watchdog: bool = True,
        _memory: Memory | None = None,
    ) -> None:
        if timing_scale < 0:
            raise ValueError(f"timing_scale must be >= 0, got {timing_scale}")
        if _memory is None:
            if serial is None:
                serial = SN_PREFIX + random_source(6) + bytes((SN_LAST,))
            model = type(self).MODEL
            _memory = Memory.blank(default_config(check_serial(serial), model), model)
        elif serial is not None:
            raise ValueError("give either serial or a loaded memory, not both")
        self._state = ChipState(_memory, random_source, type(self).MODEL)
        self._lock = threading.RLock()
        self._clock = clock
        self._sleeper = sleeper
        self.timing_scale = timing_scale
        self.watchdog_enabled = watchdog
        self._power = PowerState.ASLEEP
        self._woke_at = 0.0
        self._chip_time_ms = 0.0
        self._last_error: str | None = None

    def __repr__(self) -> str:
        with self._lock:
            return (
                f"{type(self).__name__}(serial={self._state.serial.hex()},"
                f" power={self._power.value},"
                f" config_locked={self._state.config_locked},"
                f" data_locked={self._state.data_locked})"
            )

    # ---- persistence -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the persistent part (config, OTP, slots) and the model as JSON; see
        docs/emulator.md."""
        with self._lock:
            save_memory(self._state.memory, path, self.MODEL)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        timing_scale: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleeper: Callable[[float], None] = time.sleep,
        random_source: Callable[[int], bytes] = os.urandom,
        watchdog: bool = True,
    ) -> Atecc508a:
        """A chip (asleep) with the memory saved in ``path``, of the model the file records;
        raises StateFileError. ``Atecc508a.load`` loads any model; a subclass's ``load``
        refuses a file of a model that is not its own (or one of its subclasses')."""
        memory, model = load_memory(Path(path))
        target = _CLASSES.get(model.name)
        if target is None or not issubclass(target, cls):
            raise StateFileError(
                Path(path), "format", f"the file holds an {model.name}, not an {cls.MODEL.name}"
            )
        return target(
            timing_scale=timing_scale,
            clock=clock,
            sleeper=sleeper,
            random_source=random_source,
            watchdog=watchdog,
            _memory=memory,
        )

    # ---- read-only views ------------------------------------------------------------------
    @property
    def model(self) -> ChipModel:
        """The chip model (``model.name``: ``"ATECC508A"``, ``"ATECC608A"``...)."""
        return self.MODEL

    @property
    def serial_number(self) -> bytes:
        with self._lock:
            return self._state.serial

    @property
    def config_locked(self) -> bool:
        with self._lock:
            return self._state.config_locked

    @property
    def data_locked(self) -> bool:
        with self._lock:
            return self._state.data_locked

    @property
    def config_zone(self) -> bytes:
        """A copy of the 128 config bytes (as Read would return them)."""
        with self._lock:
            return bytes(self._state.config)

    @property
    def chip_time_ms(self) -> float:
        """Sum of the max execution times of the commands answered so far."""
        with self._lock:
            return self._chip_time_ms

    @property
    def power_state(self) -> PowerState:
        with self._lock:
            self._check_watchdog()
            return self._power

    @property
    def last_error(self) -> str | None:
        """Why the last non-zero status was answered (diagnostics; the chip sends only a byte)."""
        with self._lock:
            return self._last_error

    @property
    def watchdog_s(self) -> float:
        """Watchdog period: 1.3 s, or 13 s when ChipMode bit 2 is set."""
        with self._lock:
            long_wd = self._chip_mode() & CHIP_MODE_WATCHDOG_LONG
            return WATCHDOG_LONG_S if long_wd else WATCHDOG_SHORT_S

    def _chip_mode(self) -> int:
        return self._state.config[self.MODEL.config_map.chip_mode]

    # ---- power tokens ------------------------------------------------------------------------
    def wake(self) -> bytes:
        """The wake token: returns 04 11 33 43. Starts the watchdog if the chip was not awake."""
        with self._lock:
            self._check_watchdog()
            if self._power is not PowerState.AWAKE:
                self._power = PowerState.AWAKE
                self._woke_at = self._clock()
            return WAKE_RESPONSE

    def idle(self) -> None:
        """Idle token: TempKey, authorization and SHA context are kept; watchdog stops."""
        with self._lock:
            self._check_watchdog()
            if self._power is PowerState.AWAKE:
                self._power = PowerState.IDLE

    def sleep(self) -> None:
        """Sleep token: an awake chip goes to sleep and loses all volatile state.

        An idle or sleeping chip ignores the bus except for a wake, so the token does nothing:
        TempKey kept in idle survives a sleep token sent before the next wake.
        """
        with self._lock:
            self._check_watchdog()
            if self._power is PowerState.AWAKE:
                self._go_to_sleep()

    def power_off(self) -> None:
        """Power loss (the board was unplugged): volatile state is gone, the chip is asleep.

        Not a bus token: unlike :meth:`sleep`, nothing the chip was doing can ignore it.
        """
        with self._lock:
            self._go_to_sleep()

    def _go_to_sleep(self) -> None:
        self._power = PowerState.ASLEEP
        self._state.volatile.clear()

    def _check_watchdog(self) -> None:
        if not self.watchdog_enabled:
            return
        if self._power is PowerState.AWAKE and self._clock() - self._woke_at >= self.watchdog_s:
            self._go_to_sleep()

    # ---- commands ------------------------------------------------------------------------
    def execute(self, packet: bytes, *, while_busy: Callable[[int], None] | None = None) -> bytes:
        """Answer one command packet with the chip's response packet.

        Raises :class:`DeviceAsleepError` if the chip is asleep or idle (a real chip gives no
        answer). Every other problem is an answer: 0xFF for a bad count or CRC, 0x03 for a bad
        parameter or unknown opcode, 0x0F for a forbidden operation, 0xEE when the watchdog
        would expire during a command the chip implements.

        With the timing model on, the answer comes the command's max execution time (times
        ``timing_scale``) after the packet arrived, as a real chip's: the emulator's own work
        (computing the answer, and ``while_busy(opcode)``, e.g. the board saving the chip file
        as the chip programs its EEPROM) is done inside that time, not added to it.
        ``while_busy`` is called after every command the chip answered, before the wait.
        """
        with self._lock:
            started = self._clock()
            self._check_watchdog()
            if self._power is not PowerState.AWAKE:
                raise DeviceAsleepError(
                    f"device {self._power.value}: no answer to {bytes(packet[:8]).hex(' ')}..."
                    " (send a wake first)"
                )
            opcode = packet[1] if len(packet) > 1 else -1
            max_ms = exec_time_ms(opcode, self.MODEL.name, self._chip_mode())
            elapsed = self._clock() - self._woke_at
            implemented = opcode in self.HANDLERS  # others are refused at once (0x03)
            if (
                implemented
                and self.watchdog_enabled
                and elapsed + max_ms / 1000.0 >= self.watchdog_s
            ):
                self._last_error = "watchdog would expire before the command completes"
                return build_status(STATUS_WATCHDOG)
            response = self._answer(bytes(packet))
            self._chip_time_ms += max_ms
            if while_busy is not None:
                while_busy(opcode)
            if self.timing_scale > 0:
                left = max_ms * self.timing_scale / 1000.0 - (self._clock() - started)
                if left > 0:
                    self._sleeper(left)
            return response

    def _answer(self, packet: bytes) -> bytes:
        try:
            cmd = parse_command(packet)
        except (MalformedPacketError, ResponseCrcError) as exc:
            self._last_error = str(exc)
            return build_status(STATUS_COMM_ERROR)
        handler = self.HANDLERS.get(cmd.opcode)
        if handler is None:
            self._last_error = (
                f"opcode 0x{cmd.opcode:02X} is not supported by the emulated {self.MODEL.name}"
            )
            return build_status(0x03)
        try:
            data = handler(self._state, cmd)
        except ChipStatusError as exc:
            self._last_error = str(exc)
            return build_status(exc.status)
        self._last_error = None
        return build_response(data)


_CLASSES[ATECC508A.name] = Atecc508a
