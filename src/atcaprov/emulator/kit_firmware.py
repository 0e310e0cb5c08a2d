"""The kit firmware, sans-IO: one kit-protocol line from the host in, the kit's reply out.

Owns what the USB CryptoAuth kit's firmware does with a line (decoded and encoded with the
shared codec :mod:`atcaprov.kit_protocol`): board commands (``device``, ``version``,
``firmware``, ``get_devices``, ``discover``, ``last_error``) and device commands (select,
wake/idle/sleep, ``talk``, ``send``/``receive``) turned into calls on the emulated chip currently
plugged. ``board:device(00)`` is answered as Microchip's kit firmware does, ``<device> TWI
00(C0)``, a form both the 2016 and the current CryptoAuthLib hosts accept, where the device is
what that firmware names the plugged chip's model (:data:`KIT_DEVICE_NAMES`: ``ECC508A``, and
``ECC608`` for both 608s, as CryptoAuthLib's ``kit_id_from_devtype`` does since v3.2.2; its
2019-2020 releases said ``ECC608A``; the host tells a 608A from a 608B by Info). Idle
and sleep are passed to the chip, which ignores a sleep while idle or asleep. It does no I/O:
the virtual board (:mod:`atcaprov.emulator.kit_board`, CDC over TCP or a pty) and the emulated
HID kit (:mod:`atcaprov.emulator.kit_hid_device`) feed it lines.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .. import kit_protocol as kp
from ..datasheet import ATECC508A, ATECC608A, ATECC608B
from ..errors import CommError
from .chip import Atecc508a

log = logging.getLogger(__name__)

BOARD_NAME = "AT88CK101"
FIRMWARE_TEXT = "atcaprov virtual kit firmware 1.0.0"
DEVICE_TYPE = "ECC508A"
"""The device name of a 508A (and of the board with no chip, in ``b:version()``)."""
KIT_DEVICE_NAMES = {
    ATECC508A.name: DEVICE_TYPE,
    ATECC608A.name: "ECC608",
    ATECC608B.name: "ECC608",
}
"""The device name Microchip's kit firmware gives each chip model (``kit_id_from_devtype``)."""
DEVICE_INTERFACE = "TWI"
DEVICE_ADDRESS = 0xC0


class KitFirmware:
    """Answers kit-protocol lines for whatever chip ``chip_source()`` returns.

    ``handle_line`` never raises for bad input: like the firmware, it answers with a kit status
    (``03`` command not valid, ``E2`` bad parameter, ``E3`` wrong address, ``F0`` when the chip
    does not answer). ``on_command(opcode)`` is called after each command the chip answered.
    """

    def __init__(
        self,
        chip_source: Callable[[], Atecc508a | None],
        *,
        on_command: Callable[[int], None] | None = None,
        address: int = DEVICE_ADDRESS,
    ) -> None:
        self._chip_source = chip_source
        self._on_command = on_command
        self.address = address
        self.device = kp.DeviceInfo(DEVICE_TYPE, DEVICE_INTERFACE, address)
        self.last_error = kp.KitStatus.SUCCESS
        self._pending_response: bytes | None = None

    def reset(self) -> None:
        """Power cycle of the kit (replug): the buffered response and last error are lost."""
        self._pending_response = None
        self.last_error = kp.KitStatus.SUCCESS

    def _status(self, status: int, data: bytes = b"") -> bytes:
        known = status in kp.KitStatus._value2member_map_
        self.last_error = kp.KitStatus(status) if known else kp.KitStatus.FAILURE
        return kp.format_kit_reply(status, data)

    def handle_line(self, line: bytes) -> bytes:
        try:
            cmd = kp.parse_kit_command(line)
        except kp.KitCommandError as exc:
            log.debug("kit: %s", exc)
            return self._status(exc.kit_status if exc.kit_status is not None else 0x03)
        if cmd.target is kp.KitTarget.BOARD:
            return self._board(cmd)
        return self._device(cmd)

    def _board(self, cmd: kp.KitCommand) -> bytes:
        if cmd.command == "version":
            return kp.format_kit_text(f"{BOARD_NAME} {FIRMWARE_TEXT} {self._device_text()}")
        if cmd.command == "firmware":
            return kp.format_kit_text(FIRMWARE_TEXT)
        if cmd.command == "device":
            if len(cmd.data) != 1:
                return self._status(kp.KitStatus.INVALID_PARAM)
            if cmd.data[0] == 0 and self._chip_source() is not None:
                return kp.format_kit_text(self._device_text())
            return kp.format_kit_text("no device")
        if cmd.command == "get_devices":
            has_chip = self._chip_source() is not None
            return kp.format_kit_text(self._device_text() if has_chip else "no device")
        if cmd.command == "discover":
            return self._status(kp.KitStatus.SUCCESS)
        if cmd.command == "last_error":
            return kp.format_kit_reply(kp.KitStatus.SUCCESS, bytes((int(self.last_error),)))
        return self._status(kp.KitStatus.NOT_SUPPORTED)  # application(JSON)

    def _device_text(self) -> str:
        chip = self._chip_source()
        device = self.device
        if chip is not None:
            name = KIT_DEVICE_NAMES.get(chip.model.name, device.device_type)
            device = kp.DeviceInfo(name, device.interface, device.address)
        return device.to_line().decode("ascii").rstrip("\n")

    def _device(self, cmd: kp.KitCommand) -> bytes:
        chip = self._chip_source()
        if cmd.command == "physical:select":
            if len(cmd.data) != 1:
                return self._status(kp.KitStatus.INVALID_PARAM)
            if chip is None or cmd.data[0] != self.address:
                return self._status(kp.KitStatus.INVALID_ID)
            return self._status(kp.KitStatus.SUCCESS)
        if chip is None:
            return self._status(kp.KitStatus.COMM_FAIL)
        if cmd.command == "wake":
            return self._status(kp.KitStatus.SUCCESS, chip.wake())
        if cmd.command == "idle":
            chip.idle()
            return self._status(kp.KitStatus.SUCCESS)
        if cmd.command == "sleep":
            chip.sleep()
            return self._status(kp.KitStatus.SUCCESS)
        if cmd.command in ("talk", "send"):
            if not cmd.data:
                return self._status(kp.KitStatus.INVALID_SIZE)
            # on_command runs while the chip is busy (inside its execution time, timing on)
            busy = self._on_command if len(cmd.data) > 1 else None
            try:
                response = chip.execute(cmd.data, while_busy=busy)
            except CommError as exc:  # the chip did not answer (asleep, never woken)
                log.debug("kit: chip gave no answer: %s", exc)
                return self._status(kp.KitStatus.COMM_FAIL)
            if cmd.command == "send":
                self._pending_response = response
                return self._status(kp.KitStatus.SUCCESS)
            return self._status(kp.KitStatus.SUCCESS, response)
        if cmd.command == "receive":
            if self._pending_response is None:
                return self._status(kp.KitStatus.FAILURE)
            response, self._pending_response = self._pending_response, None
            return self._status(kp.KitStatus.SUCCESS, response)
        return self._status(kp.KitStatus.COMMAND_NOT_VALID)
