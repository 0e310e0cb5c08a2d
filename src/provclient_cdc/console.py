"""Operator keys without blocking: ENTER, ESC and letters, read while the client waits.

:func:`open_keys` picks the source:

* a terminal on POSIX: :class:`TerminalKeys` puts it in cbreak mode (keys arrive one by one,
  not echoed; Ctrl-C still interrupts) and restores the saved mode on :meth:`~Keys.close`
  (the CLI closes it in a ``finally`` and on SIGTERM/SIGHUP, so the shell is never left raw);
* a Windows console: :class:`WindowsKeys` (``msvcrt``);
* a pipe or file: :class:`StreamKeys` reads the same bytes without touching any mode; end of
  input reads as ESC (nobody is left to press keys), unless ``ignore_eof``;
* nothing (``--yes`` without a terminal): :class:`NoKeys`.

:meth:`Keys.poll` waits at most ``timeout`` seconds and returns ``"ENTER"``, ``"ESC"``, one
character (``"v"``), or None. Escape sequences (arrow and function keys start with ESC) are
recognised and dropped, so only a lone ESC quits.
"""

from __future__ import annotations

import os
import select
import sys
import time
from typing import IO, Any

from atcaprov.errors import AtcaprovError

ENTER = "ENTER"
ESC = "ESC"
_ESC_SEQUENCE_WAIT_S = 0.03


class ConsoleError(AtcaprovError):
    """The operator terminal cannot be read or its mode cannot be set."""


def parse_keys(buf: bytearray, *, final: bool) -> list[str]:
    """Take the complete keys at the front of ``buf`` (removing them) and return their names.

    A lone ESC at the end of the buffer is left there unless ``final`` (no more bytes came
    within the escape-sequence wait), because it may be the start of ``ESC [ A`` and the like.
    """
    keys: list[str] = []
    while buf:
        b = buf[0]
        if b == 0x1B:
            if len(buf) == 1:
                if not final:
                    break
                del buf[0]
                keys.append(ESC)
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
            keys.append(ESC)
            continue
        del buf[0]
        if b in (0x0D, 0x0A):
            keys.append(ENTER)
        elif 0x20 <= b < 0x7F:
            keys.append(chr(b))
        # other control bytes are ignored
    return keys


class Keys:
    """Base: a source of keys."""

    def __init__(self) -> None:
        self._pending: list[str] = []

    def poll(self, timeout: float) -> str | None:
        """The next key within ``timeout`` seconds, or None."""
        if self._pending:
            return self._pending.pop(0)
        keys = self._read(max(timeout, 0.0))
        if not keys:
            return None
        self._pending.extend(keys[1:])
        return keys[0]

    def _read(self, timeout: float) -> list[str]:
        time.sleep(timeout)
        return []

    def close(self) -> None:
        """Give the terminal back as it was. Idempotent."""

    def __enter__(self) -> Keys:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NoKeys(Keys):
    """No operator input: polls just wait."""


class StreamKeys(Keys):
    """Keys from a file descriptor (pipe, or a terminal already set up by :class:`TerminalKeys`)."""

    def __init__(self, fd: int, *, ignore_eof: bool = False) -> None:
        super().__init__()
        self.fd = fd
        self.ignore_eof = ignore_eof
        self._buf = bytearray()
        self._eof = False

    def _wait_readable(self, timeout: float) -> bool:
        try:
            ready, _, _ = select.select([self.fd], [], [], timeout)
        except (OSError, ValueError) as exc:
            raise ConsoleError(f"cannot wait for operator input on fd {self.fd}: {exc}") from exc
        return bool(ready)

    def _read(self, timeout: float) -> list[str]:
        if self._eof:
            if self.ignore_eof:
                time.sleep(timeout)
                return []
            return [ESC]
        if not self._wait_readable(timeout):
            return parse_keys(self._buf, final=True)
        try:
            data = os.read(self.fd, 256)
        except OSError as exc:
            raise ConsoleError(f"cannot read operator input: {exc}") from exc
        if not data:
            self._eof = True
            keys = parse_keys(self._buf, final=True)
            return keys or ([] if self.ignore_eof else [ESC])
        self._buf += data
        keys = parse_keys(self._buf, final=False)
        if self._buf:  # an ESC that may start a sequence: give the rest a moment to arrive
            if self._wait_readable(_ESC_SEQUENCE_WAIT_S):
                try:
                    self._buf += os.read(self.fd, 256)
                except OSError as exc:
                    raise ConsoleError(f"cannot read operator input: {exc}") from exc
            keys += parse_keys(self._buf, final=True)
        return keys


class TerminalKeys(StreamKeys):
    """A POSIX terminal in cbreak mode (no echo, no line buffering), restored on close."""

    def __init__(self, fd: int) -> None:
        super().__init__(fd)
        import termios
        import tty

        try:
            self._saved: list[Any] | None = termios.tcgetattr(fd)
            tty.setcbreak(fd, termios.TCSANOW)
        except termios.error as exc:
            raise ConsoleError(f"cannot set the terminal mode on fd {fd}: {exc}") from exc

    def close(self) -> None:
        saved, self._saved = self._saved, None
        if saved is None:
            return
        import termios

        try:
            termios.tcsetattr(self.fd, termios.TCSAFLUSH, saved)
        except termios.error as exc:
            raise ConsoleError(f"cannot restore the terminal mode on fd {self.fd}: {exc}") from exc


class WindowsKeys(Keys):
    """A Windows console through ``msvcrt`` (polled every 20 ms)."""

    def _read(self, timeout: float) -> list[str]:  # pragma: no cover - Windows only
        if sys.platform != "win32":
            raise ConsoleError("WindowsKeys needs a Windows console")
        import msvcrt

        deadline = time.monotonic() + timeout
        while True:
            if msvcrt.kbhit():
                ch = msvcrt.getwch()
                if ch in ("\x00", "\xe0"):  # function/arrow key: a second code follows
                    msvcrt.getwch()
                    continue
                if ch == "\x1b":
                    return [ESC]
                if ch in ("\r", "\n"):
                    return [ENTER]
                return [ch] if ch.isprintable() else []
            if time.monotonic() >= deadline:
                return []
            time.sleep(0.02)


def open_keys(stream: IO[str] | None, *, want_input: bool) -> Keys:
    """The key source for ``stream`` (normally sys.stdin).

    ``want_input`` False (``--yes``): a terminal is still read (ESC quits), anything else is
    ignored; True: a pipe is read too and its end means ESC.
    """
    if stream is None:
        return NoKeys()
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return NoKeys()
    if os.isatty(fd):
        if sys.platform == "win32":  # pragma: no cover - Windows only
            return WindowsKeys()
        return TerminalKeys(fd)
    if not want_input:
        return NoKeys()
    return StreamKeys(fd)


class OperatorQuit(AtcaprovError):
    """The operator pressed ESC (or input ended) at a prompt or while waiting."""
