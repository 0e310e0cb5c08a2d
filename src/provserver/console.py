"""The server's console: timestamped lines, the activity log copy, ESC watch and password prompts.

Lines look exactly like the app note's example (local time, level word ``info``, ``warning``
or ``error``)::

    [2015-11-06 15:51:07, info] Server listening on 0.0.0.0:11235.

:class:`Console` writes each line to the screen and to the activity log (any number of text
sinks), from any thread. :class:`TerminalKeys` owns the terminal while the server runs: it
keeps it in key mode through :class:`atcaprov.terminal.KeyTerminal` (no echo, no line
buffering; Ctrl-C still raises SIGINT), reports a lone ESC key press, and reads passwords
without echo through the same reader thread, so that watching for ESC never fights with a
password prompt. Password sources (:class:`PasswordSource`) are
injectable: the terminal, an environment variable, or nothing (no terminal: modules stay
locked); a source says why it has no password (:meth:`PasswordSource.unavailable`), and the
terminal raises :class:`PasswordCancelled` when the operator pressed ESC at the prompt.

Every line is made printable (:func:`atcaprov.text.printable`) before it reaches the screen or
a sink: a control character in a message (from a station id, a module name, an exception
text) shows as an escape, it can neither start a forged line nor drive the terminal. Callers
still quote and escape outside values themselves (with ``escape_backslash``) so that they read
back exactly; this is the last guard. If the terminal goes away (window closed), screen writes
stop and the sinks go on.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from enum import Enum
from typing import Protocol, TextIO

from atcaprov.errors import AtcaprovError
from atcaprov.terminal import ESC_BYTE, ConsoleError, KeyTerminal
from atcaprov.text import printable


class Level(str, Enum):
    """Console level words, as printed between the brackets."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def format_line(level: Level, message: str, when: datetime) -> str:
    """``[YYYY-MM-DD HH:MM:SS, level] message`` (no newline; control characters escaped)."""
    return f"[{_stamp(when)}, {level.value}] {printable(message)}"


_last_stamp: tuple[datetime, str] = (datetime.min, "")


def _stamp(when: datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS`` of ``when``; the last second's text is kept (a busy server
    prints many lines a second, and formatting a time costs more than the rest of a line)."""
    global _last_stamp
    second = when.replace(microsecond=0)
    last = _last_stamp
    if last[0] == second and second.tzinfo is last[0].tzinfo:
        return last[1]
    text = f"{second:%Y-%m-%d %H:%M:%S}"
    _last_stamp = (second, text)
    return text


class Console:
    """Timestamped lines to the screen and to every sink (the activity log), thread-safe.

    ``clock`` gives the local time of each line (injectable for tests). A line printed while a
    password prompt is on screen is printed on its own line and the prompt is shown again.
    """

    def __init__(
        self,
        out: TextIO | None = None,
        *,
        sinks: list[TextIO] | None = None,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        self._out = sys.stdout if out is None else out
        self._sinks: list[TextIO] = list(sinks or [])
        self._clock = clock
        self._lock = threading.RLock()
        self._prompt: str | None = None
        self.screen_lost = False  # a screen write failed (terminal closed): screen dropped

    def add_sink(self, sink: TextIO) -> None:
        """Also copy every following line to ``sink`` (e.g. the activity log file)."""
        with self._lock:
            self._sinks.append(sink)

    def remove_sink(self, sink: TextIO) -> None:
        with self._lock:
            if sink in self._sinks:
                self._sinks.remove(sink)

    def replace_sink(self, old: io.StringIO, new: TextIO) -> None:
        """Copy what ``old`` (a memory buffer) collected to ``new``, and go on with ``new``.

        No line is lost or doubled between the two: the swap holds the console's lock.
        """
        with self._lock:
            new.write(old.getvalue())
            new.flush()
            self.remove_sink(old)
            self._sinks.append(new)

    def log(self, level: Level, message: str) -> str:
        """Print one timestamped line and copy it to the sinks; return the line."""
        with self._lock:
            line = format_line(level, message, self._clock())
            self._emit(line)
            return line

    def info(self, message: str) -> str:
        return self.log(Level.INFO, message)

    def warning(self, message: str) -> str:
        return self.log(Level.WARNING, message)

    def error(self, message: str) -> str:
        return self.log(Level.ERROR, message)

    def plain(self, text: str) -> None:
        """A line without timestamp (e.g. ``Press ESC to quit.``), also copied to the sinks."""
        with self._lock:
            self._emit(printable(text))

    def show_prompt(self, prompt: str) -> None:
        """Put ``prompt`` on screen (no newline) and remember it until :meth:`end_prompt`."""
        with self._lock:
            self._prompt = printable(prompt)
            self._write_screen(self._prompt)

    def end_prompt(self) -> None:
        """The prompt was answered: end its screen line."""
        with self._lock:
            if self._prompt is not None:
                self._prompt = None
                self._write_screen("\n")

    def flush(self) -> None:
        with self._lock:
            for sink in self._sinks:
                sink.flush()
            if not self.screen_lost:
                try:
                    self._out.flush()
                except (OSError, ValueError):
                    self.screen_lost = True

    def _emit(self, line: str) -> None:
        if self._prompt is not None:
            self._write_screen("\n" + line + "\n" + self._prompt)
        else:
            self._write_screen(line + "\n")
        for sink in list(self._sinks):
            try:
                sink.write(line + "\n")
                sink.flush()
            except (OSError, ValueError) as exc:  # disk full, closed file: keep the screen
                self._sinks.remove(sink)
                failure = format_line(
                    Level.ERROR, f"Activity log write failed, log stopped: {exc}", self._clock()
                )
                self._write_screen(failure + "\n")

    def _write_screen(self, text: str) -> None:
        if self.screen_lost:
            return
        try:
            self._out.write(text)
            self._out.flush()
        except (OSError, ValueError):  # the terminal was closed (EIO), stdout closed
            self.screen_lost = True


class ConsoleLogHandler(logging.Handler):
    """Forwards Python ``logging`` records (from back-ends, libraries) to a :class:`Console`."""

    def __init__(self, console: Console, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self._console = console

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            self._console.error(message)
        elif record.levelno >= logging.WARNING:
            self._console.warning(message)
        else:
            self._console.info(message)


# --------------------------------------------------------------------------------------------
# Password sources
# --------------------------------------------------------------------------------------------
class PasswordCancelled(AtcaprovError):
    """The operator cancelled the password prompt (ESC): the server is stopping."""


class PasswordSource(Protocol):
    """Where signer-module passwords come from.

    ``get(prompt, attempt)`` returns the password to try (``attempt`` counts from 0 for one
    module) or ``None`` when there is none to try (no terminal, unset variable, or already
    tried); it raises :class:`PasswordCancelled` when the operator cancelled the prompt.
    ``unavailable()`` says why there is none, for the console line. ``interactive`` tells
    whether asking again after a wrong password makes sense.
    """

    interactive: bool

    def get(self, prompt: str, attempt: int) -> str | None: ...

    def unavailable(self) -> str: ...


class NoPasswordSource:
    """No way to ask: modules that need a password stay locked."""

    interactive = False

    def get(self, prompt: str, attempt: int) -> str | None:
        return None

    def unavailable(self) -> str:
        return "no password available (run on a terminal or use --password-env)"


class EnvPasswordSource:
    """The password of every locked module is read from one environment variable (tried once)."""

    interactive = False

    def __init__(self, variable: str, environ: Mapping[str, str] | None = None) -> None:
        self.variable = variable
        self._environ = os.environ if environ is None else environ

    def get(self, prompt: str, attempt: int) -> str | None:
        if attempt > 0:
            return None
        return self._environ.get(self.variable)

    @property
    def is_set(self) -> bool:
        return self.variable in self._environ

    def unavailable(self) -> str:
        if not self.is_set:
            return f"environment variable {self.variable} is not set (--password-env)"
        return f"the password in environment variable {self.variable} was tried already"


class CallablePasswordSource:
    """Adapter for a plain ``reader(prompt) -> str | None`` (tests, GUIs)."""

    def __init__(self, reader: Callable[[str], str | None], *, interactive: bool = True) -> None:
        self._reader = reader
        self.interactive = interactive

    def get(self, prompt: str, attempt: int) -> str | None:
        return self._reader(prompt)

    def unavailable(self) -> str:
        return "no password given"


# --------------------------------------------------------------------------------------------
# Terminal: ESC watch and hidden password input through one reader thread
# --------------------------------------------------------------------------------------------
_POLL_S = 0.1


class TerminalKeys:
    """Reads keys from a terminal file descriptor in a thread.

    While no prompt is active, a lone ESC (not the start of an arrow-key sequence) calls
    ``on_escape``. :meth:`read_password` shows a prompt through ``console`` and collects a line
    without echo (Backspace erases, Ctrl-U clears, Enter ends, ESC cancels and quits). The
    terminal mode is restored by :meth:`stop`.
    """

    def __init__(self, fd: int, console: Console, on_escape: Callable[[], None]) -> None:
        self._fd = fd
        self._console = console
        self._on_escape = on_escape
        self._stop = threading.Event()
        self._escaped = threading.Event()  # ESC means quit: no prompt after it
        self._thread: threading.Thread | None = None
        self._terminal: KeyTerminal | None = None
        self._lock = threading.Lock()
        self._buffer: bytearray | None = None
        self._answer: bytes | None = None
        self._answered = threading.Event()
        self._prompt_lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Switch the terminal to no-echo key mode and start the reader thread."""
        self._terminal = KeyTerminal(self._fd)
        self._thread = threading.Thread(
            target=self._run, args=(self._terminal,), name="provserver-keys", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the reader thread, cancel a pending prompt and restore the terminal."""
        self._stop.set()
        self._finish_prompt(None)
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        terminal, self._terminal = self._terminal, None
        if terminal is not None:
            try:
                terminal.close()
            except ConsoleError:
                self._console.warning("Could not restore the terminal mode.")

    # -- password ---------------------------------------------------------------------------
    def read_password(self, prompt: str, timeout: float | None = None) -> str | None:
        """Show ``prompt`` and read one hidden line; ``None`` if cancelled, stopped or timed out.

        After ESC (the server is quitting) no prompt is shown any more: ``None`` at once.
        """
        with self._prompt_lock:
            if self._stop.is_set() or self._escaped.is_set():
                return None
            with self._lock:  # shown under the lock: an ESC ends exactly this prompt
                self._buffer = bytearray()
                self._answer = None
                self._answered.clear()
                self._console.show_prompt(prompt)
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                while not self._answered.wait(_POLL_S):
                    if self._stop.is_set():
                        break
                    if deadline is not None and time.monotonic() >= deadline:
                        break
            finally:
                self._console.end_prompt()
            with self._lock:
                answer, self._answer, self._buffer = self._answer, None, None
            if answer is None:
                return None
            return answer.decode("utf-8", errors="replace")

    # -- reader thread ----------------------------------------------------------------------
    def _run(self, terminal: KeyTerminal) -> None:
        while not self._stop.is_set():
            try:
                keys = terminal.read(_POLL_S)
            except ConsoleError:
                keys = b""
                self._stop.set()
            if terminal.eof:
                self._stop.set()  # the terminal went away (hang-up): stop watching it
            if keys:
                self._handle(keys)

    def _handle(self, keys: bytes) -> None:
        """Keys as :func:`atcaprov.terminal.take_keys` gives them: 0x1B is a lone ESC."""
        for byte in keys:
            if byte == ESC_BYTE:
                # End the prompt's screen line now, before "ESC pressed" is printed: a line
                # printed under a live prompt would show the prompt again.
                self._escaped.set()
                self._finish_prompt(None, end_line=True)
                self._on_escape()
                continue
            with self._lock:
                buffer = self._buffer
                if buffer is None:
                    continue  # typing outside a prompt is ignored
                if byte in (0x0D, 0x0A):
                    answer = bytes(buffer)
                    self._answer = answer
                    self._answered.set()
                elif byte in (0x7F, 0x08):
                    if buffer:
                        del buffer[-1]
                elif byte == 0x15:  # Ctrl-U
                    buffer.clear()
                elif byte >= 0x20:
                    buffer.append(byte)

    def _finish_prompt(self, answer: bytes | None, *, end_line: bool = False) -> None:
        with self._lock:
            if self._buffer is not None:
                self._answer = answer
                self._answered.set()
                if end_line:
                    self._console.end_prompt()


class TerminalPasswordSource:
    """Passwords typed on the terminal through :class:`TerminalKeys` (asked again when wrong)."""

    interactive = True

    def __init__(self, keys: TerminalKeys) -> None:
        self._keys = keys

    def get(self, prompt: str, attempt: int) -> str | None:
        """The typed line; :class:`PasswordCancelled` after ESC (or when the terminal stops)."""
        password = self._keys.read_password(prompt)
        if password is None:
            raise PasswordCancelled("password prompt cancelled")
        return password

    def unavailable(self) -> str:
        return "no password entered"
