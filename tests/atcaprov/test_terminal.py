"""Key reading shared by the console programs: ESC/ENTER parsing, pipes, a terminal's key mode."""

from __future__ import annotations

import os
import sys

import pytest

from atcaprov.terminal import (
    ENTER,
    ESC,
    ConsoleError,
    KeyReader,
    KeyTerminal,
    parse_keys,
    take_keys,
)


@pytest.mark.parametrize(
    ("data", "final", "keys", "left"),
    [
        (b"\r", False, [ENTER], b""),
        (b"\n", False, [ENTER], b""),
        (b"v", False, ["v"], b""),
        (b"\x1b", False, [], b"\x1b"),  # may start a sequence: wait
        (b"\x1b", True, [ESC], b""),
        (b"\x1b[A", False, [], b""),  # arrow key: dropped
        (b"\x1bOP", False, [], b""),  # F1: dropped
        (b"\x1b[1;5", False, [], b"\x1b[1;5"),  # incomplete sequence: wait
        (b"\x1b[1;5", True, [], b""),  # ...dropped when nothing more comes
        (b"\x1bv", False, [ESC, "v"], b""),
        (b"a\x1b[B\r", False, ["a", ENTER], b""),
        (b"\x07\x7f", False, [], b""),  # other control bytes ignored
    ],
)
def test_parse_keys(data: bytes, final: bool, keys: list[str], left: bytes) -> None:
    buf = bytearray(data)
    assert parse_keys(buf, final=final) == keys
    assert bytes(buf) == left


def test_take_keys_keeps_control_and_non_ascii_bytes() -> None:
    # A password line needs Backspace, Ctrl-U and UTF-8 bytes; only sequences are removed.
    buf = bytearray("s\x7f\x15\x1b[Dé\r".encode())
    assert take_keys(buf, final=False) == "s\x7f\x15é\r".encode()
    assert buf == b""


def test_key_reader_over_a_pipe() -> None:
    r, w = os.pipe()
    try:
        reader = KeyReader(r)
        assert reader.read(0.01) == b""
        os.write(w, b"\x1b[Ax\x1b")
        assert reader.read(1.0) == b"x\x1b"  # the trailing ESC waited for, then a key
        os.close(w)
        w = -1
        assert reader.read(1.0) == b""
        assert reader.eof
        assert reader.read(0.01) == b""
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_key_reader_on_a_closed_fd_is_a_console_error() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(ConsoleError, match="cannot wait for operator input"):
        KeyReader(r).read(0.01)


@pytest.mark.skipif(sys.platform == "win32", reason="pty is POSIX only")
def test_key_terminal_mode_set_and_restored() -> None:
    import pty
    import termios

    master, slave = pty.openpty()
    try:
        before = termios.tcgetattr(slave)
        terminal = KeyTerminal(slave)
        lflag = termios.tcgetattr(slave)[3]
        assert not lflag & termios.ICANON and not lflag & termios.ECHO
        assert lflag & termios.ISIG  # Ctrl-C still interrupts
        os.write(master, b"\x1b")
        assert terminal.read(1.0) == b"\x1b"
        terminal.close()
        terminal.close()  # idempotent
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.skipif(sys.platform == "win32", reason="Windows reads the console, not the fd")
def test_key_terminal_needs_a_terminal() -> None:
    r, w = os.pipe()
    try:
        with pytest.raises(ConsoleError, match="cannot set the terminal mode"):
            KeyTerminal(r)
    finally:
        os.close(r)
        os.close(w)
