"""The whole server with the pkcs11 back-end on a SoftHSM2 token made by the test.

The test initialises a token in a private SoftHSM2 store (temporary folder), runs
`provserver signer create --backend pkcs11` (key generated on the token, certificate object,
profile, cert info), then starts `provserver --signers pkcs11` as a subprocess and has
concurrent stations over 127.0.0.1 check every chain against the cert info's root. Also: the
PIN given through `--password-env` instead of the back-end's PIN variable, and SIGNER_LOCKED
without any PIN.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from atcaprov.certinfo import CertInfo, load_cert_info
from atcaprov.protocol import ErrorReply
from atcaprov.return_codes import ReturnCode
from provserver.cli import main
from tests.support.sim_signer import read_signing_log
from tests.support.softhsm import (
    SOFTHSM_LIB,
    init_token,
    needs_softhsm,
    reinitialize_softhsm,
    write_softhsm_conf,
)
from tests.support.station import Station, check_reply, request_for

pytestmark = [
    needs_softhsm,
    pytest.mark.skipif(sys.platform == "win32", reason="SoftHSM2 paths and SIGTERM are POSIX"),
]

TOKEN = "HSM Signer"
PIN = "Hsm-Pin-4711"
NAME = "Example HSM Signer"
STATIONS = 16
PER_STATION = 4
REPLY_TIMEOUT = 30.0


@dataclass
class Hsm:
    lib: str
    conf: Path
    data: Path
    info: CertInfo


@pytest.fixture
def hsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Hsm]:
    """A fresh token in a private SoftHSM2 store with a signer made by `signer create`."""
    assert SOFTHSM_LIB is not None
    conf = write_softhsm_conf(tmp_path / "softhsm")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    init_token(TOKEN, PIN, "271828")
    reinitialize_softhsm()  # re-read SOFTHSM2_CONF if loaded before
    data = tmp_path / "data"
    certinfo = tmp_path / "atcaprov_cert_info_1.c"
    result = CliRunner().invoke(
        main,
        ["signer", "create", "--backend", "pkcs11", "--pkcs11-lib", SOFTHSM_LIB,
         "--pkcs11-token", TOKEN, "--pkcs11-pin-env", "SETUP_PIN", "--name", NAME,
         "--root-dir", str(tmp_path / "root"), "--data-dir", str(data),
         "--certinfo-out", str(certinfo), "--device-cn", "HSM Device"],
        env={"SETUP_PIN": PIN},
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    yield Hsm(SOFTHSM_LIB, conf, data, load_cert_info(certinfo))
    monkeypatch.undo()
    reinitialize_softhsm()


class ServerProcess:
    """`python -m provserver.cli --signers pkcs11 ...`, console captured in a file."""

    def __init__(self, hsm: Hsm, console: Path, env: dict[str, str], *extra: str) -> None:
        self.console = console
        # the back-end's PIN variable only when the test gives it
        base_env = {k: v for k, v in os.environ.items() if k != "ATCAPROV_PKCS11_PIN"}
        with console.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "provserver.cli", "--host", "127.0.0.1", "--port", "0",
                 "--data-dir", str(hsm.data), "--signers", "pkcs11", "--pkcs11-lib", hsm.lib,
                 "--pkcs11-token", TOKEN, "--rescan-interval", "0.5", *extra],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env={**base_env, "SOFTHSM2_CONF": str(hsm.conf), "PYTHONUNBUFFERED": "1",
                     **env},
            )  # fmt: skip
        self.port = int(self.wait_for(r"Server listening on 127\.0\.0\.1:(\d+)\.").group(1))

    def text(self) -> str:
        return self.console.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.text())
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} on the server console:\n{self.text()}")

    def stop(self) -> str:
        """SIGTERM, wait for a clean exit; returns the console text."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
        text = self.text()
        assert code == 0, text
        assert text.rstrip().endswith("Server stopped.")
        return text


async def stations(port: int, info: CertInfo) -> int:
    """STATIONS concurrent stations x PER_STATION requests; every chain checked."""

    async def station(s: int) -> int:
        conn = await Station.connect(port, timeout=REPLY_TIMEOUT)
        try:
            for i in range(PER_STATION):
                request = request_for(info, 1 + s * PER_STATION + i, f"hsm-{s}")
                check_reply(info, request, await conn.request(request, REPLY_TIMEOUT))
        finally:
            await conn.close()
        return PER_STATION

    done = await asyncio.wait_for(asyncio.gather(*(station(s) for s in range(STATIONS))), 120)
    return sum(done)


def test_concurrent_stations_with_pin_from_backend_variable(hsm: Hsm, tmp_path: Path) -> None:
    server = ServerProcess(hsm, tmp_path / "console.txt", {"ATCAPROV_PKCS11_PIN": PIN})
    try:
        found = server.wait_for(rf"Signer \((\w+), {TOKEN}\) found\.")
        assert asyncio.run(stations(server.port, hsm.info)) == STATIONS * PER_STATION
    finally:
        text = server.stop()
    assert len(re.findall(rf"Device [0-9A-F]{{18}} signed by {re.escape(found.group(0)[:-7])}",
                          text)) == STATIONS * PER_STATION  # fmt: skip
    assert PIN not in text
    rows = read_signing_log(hsm.data)
    assert len(rows) == STATIONS * PER_STATION
    assert all(row["result"] == "signed" and "pkcs11:" in row["signer"] for row in rows)
    assert len({row["device_sn"] for row in rows}) == STATIONS * PER_STATION
    assert len(list((hsm.data / "certs").glob("*/*-device.pem"))) == STATIONS * PER_STATION


def test_locked_without_pin_then_pin_through_password_env(hsm: Hsm, tmp_path: Path) -> None:
    info = hsm.info

    async def one(port: int, n: int) -> object:
        conn = await Station.connect(port)
        try:
            return await conn.request(request_for(info, n), REPLY_TIMEOUT)
        finally:
            await conn.close()

    # No PIN at all (no back-end variable, no terminal, no --password-env): locked.
    server = ServerProcess(hsm, tmp_path / "locked.txt", {})
    try:
        server.wait_for(rf"Signer \(\w+, {TOKEN}\) stays locked: no password available")
        reply = asyncio.run(one(server.port, 1))
    finally:
        server.stop()
    assert isinstance(reply, ErrorReply) and reply.code is ReturnCode.SIGNER_LOCKED, reply

    # The PIN through the server's --password-env: unlocked by the manager, serves.
    server = ServerProcess(
        hsm, tmp_path / "unlocked.txt", {"SRV_PIN": PIN}, "--password-env", "SRV_PIN"
    )
    try:
        server.wait_for(rf"Signer \(\w+, {TOKEN}\) requires password\.")
        server.wait_for(rf"Signer \(\w+, {TOKEN}\) password accepted, ready\.")
        assert asyncio.run(stations(server.port, info)) == STATIONS * PER_STATION
    finally:
        text = server.stop()
    assert PIN not in text
