"""Raw-mode key reading for console programs, ESC/ENTER parsing; no provisioning logic.

Shared by the server's console (ESC watch, hidden password input) and the operator client's
keys, so that both read a terminal the same way:

* :class:`KeyTerminal` owns a terminal while a program reads it key by key. On POSIX it puts
  it in key mode (no echo, no line buffering; ISIG kept, so Ctrl-C still raises SIGINT) and
  :meth:`~KeyTerminal.close` restores the saved mode; a Windows console is read through
  ``msvcrt`` (:class:`ConsoleKeyReader`), which needs no mode.
* :class:`KeyReader` reads the keys from any file descriptor (a pipe, or a terminal in key
  mode) without blocking longer than asked.
* :func:`take_keys` splits the bytes into keys. Escape sequences (arrow and function keys
  start with ESC) are recognised and dropped, so that a 0x1B byte in what a reader returns is
  a lone ESC key press. :func:`key_names` names them: ``"ENTER"``, ``"ESC"`` or one printable
  character.

Every failure to read or set the terminal is a :class:`ConsoleError`.
"""

from __future__ import annotations

import os
import select
import sys
import time
from typing import Any, Protocol

from .errors import AtcaprovError

ENTER = "ENTER"
ESC = "ESC"
ESC_BYTE = 0x1B
# How long to wait for the rest of an escape sequence before a trailing ESC counts as a key.
ESC_SEQUENCE_WAIT_S = 0.05
_READ_CHUNK = 256
_WINDOWS_POLL_S = 0.02


class ConsoleError(AtcaprovError):
    """The terminal cannot be read, or put in (or back from) the mode a console program needs."""


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------
def take_keys(buf: bytearray, *, final: bool) -> bytes:
    """Take the complete keys at the front of ``buf`` (removing them), one byte per key.

    Escape sequences (``ESC [ ... final`` and ``ESC O x``) are dropped; an ESC followed by any
    other byte is an ESC key of its own. A lone ESC (or an unfinished sequence) at the end of
    the buffer is left there unless ``final`` (no more bytes came within the escape-sequence
    wait), because it may be the start of ``ESC [ A`` and the like.
    """
    keys = bytearray()
    while buf:
        b = buf[0]
        if b == ESC_BYTE:
            if len(buf) == 1:
                if not final:
                    break
                del buf[0]
                keys.append(ESC_BYTE)
                continue
            if buf[1] in (0x5B, 0x4F):  # CSI "[" or SS3 "O": consume to the final byte
                end = next((i for i in range(2, len(buf)) if 0x40 <= buf[i] <= 0x7E), None)
                if end is None:
                    if not final:
                        break
                    del buf[:]
                    continue
                del buf[: end + 1]
                continue
            del buf[0]  # ESC followed by another key: the ESC itself
            keys.append(ESC_BYTE)
            continue
        del buf[0]
        keys.append(b)
    return bytes(keys)


def key_names(keys: bytes) -> list[str]:
    """``"ENTER"`` (CR or LF), ``"ESC"`` or the character of each printable ASCII key; other
    control bytes and non-ASCII bytes are dropped."""
    names: list[str] = []
    for b in keys:
        if b == ESC_BYTE:
            names.append(ESC)
        elif b in (0x0D, 0x0A):
            names.append(ENTER)
        elif 0x20 <= b < 0x7F:
            names.append(chr(b))
    return names


def parse_keys(buf: bytearray, *, final: bool) -> list[str]:
    """The names of the complete keys at the front of ``buf`` (see :func:`take_keys`)."""
    return key_names(take_keys(buf, final=final))


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------
class KeySource(Protocol):
    """Keys as bytes (see :func:`take_keys`) from a terminal, console or pipe."""

    @property
    def eof(self) -> bool:
        """The input has ended (pipe closed, terminal hung up)."""
        ...

    def read(self, timeout: float) -> bytes:
        """The keys that arrived within ``timeout`` seconds (``b""`` if none)."""
        ...

    def close(self) -> None:
        """Give back what the source took (terminal mode). Idempotent."""
        ...


class KeyReader:
    """Keys from a file descriptor: a pipe, or a terminal already in key mode.

    A read returns as soon as bytes arrive; a trailing ESC gets :data:`ESC_SEQUENCE_WAIT_S` for
    the rest of its sequence. At end of input ``eof`` becomes true and reads just wait.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.eof = False
        self._buf = bytearray()

    def read(self, timeout: float) -> bytes:
        if self.eof:
            time.sleep(timeout)
            return b""
        if not self._wait_readable(timeout):
            return take_keys(self._buf, final=True)
        data = self._read_chunk()
        if not data:
            self.eof = True
            return take_keys(self._buf, final=True)
        self._buf += data
        keys = take_keys(self._buf, final=False)
        if self._buf:  # an ESC that may start a sequence: give the rest a moment to arrive
            if self._wait_readable(ESC_SEQUENCE_WAIT_S):
                self._buf += self._read_chunk()
            keys += take_keys(self._buf, final=True)
        return keys

    def close(self) -> None:
        """Nothing to give back: the descriptor belongs to the caller."""

    def _wait_readable(self, timeout: float) -> bool:
        try:
            ready, _, _ = select.select([self.fd], [], [], timeout)
        except (OSError, ValueError) as exc:
            raise ConsoleError(f"cannot wait for operator input on fd {self.fd}: {exc}") from exc
        return bool(ready)

    def _read_chunk(self) -> bytes:
        try:
            return os.read(self.fd, _READ_CHUNK)
        except OSError as exc:
            raise ConsoleError(f"cannot read operator input: {exc}") from exc


class ConsoleKeyReader:
    """A Windows console through ``msvcrt`` (polled every 20 ms; it neither echoes nor buffers
    lines, and sends function and arrow keys as a two-code pair, which is dropped)."""

    def __init__(self) -> None:
        self.eof = False

    def read(self, timeout: float) -> bytes:  # pragma: no cover - Windows only
        if sys.platform != "win32":
            raise ConsoleError("reading the console needs a Windows console")
        import msvcrt

        deadline = time.monotonic() + timeout
        out = bytearray()
        while True:
            while msvcrt.kbhit():
                ch = msvcrt.getwch()
                if ch in ("\x00", "\xe0"):  # function/arrow key: a second code follows
                    msvcrt.getwch()
                    continue
                out += ch.encode("utf-8")
            if out or time.monotonic() >= deadline:
                return bytes(out)
            time.sleep(_WINDOWS_POLL_S)

    def close(self) -> None:
        """Nothing to give back."""


class KeyTerminal:
    """The terminal on ``fd`` read key by key, given back as it was by :meth:`close`.

    POSIX: key mode (no echo, non-canonical with VMIN 1 / VTIME 0, ISIG kept: Ctrl-C still
    raises SIGINT), read through :class:`KeyReader`; the saved mode is restored on close.
    Windows: the console through :class:`ConsoleKeyReader`; nothing to restore.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._saved: list[Any] | None = None
        self._reader: KeyReader | ConsoleKeyReader
        if sys.platform == "win32":  # pragma: no cover - Windows only
            self._reader = ConsoleKeyReader()
        else:
            self._enter_key_mode()
            self._reader = KeyReader(fd)

    @property
    def eof(self) -> bool:
        """The terminal went away (hang-up)."""
        return self._reader.eof

    def read(self, timeout: float) -> bytes:
        return self._reader.read(timeout)

    def close(self) -> None:
        """Restore the saved terminal mode. Idempotent."""
        saved, self._saved = self._saved, None
        if saved is None or sys.platform == "win32":
            return
        import termios

        try:
            termios.tcsetattr(self.fd, termios.TCSAFLUSH, saved)
        except termios.error as exc:
            raise ConsoleError(f"cannot restore the terminal mode on fd {self.fd}: {exc}") from exc

    def _enter_key_mode(self) -> None:
        if sys.platform == "win32":  # pragma: no cover - Windows only
            return
        import termios

        try:
            saved = termios.tcgetattr(self.fd)
            mode = termios.tcgetattr(self.fd)
            mode[3] &= ~(termios.ICANON | termios.ECHO)  # lflags; ISIG kept: Ctrl-C works
            mode[6][termios.VMIN] = 1
            mode[6][termios.VTIME] = 0
            termios.tcsetattr(self.fd, termios.TCSANOW, mode)
        except termios.error as exc:
            raise ConsoleError(f"cannot set the terminal mode on fd {self.fd}: {exc}") from exc
        self._saved = saved
