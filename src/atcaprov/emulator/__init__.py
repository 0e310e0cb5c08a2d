"""Emulated hardware: the ATECC508A, ATECC608A and ATECC608B chips, which answer command packets.

:class:`Atecc508a` is the 508A and the base of :class:`Atecc608a` and :class:`Atecc608b`, which
share its API. ``Atecc508a.load(path)`` returns the part a file holds, whatever its model;
:func:`chip_class` maps a model name (``"atecc608b"``) to its class. The chip emulator imports
nothing from the host side but :mod:`atcaprov.packet`, :mod:`atcaprov.errors` and the chip facts
of :mod:`atcaprov.datasheet`. See docs/emulator.md for what is emulated and the choices made.
"""

from .chip import HANDLERS, Atecc508a, PowerState, check_serial, chip_class
from .chip608 import HANDLERS_608, Atecc608a, Atecc608b
from .exceptions import DeviceAsleepError, InvalidSerialError, StateFileError

CHIP_TYPES = ("atecc508a", "atecc608a", "atecc608b")
"""The chip types the emulator can be, as the command line spells them."""

__all__ = [
    "CHIP_TYPES",
    "HANDLERS",
    "HANDLERS_608",
    "Atecc508a",
    "Atecc608a",
    "Atecc608b",
    "DeviceAsleepError",
    "InvalidSerialError",
    "PowerState",
    "StateFileError",
    "check_serial",
    "chip_class",
]
