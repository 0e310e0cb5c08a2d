"""Operator keys: pipes, and a terminal put back as it was (parsing: test_terminal.py)."""

from __future__ import annotations

import os
import pty
import termios

from atcaprov.terminal import ENTER, ESC
from provclient_cdc.console import NoKeys, StreamKeys, TerminalKeys, open_keys


def test_stream_keys_over_a_pipe() -> None:
    r, w = os.pipe()
    try:
        keys = StreamKeys(r)
        assert keys.poll(0.01) is None
        os.write(w, b"\x1b[A\r")
        assert keys.poll(1.0) == ENTER
        os.write(w, b"\x1b")
        assert keys.poll(1.0) == ESC  # a lone ESC, once the sequence wait has passed
        os.write(w, b"xy")
        assert keys.poll(1.0) == "x"
        assert keys.poll(0.0) == "y"
        os.close(w)
        w = -1
        assert keys.poll(1.0) == ESC  # end of input: nobody left to press keys
        assert keys.poll(0.01) == ESC
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_stream_keys_ignore_eof() -> None:
    r, w = os.pipe()
    os.close(w)
    try:
        assert StreamKeys(r, ignore_eof=True).poll(0.01) is None
    finally:
        os.close(r)


def test_terminal_mode_set_and_restored() -> None:
    master, slave = pty.openpty()
    try:
        before = termios.tcgetattr(slave)
        keys = TerminalKeys(slave)
        during = termios.tcgetattr(slave)
        assert not during[3] & termios.ICANON and not during[3] & termios.ECHO
        assert during[3] & termios.ISIG  # Ctrl-C still interrupts
        os.write(master, b"\x1b")
        assert keys.poll(1.0) == ESC
        keys.close()
        keys.close()  # idempotent
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def test_open_keys_choices() -> None:
    r, w = os.pipe()
    try:
        with os.fdopen(os.dup(r)) as stream:
            assert isinstance(open_keys(stream, want_input=False), NoKeys)
            assert isinstance(open_keys(stream, want_input=True), StreamKeys)
        assert isinstance(open_keys(None, want_input=True), NoKeys)
    finally:
        os.close(r)
        os.close(w)
