"""Emulated hardware: the ATECC508A chip (:class:`Atecc508a`), which answers command packets.

The chip emulator imports nothing from the host side but :mod:`atcaprov.packet`,
:mod:`atcaprov.errors` and the chip facts of :mod:`atcaprov.datasheet`. See docs/emulator.md
for what is emulated and the choices made.
"""

from .chip import HANDLERS, Atecc508a, PowerState, check_serial
from .exceptions import DeviceAsleepError, InvalidSerialError, StateFileError

__all__ = [
    "HANDLERS",
    "Atecc508a",
    "DeviceAsleepError",
    "InvalidSerialError",
    "PowerState",
    "StateFileError",
    "check_serial",
]
