"""The README's five-minute tour, run as written in a scratch folder: step 1's commands work
there and leave their files there, and step 2's console lines are what the server prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell and pty")

README = Path(__file__).resolve().parents[1] / "README.md"
BIN = Path(sys.executable).parent
STAMP = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d, (info|warning|error)\] ")


def _section(text: str, start: str) -> str:
    return text[text.index(start) :]


def _first_block(text: str) -> str:
    match = re.search(r"```(?:sh|console)\n(.*?)```", text, re.S)
    assert match, text[:200]
    return match.group(1)


def _normalised(line: str) -> str:
    """A console line without what changes from run to run (time, serial numbers, port)."""
    line = STAMP.sub(lambda m: f"[{m.group(1)}] ", line)
    line = re.sub(r"\b0123[0-9A-F]{14}\b", "SN", line)
    return re.sub(r":\d{2,5}\b", ":PORT", line)


def test_tour_runs_in_its_scratch_folder_and_shows_the_real_console(tmp_path: Path) -> None:
    readme = README.read_text(encoding="utf-8")
    tour = _section(readme, "## Five-minute tour")
    setup = _first_block(tour)
    assert "mkdir -p /tmp/atcaprov-tour && cd /tmp/atcaprov-tour" in setup
    step1 = _first_block(_section(tour, "**1. Set up a signer**"))
    step2 = _first_block(_section(tour, "**2. Run the server**")).splitlines()
    assert step2[0].startswith("$ provserver ")

    scratch = tmp_path / "tour"
    scratch.mkdir()
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    done = subprocess.run(
        ["bash", "-euc", step1], cwd=scratch, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert {p.name for p in scratch.iterdir()} == {
        "atcaprov_cert_info_0.c",
        "modules",
        "root",
        "server-data",
    }

    # step 2 as written, on a free loopback port instead of 0.0.0.0:11235
    argv = [*step2[0][2:].split(), "--host", "127.0.0.1", "--port", "0"]
    child = pexpect.spawn(
        argv[0],
        argv[1:],
        cwd=str(scratch),
        env=env,
        encoding="utf-8",
        timeout=30,
        dimensions=(24, 400),
    )
    try:
        child.expect(r"Found \d+ signer module[^\r\n]*\r?\n")
        screen = (child.before or "") + (child.after or "")
        child.send("\x1b")
        child.expect_exact("Server stopped.")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    shown = [_normalised(line) for line in step2[1:]]
    real = [_normalised(line.rstrip("\r")) for line in screen.splitlines() if line.strip()]
    real = [line.replace(f"{scratch.resolve()}/", "/tmp/atcaprov-tour/") for line in real]
    real = [line.replace("127.0.0.1:PORT", "0.0.0.0:PORT") for line in real]
    assert shown[: len(real)] == real
