"""The server's console as the production-PC operator meets it, on a real pty with the real
``provserver`` command: ESC at the password prompt, ``--password-env`` with the variable unset,
SIGHUP and a closed terminal window, failed starts that leave the data folder as it was, the
start lines (version, data folder, what was found), the pem warning in the console format,
and station ids that try to forge log lines or drive the terminal."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import atcaprov
from atcaprov.protocol import CertReply
from provserver.profile import write_profile
from tests.support.server import Chain, make_chain, make_request, write_pem_signer
from tests.support.station import Station

pexpect = pytest.importorskip("pexpect")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pty is POSIX only")

CHAIN = make_chain()
OTHER = make_chain()  # a second signer key: no profile is written for it
LABEL = f"Signer ({CHAIN.key_id.hex().upper()}, Example Signer C48B)"
EXE = Path(sys.executable).parent / "provserver"
LINE = re.compile(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d, (?:info|warning|error)\] ")
FORGED = "\n[2026-01-01 00:00:00, info] Signer (X) password accepted."


def _data_with_profile(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    (data / "signers").mkdir(parents=True)
    write_profile(data / "signers" / f"{CHAIN.key_id.hex().upper()}.json", CHAIN.profile)
    return data


def _args(data: Path, *more: str, port: int = 0) -> list[str]:
    return ["--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data), *more]


@contextmanager
def _spawn(args: list[str], env: dict[str, str] | None = None) -> Iterator[Any]:
    """``provserver args`` on a new pty; everything it printed is in ``child.screen_raw``."""
    raw = io.StringIO()
    child = pexpect.spawn(
        str(EXE),
        args,
        encoding="utf-8",
        codec_errors="replace",
        timeout=20,
        dimensions=(24, 400),
        env=env,
    )
    child.logfile_read = raw
    child.screen_raw = raw
    try:
        yield child
    finally:
        if child.isalive():
            child.close(force=True)


def _port(child: Any) -> int:
    child.expect(r"Server listening on 127\.0\.0\.1:(\d+)\.")
    return int(child.match.group(1))


def _stop_with_esc(child: Any) -> None:
    child.send("\x1b")
    child.expect_exact("ESC pressed, stopping...")
    child.expect_exact("Server stopped.")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def _activity_log(data: Path) -> str:
    [log] = list((data / "logs").glob("activity-*.log"))
    return log.read_text(encoding="utf-8")


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and folder under ``root``."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


# ------------------------------------------------------------------ section 6: the console
def test_esc_at_password_prompt_stops_without_prompt_again_or_warning(tmp_path: Path) -> None:
    data = _data_with_profile(tmp_path)
    key = write_pem_signer(CHAIN, tmp_path / "keys", password=b"right-pw")
    with _spawn(_args(data, "--signers", "pem", "--pem-key", str(key))) as child:
        child.expect_exact("Found 1 signer module (back-ends: pem), 1 waiting for a password.")
        child.expect_exact(f"{LABEL} password: ")  # after the start lines: the last line
        child.send("half-typ")  # typed, then the operator changes their mind
        time.sleep(0.2)
        _stop_with_esc(child)
        screen = child.screen_raw.getvalue()
    assert screen.count(f"{LABEL} password: ") == 1
    # the prompt line ends, then the stop line stands on its own line
    assert re.search(
        re.escape(f"{LABEL} password: ") + r"\r?\n" + LINE.pattern + r"ESC pressed, stopping\.",
        screen,
    ), screen
    assert "stays locked" not in screen and "no password available" not in screen
    assert "half-typ" not in screen
    log = _activity_log(data)
    assert "stays locked" not in log and "half-typ" not in log
    assert log.rstrip().endswith("Server stopped.")


def test_password_env_unset_says_the_variable_is_not_set(tmp_path: Path) -> None:
    data = _data_with_profile(tmp_path)
    key = write_pem_signer(CHAIN, tmp_path / "keys", password=b"s3cret")
    env = {k: v for k, v in os.environ.items() if k != "ATCAPROV_TEST_UNSET_PW"}
    args = _args(
        data, "--signers", "pem", "--pem-key", str(key), "--password-env", "ATCAPROV_TEST_UNSET_PW"
    )
    with _spawn(args, env=env) as child:
        child.expect_exact(
            "--password-env: environment variable ATCAPROV_TEST_UNSET_PW is not set; "
            "signer modules that need a password stay locked."
        )
        child.expect_exact(
            f"{LABEL} stays locked: environment variable ATCAPROV_TEST_UNSET_PW is not set "
            "(--password-env)."
        )
        _stop_with_esc(child)
        screen = child.screen_raw.getvalue()
    assert "password: " not in screen  # never prompted: the variable is the source
    assert "run on a terminal" not in screen


def test_sighup_stops_cleanly_like_sigterm(tmp_path: Path) -> None:
    data = _data_with_profile(tmp_path)
    key = write_pem_signer(CHAIN, tmp_path / "keys")
    with _spawn(_args(data, "--signers", "pem", "--pem-key", str(key))) as child:
        _port(child)
        child.expect_exact(f"{LABEL} found.")
        child.kill(signal.SIGHUP)
        child.expect_exact("SIGHUP received, stopping...")
        child.expect_exact("Server stopped.")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0 and child.signalstatus is None
    log = _activity_log(data)
    assert "SIGHUP received, stopping..." in log
    assert log.rstrip().endswith("Server stopped.")
    assert not list((data / "logs").glob(".running-*"))  # the record store closed cleanly


def test_sighup_ignored_at_start_stays_ignored(tmp_path: Path) -> None:
    """``nohup provserver``: the operator asked for the server to outlive the terminal."""
    data = _data_with_profile(tmp_path)
    key = write_pem_signer(CHAIN, tmp_path / "keys")
    nohup = (
        "import os, signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    args = _args(data, "--signers", "pem", "--pem-key", str(key))
    child = pexpect.spawn(
        sys.executable,
        ["-c", nohup, str(EXE), *args],
        encoding="utf-8",
        timeout=20,
        dimensions=(24, 400),
    )
    try:
        _port(child)
        child.expect_exact(f"{LABEL} found.")
        child.kill(signal.SIGHUP)
        time.sleep(0.5)
        assert child.isalive()
        _stop_with_esc(child)
        assert "SIGHUP" not in (child.before or "")
    finally:
        if child.isalive():
            child.close(force=True)
    assert "SIGHUP" not in _activity_log(data)


def test_closing_the_terminal_window_stops_cleanly(tmp_path: Path) -> None:
    data = _data_with_profile(tmp_path)
    key = write_pem_signer(CHAIN, tmp_path / "keys")
    with _spawn(_args(data, "--signers", "pem", "--pem-key", str(key))) as child:
        _port(child)
        child.expect_exact(f"{LABEL} found.")
        proc = child.ptyproc
        proc.fileobj.close()  # the window goes away: the kernel hangs up the terminal
        deadline = time.monotonic() + 20
        while proc.isalive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not proc.isalive()
        assert proc.exitstatus == 0, (proc.exitstatus, proc.signalstatus)
    log = _activity_log(data)
    assert "SIGHUP received, stopping..." in log
    assert log.rstrip().endswith("Server stopped.")
    assert "Traceback" not in log


def test_port_in_use_leaves_the_data_folder_as_it_was(tmp_path: Path) -> None:
    data = _data_with_profile(tmp_path)
    key = write_pem_signer(CHAIN, tmp_path / "keys")
    fresh = tmp_path / "fresh"  # a data folder that does not exist yet
    before = _tree(data)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        for folder in (data, fresh):
            args = _args(folder, "--signers", "pem", "--pem-key", str(key), port=port)
            with _spawn(args) as child:
                child.expect_exact(f"Server cannot run: cannot listen on 127.0.0.1:{port}")
                child.expect_exact("Server stopped.")
                child.expect(pexpect.EOF)
                child.close()
                assert child.exitstatus == 1
    assert _tree(data) == before
    assert not fresh.exists()


@pytest.mark.parametrize(
    "bad",
    [
        ["--signers", "pem"],  # pem without --pem-key
        ["--tls-cert", "CERT"],  # TLS without its key
        ["--signers", "pem", "--pem-key", "KEY", "--tls-client-ca", "CERT"],
        ["--port", "eleven"],  # refused by the command line itself
    ],
    ids=["pem-without-key", "tls-without-key", "client-ca-without-tls", "bad-port"],
)
def test_bad_option_leaves_the_data_folder_as_it_was(tmp_path: Path, bad: list[str]) -> None:
    data = _data_with_profile(tmp_path)
    key = write_pem_signer(CHAIN, tmp_path / "keys")
    cert = tmp_path / "keys" / "signer.crt"
    fresh = tmp_path / "fresh"
    before = _tree(data)
    argv = [str(key) if a == "KEY" else str(cert) if a == "CERT" else a for a in bad]
    for folder in (data, fresh):
        with _spawn(_args(folder, *argv)) as child:
            child.expect(pexpect.EOF)
            child.close()
            assert child.exitstatus in (1, 2), child.screen_raw.getvalue()
    assert _tree(data) == before
    assert not fresh.exists()


def test_start_prints_version_data_folder_and_what_was_found(tmp_path: Path) -> None:
    data = _data_with_profile(tmp_path)
    keys = tmp_path / "keys"
    write_pem_signer(CHAIN, keys)
    other = write_pem_signer(OTHER, tmp_path / "other")
    other.rename(keys / "other.pem")
    other.with_suffix(".crt").rename(keys / "other.crt")
    with _spawn(_args(data, "--signers", "pem", "--pem-key", str(keys))) as child:
        child.expect_exact("Press ESC to quit.")
        for seed_line in (
            "Provisioning Server started.",
            "Signer Manager started.",
            "Server starting...",
        ):
            child.expect(LINE.pattern + re.escape(seed_line))
        _port(child)
        child.expect(LINE.pattern + re.escape(f"Version: atcaprov {atcaprov.__version__}."))
        child.expect(LINE.pattern + re.escape(f"Data folder: {data.resolve()}."))
        child.expect_exact("Found 2 signer modules (back-ends: pem).")
        other_label = f"Signer ({OTHER.key_id.hex().upper()}, Example Signer C48B)"
        child.expect(
            r"\[[^]]*, warning\] "
            + re.escape(f"{other_label} has no usable profile")
            + ".*no signer profile for key id "
            + OTHER.key_id.hex().upper()
        )
        _stop_with_esc(child)
        screen = child.screen_raw.getvalue()
    assert f"{LABEL} has no usable profile" not in screen
    # the new lines come after the app note's four start lines, which stay as they were
    lines = [line for line in screen.splitlines() if LINE.match(line)]
    texts = [LINE.sub("", line, count=1) for line in lines]
    assert texts[:3] == [
        "Provisioning Server started.",
        "Signer Manager started.",
        "Server starting...",
    ]
    assert texts[3].startswith("Server listening on 127.0.0.1:")
    assert texts[4:6] == [
        f"Version: atcaprov {atcaprov.__version__}.",
        f"Data folder: {data.resolve()}.",
    ]


def test_start_warns_when_no_signer_module_is_found(tmp_path: Path) -> None:
    data = _data_with_profile(tmp_path)
    empty = tmp_path / "no-keys"
    empty.mkdir()
    with _spawn(_args(data, "--signers", "pem", "--pem-key", str(empty))) as child:
        _port(child)
        child.expect(
            r"\[[^]]*, warning\] "
            + re.escape(
                "No signer module or token found (back-ends: pem); requests are "
                "refused until one is plugged in."
            )
        )
        _stop_with_esc(child)


def test_pem_warning_is_a_console_line_once(tmp_path: Path) -> None:
    data = _data_with_profile(tmp_path)
    key = write_pem_signer(CHAIN, tmp_path / "keys")
    with _spawn(_args(data, "--signers", "pem", "--pem-key", str(key))) as child:
        _port(child)
        child.expect_exact(f"{LABEL} found.")
        _stop_with_esc(child)
        screen = child.screen_raw.getvalue()
    warning = "pem signer back-end: the CA key is in a file; for development only"
    assert screen.count(warning) == 1
    [line] = [line for line in screen.splitlines() if warning in line]
    assert re.fullmatch(r"\[[^]]*, warning\] " + re.escape(warning) + r"\r?", line), line
    for line in screen.splitlines():  # every line is the console's own format
        line = line.rstrip("\r")
        assert not line or line == "Press ESC to quit." or LINE.match(line), repr(line)


def test_signer_list_prints_the_pem_warning_in_its_output(tmp_path: Path) -> None:
    key = write_pem_signer(CHAIN, tmp_path / "keys")
    result = subprocess.run(
        [
            str(EXE),
            "signer",
            "list",
            "--backend",
            "pem",
            "--pem-key",
            str(key),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stderr == ""
    assert "WARNING: pem signer back-end: the CA key is in a file; for development only\n" in (
        result.stdout
    )


# ------------------------------------------------------------------ section 5: text from outside
def _serve_requests(port: int, chain: Chain, station_ids: list[str]) -> list[object]:
    async def run() -> list[object]:
        station = await Station.connect(port)
        replies = []
        for n, station_id in enumerate(station_ids, start=1):
            replies.append(
                await station.request(make_request(chain, sn_tail=n, station_id=station_id))
            )
        await station.close()
        return replies

    return asyncio.run(run())


def test_station_ids_cannot_forge_log_lines_or_drive_the_terminal(tmp_path: Path) -> None:
    data = _data_with_profile(tmp_path)
    key = write_pem_signer(CHAIN, tmp_path / "keys")
    forged = "a" + FORGED
    clear_screen = "\x1b[2J\x00zap"
    imitation = "x (TLS: commonName=admin)"
    assert len(forged.encode()) <= 64
    with _spawn(_args(data, "--signers", "pem", "--pem-key", str(key))) as child:
        port = _port(child)
        child.expect_exact(f"{LABEL} found.")
        replies = _serve_requests(port, CHAIN, [forged, clear_screen, imitation])
        assert all(isinstance(r, CertReply) for r in replies)
        for _ in replies:
            child.expect_exact(" signed by ")
        _stop_with_esc(child)
        screen = child.screen_raw.getvalue()
    log = _activity_log(data)
    for text in (screen, log):
        assert "\x1b" not in text and "\x00" not in text
        # the forged line is not a line of its own: "password accepted." stays inside the
        # signing line, after the escaped newline, in quotes
        accepted = [line for line in text.splitlines() if "password accepted." in line]
        assert len(accepted) == 1, accepted
        assert re.search(
            r' signed by .* for station 127\.0\.0\.1:\d+ "a\\n\[2026-01-01 '
            r'00:00:00, info\] Signer \(X\) password accepted\."\.',
            accepted[0],
        )
        assert '"\\x1b[2J\\x00zap"' in text
        # an id imitating the TLS part stays inside its quotes: no TLS part is shown
        assert re.search(r'127\.0\.0\.1:\d+ "x \(TLS: commonName=admin\)"\.', text)
    assert all(LINE.match(line) for line in log.splitlines())
    # the signing log: one row per request, each station shown as on the console
    [tsv] = list((data / "logs").glob("signing-*.tsv"))
    rows = list(csv.reader(io.StringIO(tsv.read_text(encoding="utf-8")), dialect="excel-tab"))
    assert len(rows) == 4
    stations = [row[1] for row in rows[1:]]
    assert stations[0].endswith(' "a\\n[2026-01-01 00:00:00, info] Signer (X) password accepted."')
    assert stations[1].endswith(' "\\x1b[2J\\x00zap"')
    assert stations[2].endswith(' "x (TLS: commonName=admin)"')
    assert all(f"for station {station}." in log for station in stations)
    raw = tsv.read_bytes()
    assert b"\x1b" not in raw and b"\x00" not in raw and raw.count(b"\n") == 4
