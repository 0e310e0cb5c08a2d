"""``emulator``: an in-process emulated ATECC508A behind the HAL interface.

``open_hal("emulator")`` makes a blank chip; ``chip=`` takes an
:class:`~atcaprov.emulator.Atecc508a` object or the path of a part saved with
``Atecc508a.save``. With ``persist=True`` a chip loaded from a path is saved back there on
:meth:`close` (and on :meth:`save`), so a sequence of runs can work on the same part.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .base import Hal, HalError, register_hal

if TYPE_CHECKING:
    from ..emulator import Atecc508a


@register_hal("emulator")
class EmulatorHal(Hal):
    """Packets go straight to ``chip.execute``; wake/idle/sleep to the chip's methods."""

    def __init__(
        self,
        chip: Atecc508a | str | os.PathLike[str] | None = None,
        *,
        persist: bool = False,
        timing_scale: float = 0.0,
    ) -> None:
        from ..emulator import Atecc508a

        self.path: Path | None = None
        if chip is None:
            self.chip = Atecc508a(timing_scale=timing_scale)
        elif isinstance(chip, (str, os.PathLike)):
            self.path = Path(chip)
            if not self.path.is_file():
                raise HalError(f"emulator: no saved chip at {self.path}")
            self.chip = Atecc508a.load(self.path)
        elif isinstance(chip, Atecc508a):
            self.chip = chip
        else:
            raise HalError(
                f"emulator: chip must be an Atecc508a or a path, got {type(chip).__name__}"
            )
        if persist and self.path is None:
            raise HalError("emulator: persist=True needs chip= given as a path")
        self.persist = persist
        self._closed = False

    def __repr__(self) -> str:
        where = f"path={str(self.path)!r}" if self.path else "in memory"
        return f"EmulatorHal({where})"

    def _check_open(self) -> None:
        if self._closed:
            raise HalError("emulator HAL is closed")

    def wake(self) -> bytes:
        self._check_open()
        return self.chip.wake()

    def idle(self) -> None:
        self._check_open()
        self.chip.idle()

    def sleep(self) -> None:
        self._check_open()
        self.chip.sleep()

    def power_off(self) -> None:
        """Cut the chip's power (what unplugging the board does): volatile state is lost."""
        self.chip.power_off()

    def transact(self, packet: bytes, exec_time_ms: float) -> bytes:
        self._check_open()
        return self.chip.execute(packet)

    def save(self) -> None:
        """Save the chip back to the path it was loaded from."""
        if self.path is None:
            raise HalError("emulator: chip was not loaded from a path; nothing to save to")
        self.chip.save(self.path)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.persist:
            self.save()
