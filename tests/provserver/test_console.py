"""Console line format, sinks, password sources and the terminal key reader (over a pty)."""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from provserver.console import (
    CallablePasswordSource,
    Console,
    EnvPasswordSource,
    Level,
    NoPasswordSource,
    PasswordCancelled,
    TerminalKeys,
    TerminalPasswordSource,
    format_line,
)
from provserver.paths import DataDir, default_data_dir

FIXED = datetime(2015, 11, 6, 15, 51, 7)


def test_format_line_matches_app_note_example() -> None:
    assert (
        format_line(Level.INFO, "Server listening on 0.0.0.0:11235.", FIXED)
        == "[2015-11-06 15:51:07, info] Server listening on 0.0.0.0:11235."
    )
    assert format_line(Level.WARNING, "x", FIXED) == "[2015-11-06 15:51:07, warning] x"
    assert format_line(Level.ERROR, "y", FIXED) == "[2015-11-06 15:51:07, error] y"


def test_console_writes_screen_and_sinks() -> None:
    out, sink = io.StringIO(), io.StringIO()
    console = Console(out, sinks=[sink], clock=lambda: FIXED)
    console.info("Provisioning Server started.")
    console.warning("careful")
    console.plain("Press ESC to quit.")
    expected = (
        "[2015-11-06 15:51:07, info] Provisioning Server started.\n"
        "[2015-11-06 15:51:07, warning] careful\n"
        "Press ESC to quit.\n"
    )
    assert out.getvalue() == expected
    assert sink.getvalue() == expected


def test_line_during_prompt_reprints_prompt_and_prompt_not_in_sink() -> None:
    out, sink = io.StringIO(), io.StringIO()
    console = Console(out, sinks=[sink], clock=lambda: FIXED)
    console.show_prompt("Signer (01, X) password: ")
    console.info("other")
    console.end_prompt()
    assert out.getvalue() == (
        "Signer (01, X) password: \n[2015-11-06 15:51:07, info] other\nSigner (01, X) password: \n"
    )
    assert sink.getvalue() == "[2015-11-06 15:51:07, info] other\n"


def test_console_thread_safe_lines_not_interleaved() -> None:
    out = io.StringIO()
    console = Console(out, clock=lambda: FIXED)

    def worker(n: int) -> None:
        for i in range(50):
            console.info(f"worker {n} line {i}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    lines = out.getvalue().splitlines()
    assert len(lines) == 200
    assert all(line.startswith("[2015-11-06 15:51:07, info] worker ") for line in lines)


def test_password_sources() -> None:
    assert NoPasswordSource().get("p: ", 0) is None
    env = EnvPasswordSource("PW", {"PW": "secret"})
    assert env.get("p: ", 0) == "secret"
    assert env.get("p: ", 1) is None  # tried once only
    assert EnvPasswordSource("PW", {}).get("p: ", 0) is None
    assert EnvPasswordSource("PW", {}).unavailable() == (
        "environment variable PW is not set (--password-env)"
    )
    assert not EnvPasswordSource("PW", {}).is_set and env.is_set
    assert "run on a terminal or use --password-env" in NoPasswordSource().unavailable()
    asked: list[str] = []

    def answer(prompt: str) -> str:
        asked.append(prompt)
        return "pw"

    cb = CallablePasswordSource(answer)
    assert cb.get("Signer (A, B) password: ", 3) == "pw"
    assert asked == ["Signer (A, B) password: "]


def test_default_data_dir_per_platform(tmp_path: Path) -> None:
    assert default_data_dir(platform="linux", environ={"HOME": "/home/u"}) == Path(
        "/home/u/.local/share/atcaprov/provserver"
    )
    assert default_data_dir(
        platform="linux", environ={"HOME": "/home/u", "XDG_DATA_HOME": "/x/data"}
    ) == Path("/x/data/atcaprov/provserver")
    win = default_data_dir(platform="win32", environ={"PROGRAMDATA": "C:\\ProgramData"})
    assert win.parts[-2:] == ("atcaprov", "ProvisioningServer")
    data = DataDir(tmp_path / "d").ensure()
    assert data.logs.is_dir() and data.certs.is_dir() and data.signers.is_dir()
    first = data.activity_log_path(FIXED)
    assert first.name == "activity-20151106-155107.log"
    first.write_text("x")
    assert data.activity_log_path(FIXED).name == "activity-20151106-155107-1.log"


@pytest.mark.skipif(sys.platform == "win32", reason="pty is POSIX only")
def test_terminal_keys_password_without_echo_and_escape() -> None:
    import termios

    master, slave = os.openpty()
    try:
        out = io.StringIO()
        console = Console(out, clock=lambda: FIXED)
        escaped = threading.Event()
        keys = TerminalKeys(slave, console, escaped.set)
        keys.start()
        try:
            lflag = termios.tcgetattr(slave)[3]
            assert not lflag & termios.ECHO and not lflag & termios.ICANON
            assert lflag & termios.ISIG  # Ctrl-C still raises SIGINT
            result: list[str | None] = []
            reader = threading.Thread(
                target=lambda: result.append(keys.read_password("Signer (A, B) password: "))
            )
            reader.start()
            deadline = time.monotonic() + 5
            while "password: " not in out.getvalue() and time.monotonic() < deadline:
                time.sleep(0.01)
            os.write(master, b"sxx\x7f\x7fecret\r")
            reader.join(5)
            assert result == ["secret"]
            assert "secret" not in out.getvalue()
            assert not escaped.is_set()
            os.write(master, b"\x1b[A")  # an arrow key is not ESC
            time.sleep(0.3)
            assert not escaped.is_set()
            os.write(master, b"\x1b")
            assert escaped.wait(5)
        finally:
            keys.stop()
        assert termios.tcgetattr(slave)[3] & termios.ECHO  # terminal restored
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.skipif(sys.platform == "win32", reason="pty is POSIX only")
def test_terminal_keys_stop_cancels_pending_prompt() -> None:
    master, slave = os.openpty()
    try:
        console = Console(io.StringIO(), clock=lambda: FIXED)
        keys = TerminalKeys(slave, console, lambda: None)
        keys.start()
        result: list[str | None] = []
        reader = threading.Thread(target=lambda: result.append(keys.read_password("p: ")))
        reader.start()
        time.sleep(0.2)
        keys.stop()
        reader.join(5)
        assert result == [None]
    finally:
        os.close(master)
        os.close(slave)


def test_control_characters_never_reach_screen_or_sink() -> None:
    out, sink = io.StringIO(), io.StringIO()
    console = Console(out, sinks=[sink], clock=lambda: FIXED)
    console.info("id a\n[2015-11-06 15:51:07, info] forged\x1b[2J\x00 \u202eend")
    console.plain("plain\rline")
    console.show_prompt("Signer (A, B\x1b[31m) password: ")
    console.end_prompt()
    expected = (
        "[2015-11-06 15:51:07, info] id a\\n[2015-11-06 15:51:07, info] forged\\x1b[2J\\x00 "
        "\\u202eend\nplain\\rline\n"
    )
    assert sink.getvalue() == expected
    assert out.getvalue() == expected + "Signer (A, B\\x1b[31m) password: \n"


def test_lost_screen_is_dropped_and_the_sinks_go_on() -> None:
    class Hungup(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(5, "Input/output error")  # what a closed pty gives

    out, sink = Hungup(), io.StringIO()
    console = Console(out, sinks=[sink], clock=lambda: FIXED)
    console.info("SIGHUP received, stopping...")
    console.info("Server stopped.")
    console.flush()
    assert console.screen_lost
    assert sink.getvalue().splitlines() == [
        "[2015-11-06 15:51:07, info] SIGHUP received, stopping...",
        "[2015-11-06 15:51:07, info] Server stopped.",
    ]


def test_replace_sink_moves_the_early_lines() -> None:
    early, log = io.StringIO(), io.StringIO()
    console = Console(io.StringIO(), sinks=[early], clock=lambda: FIXED)
    console.info("one")
    console.replace_sink(early, log)
    console.info("two")
    assert log.getvalue().splitlines() == [
        "[2015-11-06 15:51:07, info] one",
        "[2015-11-06 15:51:07, info] two",
    ]
    assert early.getvalue().count("\n") == 1


@pytest.mark.skipif(sys.platform == "win32", reason="pty is POSIX only")
def test_escape_at_prompt_ends_its_line_before_the_stop_line() -> None:
    master, slave = os.openpty()
    try:
        out = io.StringIO()
        console = Console(out, clock=lambda: FIXED)

        # on_escape prints at once, as the server does: the prompt must be gone already
        def on_escape() -> None:
            console.info("ESC pressed, stopping...")

        keys = TerminalKeys(slave, console, on_escape)
        source = TerminalPasswordSource(keys)
        keys.start()
        try:
            errors: list[BaseException] = []

            def ask() -> None:
                try:
                    source.get("Signer (A, B) password: ", 0)
                except PasswordCancelled as exc:
                    errors.append(exc)

            reader = threading.Thread(target=ask)
            reader.start()
            deadline = time.monotonic() + 5
            while "password: " not in out.getvalue() and time.monotonic() < deadline:
                time.sleep(0.01)
            os.write(master, b"abc\x1b")
            reader.join(5)
            assert len(errors) == 1
            # the server is quitting: a second module waiting for its turn gets no prompt
            with pytest.raises(PasswordCancelled):
                source.get("Signer (C, D) password: ", 0)
        finally:
            keys.stop()
        assert out.getvalue() == (
            "Signer (A, B) password: \n[2015-11-06 15:51:07, info] ESC pressed, stopping...\n"
        )
    finally:
        os.close(master)
        os.close(slave)


def test_failing_sink_is_dropped_and_reported() -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

    out = io.StringIO()
    console = Console(out, sinks=[Broken()], clock=lambda: FIXED)
    console.info("one")
    console.info("two")
    assert out.getvalue() == (
        "[2015-11-06 15:51:07, info] one\n"
        "[2015-11-06 15:51:07, error] Activity log write failed, log stopped: "
        "[Errno 28] No space left on device\n"
        "[2015-11-06 15:51:07, info] two\n"
    )
