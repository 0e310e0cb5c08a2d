"""examples/custom_client.py against a real provserver (subprocess) with a sim signer module."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _provserver(*args: str) -> list[str]:
    return [str(BIN / "provserver"), *args]


@pytest.mark.slow
def test_custom_client_provisions_emulated_chips(tmp_path: Path) -> None:
    data = tmp_path / "data"
    certinfo = tmp_path / "atcaprov_cert_info_0.c"
    subprocess.run(
        _provserver(
            "signer",
            "create",
            "--backend",
            "sim",
            "--name",
            "Example Signer",
            "--root-dir",
            str(tmp_path / "root"),
            "--data-dir",
            str(data),
            "--modules",
            str(tmp_path / "modules"),
            "--certinfo-out",
            str(certinfo),
        ),
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    server = subprocess.Popen(
        _provserver(
            "--signers",
            "sim",
            "--modules",
            str(tmp_path / "modules"),
            "--data-dir",
            str(data),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            m = re.search(r"Server listening on 127\.0\.0\.1:(\d+)\.", line)
            if m:
                port = int(m.group(1))
        assert port is not None, "server did not start"
        out = subprocess.run(
            [
                sys.executable,
                str(ROOT / "examples" / "custom_client.py"),
                "--certinfo",
                str(certinfo),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--emulated",
                "2",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.count("Validating certificates...done") == 2
        assert out.stdout.count("\nOK ") + out.stdout.startswith("OK ") == 2
        assert "Locking slots.............skipped" in out.stdout
    finally:
        server.terminate()
        server.wait(timeout=30)
    rows = next((data / "logs").glob("signing-*.tsv")).read_text().splitlines()
    assert len(rows) == 1 + 2  # header + one row per device
    assert all("\tsigned\t" in row for row in rows[1:])


def test_custom_client_is_short() -> None:
    lines = (ROOT / "examples" / "custom_client.py").read_text().splitlines()
    assert len(lines) < 150
