"""``atcaprov sim board`` started as a real program for a test, up to its ``Board ready`` line."""

from __future__ import annotations

import subprocess
import sys
import time

READY_TIMEOUT_S = 20.0


def start_board_cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m atcaprov.cli sim board ARGS`` (stdin, stdout and stderr piped); return
    the process and the URL of its first ``Board ready:`` line (AssertionError if none comes
    within :data:`READY_TIMEOUT_S`)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "atcaprov.cli", "sim", "board", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("Board ready: "):
            return proc, line.removeprefix("Board ready: ").strip()
    proc.kill()
    raise AssertionError(
        f"no 'Board ready' line; stderr: {proc.stderr.read() if proc.stderr else ''}"
    )
