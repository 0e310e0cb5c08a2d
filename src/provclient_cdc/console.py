"""Operator keys without blocking: ENTER, ESC and letters, read while the client waits.

:func:`open_keys` picks the source:

* a terminal: :class:`TerminalKeys` reads it through :class:`atcaprov.terminal.KeyTerminal`
  (POSIX: key mode, keys arrive one by one, not echoed, Ctrl-C still interrupts; the saved
  mode is restored on :meth:`~Keys.close`, which the CLI calls in a ``finally`` and on
  SIGTERM/SIGHUP, so the shell is never left raw; Windows: the console via ``msvcrt``);
* a pipe or file: :class:`StreamKeys` reads the same bytes without touching any mode; end of
  input reads as ESC (nobody is left to press keys), unless ``ignore_eof``;
* nothing (``--yes`` without a terminal): :class:`NoKeys`.

:meth:`Keys.poll` waits at most ``timeout`` seconds and returns ``"ENTER"``, ``"ESC"``, one
character (``"v"``), or None. Escape sequences (arrow and function keys start with ESC) are
recognised and dropped (:mod:`atcaprov.terminal`), so only a lone ESC quits.
"""

from __future__ import annotations

import os
import time
from typing import IO

from atcaprov.errors import AtcaprovError
from atcaprov.terminal import ESC, KeyReader, KeySource, KeyTerminal, key_names


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
    """Keys from a file descriptor (a pipe or file; :class:`TerminalKeys` for a terminal)."""

    def __init__(self, fd: int, *, ignore_eof: bool = False) -> None:
        super().__init__()
        self.fd = fd
        self.ignore_eof = ignore_eof
        self._source: KeySource = self._open_source(fd)

    def _open_source(self, fd: int) -> KeySource:
        return KeyReader(fd)

    def _read(self, timeout: float) -> list[str]:
        source = self._source
        if source.eof:
            if self.ignore_eof:
                time.sleep(timeout)
                return []
            return [ESC]
        keys = key_names(source.read(timeout))
        if source.eof and not keys and not self.ignore_eof:
            return [ESC]
        return keys

    def close(self) -> None:
        self._source.close()


class TerminalKeys(StreamKeys):
    """The operator's terminal, read key by key and restored on close (see the module doc)."""

    def __init__(self, fd: int) -> None:
        super().__init__(fd)

    def _open_source(self, fd: int) -> KeySource:
        return KeyTerminal(fd)


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
        return TerminalKeys(fd)
    if not want_input:
        return NoKeys()
    return StreamKeys(fd)


class OperatorQuit(AtcaprovError):
    """The operator pressed ESC (or input ended) at a prompt or while waiting."""
