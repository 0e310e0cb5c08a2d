"""The real ``provserver`` command on a terminal (pty): start lines, password prompt without
echo (wrong, then right), a request served, ESC to quit."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from atcaprov.protocol import CertReply
from provserver.profile import write_profile
from tests.support.server import make_chain, make_request, write_pem_signer
from tests.support.station import Station

pexpect = pytest.importorskip("pexpect")
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pty is POSIX only")

CHAIN = make_chain()


def test_password_prompt_and_escape(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key = write_pem_signer(CHAIN, tmp_path / "keys", password=b"right-pw")
    (data / "signers").mkdir(parents=True)
    write_profile(data / "signers" / f"{CHAIN.key_id.hex().upper()}.json", CHAIN.profile)
    exe = Path(sys.executable).parent / "provserver"
    child = pexpect.spawn(
        str(exe),
        [
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            str(data),
            "--signers",
            "pem",
            "--pem-key",
            str(key),
        ],
        encoding="utf-8",
        timeout=20,
        dimensions=(24, 300),
    )
    try:
        child.expect_exact("Press ESC to quit.")
        child.expect(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d, info\] Provisioning Server started\.")
        child.expect_exact("Signer Manager started.")
        child.expect_exact("Server starting...")
        child.expect(r"Server listening on 127\.0\.0\.1:(\d+)\.")
        port = int(child.match.group(1))
        label = f"Signer ({CHAIN.key_id.hex().upper()}, Example Signer C48B)"
        child.expect_exact(f"{label} requires password.")
        child.expect_exact(f"{label} password: ")
        child.send("wrong-pw\r")
        child.expect_exact(f"{label} password rejected.")
        child.expect_exact(f"{label} password: ")
        child.send("right-pw\r")
        child.expect_exact(f"{label} password accepted, ready.")

        async def request() -> object:
            station = await Station.connect(port)
            reply = await station.request(make_request(CHAIN))
            await station.close()
            return reply

        assert isinstance(asyncio.run(request()), CertReply)
        child.expect_exact("signed by")
        child.send("\x1b")
        child.expect_exact("ESC pressed, stopping...")
        child.expect_exact("Server stopped.")
        child.expect(pexpect.EOF)
        screen = child.before or ""
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    log = next((data / "logs").glob("activity-*.log")).read_text(encoding="utf-8")
    assert "wrong-pw" not in log and "right-pw" not in log
    assert f"{label} password rejected." in log
    assert log.rstrip().endswith("Server stopped.")
    assert re.search(r"Provisioning Server started\.", log)
    assert screen is not None
    # the signing log and the certificates are in the data folder
    assert list((data / "logs").glob("signing-*.tsv"))
