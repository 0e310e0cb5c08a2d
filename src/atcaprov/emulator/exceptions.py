"""Errors the emulator raises to its host-side caller (not chip status bytes).

A chip status (0x03, 0x0F, ...) is an answer packet, not an exception; these are the cases
where a real chip would give no answer at all, or where the caller misused the Python API.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import AtcaprovError, AtcaStatus, BadParamError, CommError


class DeviceAsleepError(CommError):
    """A command reached a chip that is asleep or idle (never woken, or the watchdog fired).

    A real chip does not answer; the host sees no response (``RX_NO_RESPONSE``).
    """

    atca_status = AtcaStatus.RX_NO_RESPONSE


class InvalidSerialError(BadParamError):
    """A serial number that no 508A could have (length, SN[0:2] = 01 23, SN[8] = EE)."""


class StateFileError(AtcaprovError):
    """A saved part could not be read: names the file and the field at fault."""

    def __init__(self, path: Path | str, field: str, problem: str) -> None:
        self.path = Path(path)
        self.field = field
        self.problem = problem
        super().__init__(f"{self.path}: field '{field}': {problem}")
