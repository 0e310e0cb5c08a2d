"""The whole server with emulated signer modules made by `provserver signer create --backend sim`.

Real parts end to end, over 127.0.0.1: the set-up tool writes the module, profile and cert info;
the server (in-process, :func:`provserver.cli.run`, with the file record store) signs; stations
check every chain with ``cryptography`` against the root from the cert info. Covered: many
concurrent stations (signing log rows and certificate files complete), hot plug of a second
module of the same signer while serving (a copy of the module file: the same chip, the same
key, so the two form a pool) and removal of one while serving without a failed request, and a
password-protected module (locked without a password source, serving with ``--password-env``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from atcaprov.certinfo import CertInfo
from atcaprov.protocol import CertReply, ErrorReply
from atcaprov.return_codes import ReturnCode
from provserver.cli import Settings, run
from provserver.console import Console
from provserver.ledger.sqlite import SqliteLedger
from provserver.server import ProvisioningServer
from tests.support.cert_files import cert_files
from tests.support.certs import der_to_pem
from tests.support.sim_signer import NAME, SimSigner, make_sim_signer, read_signing_log, serial_hex
from tests.support.station import Station, check_reply, request_for

STATION_TIMEOUT = 30.0  # per reply: generous, the machine is shared


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def sim_settings(signer: SimSigner, **changes: object) -> Settings:
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=signer.data,
        signers=["sim"],
        modules=signer.modules,
        rescan_interval=0.2,
    )
    for name, value in changes.items():
        setattr(settings, name, value)
    return settings


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[ProvisioningServer, io.StringIO]]:
    """The server of `provserver` run in-process (file record store); yields it and its console."""
    out = io.StringIO()
    stop = asyncio.Event()
    ready: asyncio.Future[ProvisioningServer] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run(settings, console=Console(out), stop=stop, on_ready=ready.set_result)
    )
    waiting: set[asyncio.Future[None] | asyncio.Future[ProvisioningServer]] = {task, ready}
    done, _ = await asyncio.wait(waiting, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        stop.set()
        if task in done:
            task.result()  # raises the start-up error
        raise AssertionError(f"server not ready within 30 s:\n{out.getvalue()}")
    try:
        yield ready.result(), out
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def wait_for_condition(
    what: str, check: Callable[[], object], timeout: float, out: io.StringIO
) -> None:
    """Poll ``check`` every 50 ms until it is true; fail after ``timeout`` s with the console."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; console:\n{out.getvalue()}")
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------------------------------
# (a) many stations at once
# --------------------------------------------------------------------------------------------
STATIONS = 24
PER_STATION = 3


async def test_concurrent_stations_get_valid_certificates(tmp_path: Path) -> None:
    signer = make_sim_signer(tmp_path)
    info = signer.info
    requests = {
        (s, i): request_for(info, 1 + s * PER_STATION + i, f"line-{s}")
        for s in range(STATIONS)
        for i in range(PER_STATION)
    }
    replies: dict[tuple[int, int], object] = {}

    async def station(s: int) -> None:
        conn = await Station.connect(server.port, timeout=STATION_TIMEOUT)
        try:
            for i in range(PER_STATION):
                replies[(s, i)] = await conn.request(requests[(s, i)], timeout=STATION_TIMEOUT)
        finally:
            await conn.close()

    async with serving(sim_settings(signer)) as (server, out):
        await asyncio.wait_for(asyncio.gather(*(station(s) for s in range(STATIONS))), 120)
    # after shutdown: the store is closed (copies synced, crash marker gone)

    total = STATIONS * PER_STATION
    assert len(replies) == total
    received: dict[str, x509.Certificate] = {}
    for key, request in requests.items():
        device = check_reply(info, request, replies[key])
        received[request.device_serial_number.hex().upper()] = device
    assert len(received) == total  # one device per request

    screen = out.getvalue()
    assert len(re.findall(r"\] Device [0-9A-F]{18} signed by Signer \(", screen)) == total
    rows = read_signing_log(signer.data)
    assert len(rows) == total
    assert all(row["result"] == "signed" for row in rows)
    assert {row["device_sn"] for row in rows} == set(received)
    for row in rows:
        assert row["cert_sn"] == serial_hex(received[row["device_sn"]])
        n = int(row["device_sn"][12:16], 16)  # config_zone(n): n in SN bytes 6-7
        assert row["station"].endswith(f' "line-{(n - 1) // PER_STATION}"')
    # certs folder: one device and one signer file per device, equal to what the station got
    first = replies[(0, 0)]
    assert isinstance(first, CertReply)
    signer_pem = der_to_pem(first.signer_cert)
    for sn, device in received.items():
        (device_file,) = cert_files(signer.data / "certs", sn, "device")
        (signer_file,) = cert_files(signer.data / "certs", sn, "signer")
        assert device_file.read_bytes() == device.public_bytes(serialization.Encoding.PEM)
        assert signer_file.read_bytes() == signer_pem
    # the ledger: one issuance per device, the certificate the station got
    with SqliteLedger(signer.data / "ledger.sqlite3", read_only=True) as ledger:
        issued = {i.device_sn: i.device_cert for i in ledger.iter_issuances()}
    assert issued == {
        sn: device.public_bytes(serialization.Encoding.DER) for sn, device in received.items()
    }
    assert not list((signer.data / "logs").glob(".running-*"))


# --------------------------------------------------------------------------------------------
# (b) hot plug of a pool member while serving
# --------------------------------------------------------------------------------------------
class Load:
    """Stations sending requests back to back until stopped (bounded in count and time)."""

    def __init__(self, info: CertInfo, port: int, stations: int, per_station: int) -> None:
        self.info, self.port = info, port
        self.stations, self.per_station = stations, per_station
        self.stop = asyncio.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._station(s)) for s in range(self.stations)]

    async def _station(self, s: int) -> None:
        conn = await Station.connect(self.port, timeout=STATION_TIMEOUT)
        try:
            for i in range(self.per_station):
                if self.stop.is_set():
                    return
                request = request_for(self.info, 1 + s * self.per_station + i, f"hot-{s}")
                reply = await conn.request(request, timeout=STATION_TIMEOUT)
                try:
                    check_reply(self.info, request, reply)
                except AssertionError as exc:
                    self.failures.append(f"station {s} request {i}: {exc}")
                    return
                self.ok += 1
        finally:
            await conn.close()

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 60)


def rows_by(data: Path, module: Path) -> list[int]:
    """Indexes of the signing log rows signed by the module file ``module``."""
    return [i for i, row in enumerate(read_signing_log(data)) if f"sim:{module})" in row["signer"]]


async def test_hot_plug_of_a_pool_member_while_serving(tmp_path: Path) -> None:
    signer = make_sim_signer(tmp_path)
    first = signer.module
    clone = signer.modules / "signer-clone.json"
    async with serving(sim_settings(signer)) as (server, out):
        load = Load(signer.info, server.port, stations=6, per_station=400)
        load.start()
        try:
            await wait_for_condition("first signings", lambda: load.ok >= 12, 30, out)
            # Plug a second module of the same signer: a copy of the chip file (same chip, same
            # key). Copied under another name first so a scan never sees half a file.
            shutil.copyfile(first, signer.modules / ".clone.tmp")
            os.replace(signer.modules / ".clone.tmp", clone)
            await wait_for_condition(
                "the clone found", lambda: out.getvalue().count(f", {NAME}) found.") == 2, 10, out
            )
            # Both members of the pool sign while the stations keep coming.
            await wait_for_condition(
                "signings by both modules after the plug",
                lambda: (
                    (c := rows_by(signer.data, clone))
                    and len([i for i in rows_by(signer.data, first) if i > c[0]]) >= 3
                    and len(c) >= 3
                ),
                20,
                out,
            )
            # Unplug the first module while serving.
            first.unlink()
            removed_line = f", {NAME}) removed."
            dropped_line = f"sim module at {first} stopped answering"
            await wait_for_condition(
                "the removal logged",
                lambda: removed_line in out.getvalue() or dropped_line in out.getvalue(),
                10,
                out,
            )
            await asyncio.sleep(1.0)  # requests the first module was signing are recorded now
            after = len(read_signing_log(signer.data))
            await wait_for_condition(
                "signings after the removal",
                lambda: len(read_signing_log(signer.data)) >= after + 10,
                20,
                out,
            )
        finally:
            await load.finish()
    assert load.failures == []
    rows = read_signing_log(signer.data)
    assert len(rows) == load.ok and all(row["result"] == "signed" for row in rows)
    by_first, by_clone = rows_by(signer.data, first), rows_by(signer.data, clone)
    assert len(by_first) + len(by_clone) == len(rows)
    assert by_first and by_clone
    assert all(i < after for i in by_first), "the removed module signed after its removal"
    screen = out.getvalue()
    assert screen.count(f", {NAME}) found.") == 2
    assert "refused" not in screen and "error]" not in screen


async def test_module_unplugged_while_in_use_is_logged_as_removed(tmp_path: Path) -> None:
    """docs/server.md: the server prints `Signer (SN, name) removed.` when a module goes.

    Under load the first request to reach an unplugged module fails over to its pool partner
    and logs `unavailable, dropped: ...`; the scan that then finds the module gone must still
    report it as removed (it once did not: the drop made the manager forget the location).
    """
    signer = make_sim_signer(tmp_path)
    first = signer.module
    clone = signer.modules / "signer-clone.json"
    shutil.copyfile(first, clone)
    # a long scan interval: the requests below reach the unplugged module before the next scan
    async with serving(sim_settings(signer, rescan_interval=2.0)) as (server, out):
        await wait_for_condition(
            "both modules", lambda: out.getvalue().count(f", {NAME}) found.") == 2, 10, out
        )
        first.unlink()
        station = await Station.connect(server.port)
        for n in range(1, 5):  # least-used first: the unplugged module is tried at once
            request = request_for(signer.info, n)
            check_reply(signer.info, request, await station.request(request, STATION_TIMEOUT))
        await station.close()
        assert f"sim module at {first} stopped answering" in out.getvalue()
        await wait_for_condition(
            "the removal line", lambda: f", {NAME}) removed." in out.getvalue(), 4.5, out
        )


# --------------------------------------------------------------------------------------------
# (c) a password-protected module
# --------------------------------------------------------------------------------------------
async def test_password_protected_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    signer = make_sim_signer(tmp_path, "--password-env", "SETUP_PW", env={"SETUP_PW": "k3y pw"})
    info = signer.info
    label = f"Signer ({signer.module.stem.removeprefix('signer-')}, {NAME})"

    # No password source (not a terminal, no --password-env): the module stays locked.
    async with serving(sim_settings(signer)) as (server, out):
        station = await Station.connect(server.port)
        reply = await station.request(request_for(info, 1), timeout=STATION_TIMEOUT)
        await station.close()
    assert isinstance(reply, ErrorReply) and reply.code is ReturnCode.SIGNER_LOCKED, reply
    screen = out.getvalue()
    assert f"{label} requires password." in screen
    assert f"{label} stays locked: no password available" in screen
    (row,) = read_signing_log(signer.data)
    assert row["result"] == "refused" and row["reason"].startswith(
        f"{ReturnCode.SIGNER_LOCKED.c_name}: "
    )

    # A wrong password from the environment: rejected, still locked.
    monkeypatch.setenv("SRV_PW", "wrong")
    for tsv in (signer.data / "logs").glob("signing-*.tsv"):
        tsv.unlink()
    async with serving(sim_settings(signer, password_env="SRV_PW")) as (server, out):
        await wait_for_condition(
            "the password check", lambda: "stays locked" in out.getvalue(), 20, out
        )
        station = await Station.connect(server.port)
        reply = await station.request(request_for(info, 2), timeout=STATION_TIMEOUT)
        await station.close()
    assert isinstance(reply, ErrorReply) and reply.code is ReturnCode.SIGNER_LOCKED, reply
    assert f"{label} password rejected." in out.getvalue()

    # The right one: unlocked, serves.
    monkeypatch.setenv("SRV_PW", "k3y pw")
    for tsv in (signer.data / "logs").glob("signing-*.tsv"):
        tsv.unlink()
    async with serving(sim_settings(signer, password_env="SRV_PW")) as (server, out):
        await wait_for_condition(
            "the unlock", lambda: f"{label} password accepted, ready." in out.getvalue(), 20, out
        )
        station = await Station.connect(server.port)
        requests = [request_for(info, n) for n in range(3, 6)]
        replies = [await station.request(r, timeout=STATION_TIMEOUT) for r in requests]
        await station.close()
    for request, reply in zip(requests, replies, strict=True):
        check_reply(info, request, reply)
    assert "k3y pw" not in out.getvalue()
    rows = read_signing_log(signer.data)
    assert [row["result"] for row in rows] == ["signed"] * 3
