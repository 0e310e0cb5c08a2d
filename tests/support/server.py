"""The server under test: a signer chain with its profile, requests for it, an in-process server.

:func:`make_chain` is the server tests' preset of the test PKI (with the signer profile the
server reads); :func:`serving` runs the network server, signing service and signer manager
in-process over fake signer modules on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from atcaprov.protocol import CertRequest
from provserver.console import Console, NoPasswordSource
from provserver.manager import SignerManager
from provserver.profile import ProfileStore, SignerProfile
from provserver.records import MemoryRecordStore
from provserver.server import ProvisioningServer, ServerLimits
from provserver.signing import SigningService
from tests.support.certs import der_to_pem, key_pem
from tests.support.pki import Pki, make_pki
from tests.support.signer_fakes import FakeBackend, FakeModule
from tests.support.station import request_for

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Chain(Pki):
    """A test PKI with the signer profile the server keeps for it."""

    profile: SignerProfile

    @property
    def key_id(self) -> bytes:
        return self.profile.signer_key_id


def make_chain(expire_years: int = 10) -> Chain:
    pki = make_pki(
        now=NOW,
        root_cn="Example Root",
        signer_cn="Example Signer",
        device_expire_years=expire_years,
    )
    profile = SignerProfile(pki.cert_info.signer_key_id, pki.defs.device, root_cert=pki.root_cert)
    parts = {f.name: getattr(pki, f.name) for f in dataclasses.fields(pki)}
    return Chain(**parts, profile=profile)


def make_request(chain: Chain, sn_tail: int = 1, **changes: Any) -> CertRequest:
    """A station's request to ``chain``'s signer (station ``line-1``), with ``changes``."""
    return dataclasses.replace(request_for(chain.cert_info, sn_tail, "line-1"), **changes)


def write_pem_signer(chain: Chain, folder: Path, password: bytes | None = None) -> Path:
    """The pem back-end's files for ``chain``'s signer: ``signer.pem`` (key), ``signer.crt``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "signer.pem"
    path.write_bytes(key_pem(chain.signer_key, password))
    path.with_suffix(".crt").write_bytes(der_to_pem(chain.signer_cert))
    return path


@dataclass
class Running:
    server: ProvisioningServer
    backend: FakeBackend
    log: MemoryRecordStore
    out: io.StringIO
    chain: Chain

    @property
    def port(self) -> int:
        return self.server.port

    def lines(self) -> list[str]:
        return self.out.getvalue().splitlines()


@asynccontextmanager
async def serving(
    chain: Chain,
    limits: ServerLimits | None = None,
    modules: int = 1,
    delay: float = 0.0,
    tls: ssl.SSLContext | None = None,
    *,
    password: str | None = None,
    profiles: list[SignerProfile] | None = None,
    records: MemoryRecordStore | None = None,
) -> AsyncIterator[Running]:
    """The server on 127.0.0.1 (any port) signing for ``chain`` with ``modules`` fake modules
    (locked by ``password``: no password source, so they stay locked), the chain's profile (or
    ``profiles``) and an in-memory record store (or ``records``)."""
    out = io.StringIO()
    console = Console(out)
    backend = FakeBackend()
    for i in range(modules):
        backend.present[f"m{i}"] = FakeModule(
            f"m{i}",
            chain.signer_key,
            chain.signer_cert,
            sn=f"01230000000000{i:02X}EE",
            delay=delay,
            password=password,
        )
    manager = SignerManager([backend], console, NoPasswordSource(), rescan_interval=0)
    log = records if records is not None else MemoryRecordStore()
    known = [chain.profile] if profiles is None else profiles
    service = SigningService(manager, ProfileStore([], known), log, console)
    server = ProvisioningServer(
        service.handle,
        console,
        ready_handler=service.ready,
        host="127.0.0.1",
        port=0,
        tls=tls,
        limits=limits or ServerLimits(),
    )
    await service.open()
    await manager.start()
    await server.start()
    await manager.start_scanning()
    try:
        yield Running(server, backend, log, out, chain)
    finally:
        await asyncio.wait_for(server.stop(), 20)
        await manager.stop()
        await service.close()
