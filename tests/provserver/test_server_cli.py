"""The whole server as the CLI runs it: start sequence, activity log, pem signer + profile,
password from the environment, shutdown; the click command line; SIGTERM in a subprocess."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from atcaprov import __version__
from atcaprov.protocol import CertReply, ErrorReply, encode
from atcaprov.return_codes import ReturnCode
from provserver.cli import Settings, main, run
from provserver.console import Console
from provserver.profile import load_profile, write_profile
from provserver.records import MemoryRecordStore
from provserver.server import ProvisioningServer, ServerStartError
from tests.support.server import make_chain, make_request, write_pem_signer
from tests.support.station import Station

CHAIN = make_chain()
LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d), (info|warning|error)\] (.*)$")
REPO = Path(__file__).parents[2]


def messages(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        m = LINE.match(line)
        assert m, f"console line not in the app note format: {line!r}"
        out.append((m.group(2), m.group(3)))
    return out


async def run_in_process(
    settings: Settings, records: MemoryRecordStore, body: object
) -> tuple[str, Path]:
    out = io.StringIO()
    console = Console(out)
    stop = asyncio.Event()
    ready: asyncio.Future[ProvisioningServer] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run(settings, console=console, stop=stop, on_ready=ready.set_result, records=records)
    )
    server = await asyncio.wait_for(ready, 20)
    try:
        await body(server)  # type: ignore[operator]
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
    logs = list((settings.data_dir / "logs").glob("activity-*.log"))
    assert len(logs) == 1
    return out.getvalue(), logs[0]


async def test_start_sequence_request_and_activity_log(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key = write_pem_signer(CHAIN, tmp_path / "keys")
    (data / "signers").mkdir(parents=True)
    write_profile(data / "signers" / f"{CHAIN.key_id.hex().upper()}.json", CHAIN.profile)
    assert load_profile(data / "signers" / f"{CHAIN.key_id.hex().upper()}.json") == CHAIN.profile
    settings = Settings(
        host="127.0.0.1", port=0, data_dir=data, signers=["pem"], pem_key=key, rescan_interval=0.2
    )
    records = MemoryRecordStore()
    replies: list[object] = []

    async def body(server: ProvisioningServer) -> None:
        station = await Station.connect(server.port)
        replies.append(await station.request(make_request(CHAIN)))
        replies.append(await station.request(make_request(CHAIN, signer_key_id=b"\x01" * 20)))
        await station.close()

    screen, log_path = await run_in_process(settings, records, body)
    lines = messages(screen)
    assert [m for _, m in lines[:5]] == [
        "Provisioning Server started.",
        "Signer Manager started.",
        "Server starting...",
        lines[3][1],
        f"Version: atcaprov {__version__}.",
    ]
    assert re.fullmatch(r"Server listening on 127\.0\.0\.1:\d+\.", lines[3][1])
    assert all(level == "info" for level, _ in lines[:5])
    assert (
        "warning",
        "pem signer back-end: the CA key is in a file; for development only",
    ) in lines
    name = "Example Signer C48B"
    assert ("info", f"Signer ({CHAIN.key_id.hex().upper()}, {name}) found.") in lines
    assert lines[-1] == ("info", "Server stopped.")
    assert isinstance(replies[0], CertReply)
    assert isinstance(replies[1], ErrorReply) and replies[1].code is ReturnCode.SIGNER_NOT_FOUND
    assert len(records.signings) == 1 and len(records.refusals) == 1
    # every console line is in the activity log, the log is complete after shutdown
    assert log_path.read_text(encoding="utf-8") == screen
    assert re.fullmatch(r"activity-\d{8}-\d{6}(-\d+)?\.log", log_path.name)


async def test_password_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    key = write_pem_signer(CHAIN, tmp_path / "keys", password=b"s3cret")
    (data / "signers").mkdir(parents=True)
    write_profile(data / "signers" / "profile.json", CHAIN.profile)
    monkeypatch.setenv("SIGNER_PW", "s3cret")
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=data,
        signers=["pem"],
        pem_key=key,
        password_env="SIGNER_PW",
        rescan_interval=0.2,
    )
    records = MemoryRecordStore()
    replies: list[object] = []

    async def body(server: ProvisioningServer) -> None:
        station = await Station.connect(server.port)
        for _ in range(100):
            reply = await station.request(make_request(CHAIN))
            if not (isinstance(reply, ErrorReply) and reply.code is ReturnCode.SIGNER_LOCKED):
                break
            await asyncio.sleep(0.05)
        replies.append(reply)
        await station.close()

    screen, _ = await run_in_process(settings, records, body)
    label = f"Signer ({CHAIN.key_id.hex().upper()}, Example Signer C48B)"
    msgs = [m for _, m in messages(screen)]
    assert f"{label} requires password." in msgs
    assert f"{label} password accepted, ready." in msgs
    assert "s3cret" not in screen
    assert isinstance(replies[0], CertReply)


def test_cli_help_and_bad_backend() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for option in (
        "--host",
        "--port",
        "--data-dir",
        "--signers",
        "--tls-client-ca",
        "--idle-timeout",
        "--max-connections",
        "--rescan-interval",
    ):
        assert option in result.output
    result = runner.invoke(main, ["--signers", "sim,bogus"])
    assert result.exit_code == 2
    assert "unknown back-end 'bogus'" in result.output


def test_settings_backend_choice(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).backend_names() == ["hid"]
    s = Settings(data_dir=tmp_path, pem_key=tmp_path / "k.pem", modules=tmp_path)
    assert s.backend_names() == ["hid", "sim", "pem"]
    assert Settings(data_dir=tmp_path, signers=["pem", "pem"]).backend_names() == ["pem"]
    assert Settings().port == 11235 and Settings().host == "0.0.0.0"


SIGTERM_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from cryptography.hazmat.primitives import serialization
    from tests.support.signer_fakes import FakeBackend, FakeModule
    from provserver import cli
    from provserver.console import Console
    from provserver.records import MemoryRecordStore

    backend = FakeBackend()
    key = serialization.load_pem_private_key(Path({key!r}).read_bytes(), None)
    cert = Path({cert!r}).read_bytes()
    backend.present["m"] = FakeModule("m", key, cert,
                                      sn="0123000000000001EE", delay=1.0)
    cli.open_backends = lambda settings, console: [backend]
    settings = cli.Settings(host="127.0.0.1", port=0, data_dir=Path({data!r}), signers=["pem"],
                            rescan_interval=5)
    settings.profiles.append(Path({profiles!r}))
    asyncio.run(cli.run(settings, console=Console(sys.stdout), install_signal_handlers=True,
                        records=MemoryRecordStore()))
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_sigterm_lets_in_flight_request_finish(tmp_path: Path) -> None:
    chain = CHAIN
    key_path = write_pem_signer(CHAIN, tmp_path / "keys")
    cert_path = tmp_path / "signer.der"
    cert_path.write_bytes(chain.signer_cert)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    write_profile(profiles / "p.json", chain.profile)
    script = tmp_path / "serve.py"
    script.write_text(
        SIGTERM_SCRIPT.format(
            repo=str(REPO),
            data=str(tmp_path / "data"),
            profiles=str(profiles),
            key=str(key_path),
            cert=str(cert_path),
        )
    )
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = None
        deadline = time.monotonic() + 30
        seen: list[str] = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            m = re.search(r"Server listening on 127\.0\.0\.1:(\d+)\.", line)
            if m:
                port = int(m.group(1))
                break
        assert port is not None, "".join(seen)

        async def client() -> object:
            station = await Station.connect(port)
            await station.send(encode(make_request(chain)))
            await asyncio.sleep(0.4)  # the request is in the slow module now
            proc.send_signal(signal.SIGTERM)
            reply = await station.reply(timeout=15)
            await station.close()
            return reply

        reply = asyncio.run(client())
        assert isinstance(reply, CertReply)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, rest
        text = "".join(seen) + rest
        assert "SIGTERM received, stopping..." in text
        assert "Waiting for 1 request(s) in progress..." in text
        assert text.rstrip().endswith("Server stopped.")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def test_port_in_use_is_reported(tmp_path: Path) -> None:
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    out = io.StringIO()
    settings = Settings(
        host="127.0.0.1",
        port=port,
        data_dir=tmp_path / "data",
        signers=["pem"],
        pem_key=write_pem_signer(CHAIN, tmp_path / "keys"),
    )
    try:
        with pytest.raises(ServerStartError):
            await asyncio.wait_for(
                run(settings, console=Console(out), records=MemoryRecordStore()), 20
            )
    finally:
        blocker.close()
        await blocker.wait_closed()
    msgs = messages(out.getvalue())
    assert ("error", f"Server cannot run: cannot listen on 127.0.0.1:{port}: ") in [
        (lvl, m[: len(f"Server cannot run: cannot listen on 127.0.0.1:{port}: ")])
        for lvl, m in msgs
    ]
    assert msgs[-1] == ("info", "Server stopped.")
    assert not (tmp_path / "data").exists()  # a failed start writes nothing
