"""The HAL interface every transport driver implements, and the registry that picks one by name.

A driver moves whole packets: :meth:`Hal.transact` takes a command packet (count..CRC, no I2C
word address) and returns the raw response packet (count..CRC). Wake, idle and sleep are the
chip's power tokens. Drivers register themselves with :func:`register_hal` under the name the
CLI uses (``emulator``, ``kit-cdc``, ``kit-hid``); :func:`open_hal` builds one from that name,
as python-can does with its interfaces (``open_hal``, ``hal_class`` and ``available_hals`` are
the methods of the :class:`~atcaprov.registry.Registry` ``HAL_DRIVERS``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, TypeVar

from ..closing import Closeable
from ..errors import AtcaprovError
from ..registry import Registry


class HalError(AtcaprovError):
    """Unknown driver name or a driver that cannot be opened."""


class Hal(Closeable, ABC):
    """One open connection to one chip."""

    name: ClassVar[str] = ""

    @abstractmethod
    def wake(self) -> bytes:
        """Send the wake token; return the chip's raw answer (``04 11 33 43`` when awake)."""

    @abstractmethod
    def idle(self) -> None:
        """Send the idle token (TempKey and other volatile state are kept)."""

    @abstractmethod
    def sleep(self) -> None:
        """Send the sleep token (volatile state is lost)."""

    @abstractmethod
    def transact(self, packet: bytes, exec_time_ms: float) -> bytes:
        """Send one command packet and return the raw response packet.

        ``exec_time_ms`` is the chip's max execution time for the command, for drivers that must
        wait before reading; drivers whose peer answers when done may ignore it.
        """

    def transact_during(
        self, packet: bytes, exec_time_ms: float, work: Callable[[], None]
    ) -> bytes:
        """:meth:`transact`, with ``work()`` (host work that must not raise) done while the
        chip executes: after the packet went out, before the answer is read. This default
        does the work first; a driver whose send and receive are separate overrides it."""
        work()
        return self.transact(packet, exec_time_ms)

    def close(self) -> None:
        """Release the transport. Idempotent."""


_H = TypeVar("_H", bound=Hal)

# Built-in drivers, imported on first use so that e.g. hidapi is only loaded when asked for.
HAL_DRIVERS: Registry[Hal] = Registry(
    "HAL driver",
    {
        "emulator": "atcaprov.hal.emulator",
        "kit-cdc": "atcaprov.hal.kit_cdc",
        "kit-hid": "atcaprov.hal.kit_hid",
        "fault": "atcaprov.hal.faults",
    },
    unknown=HalError,
)


def register_hal(name: str) -> Callable[[type[_H]], type[_H]]:
    """Class decorator: make a driver available to :func:`open_hal` under ``name``."""
    return HAL_DRIVERS.register(name)


#: The driver class registered under a name (importing built-ins on demand).
hal_class = HAL_DRIVERS.get
#: Open a driver by name, e.g. ``open_hal("kit-cdc", url="socket://127.0.0.1:5000")``.
open_hal = HAL_DRIVERS.open
#: Names of all drivers, built-in and registered.
available_hals = HAL_DRIVERS.names
