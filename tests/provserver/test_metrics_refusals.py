"""provserver.metrics in-process: refusals by reason and signer labels, against the real
signing service, TCP server and metrics listener (fake signer modules, in-memory records).

* a request for a signer this server does not have is refused: ``signer="unknown"``,
  ``result="refused"``, ``atcaprov_refusals_total{reason="signer_not_found"}``;
* a signed request counts ``issued`` under the signer id, with its latency and commit time;
* a station over ``max_connections`` counts ``too_many_connections``;
* open connections and the module gauges follow the server's state at each scrape.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families

from atcaprov.protocol import CertReply, ErrorReply
from atcaprov.return_codes import ReturnCode
from provserver.console import Console, NoPasswordSource
from provserver.manager import SignerManager
from provserver.metrics import MetricsServer, ServerMetrics
from provserver.profile import ProfileStore
from provserver.records import MemoryRecordStore
from provserver.server import ProvisioningServer, ServerLimits
from provserver.signing import SigningService
from tests.support.server import Chain, make_chain, make_request
from tests.support.signer_fakes import FakeBackend, FakeModule
from tests.support.station import Station

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclasses.dataclass
class Metered:
    server: ProvisioningServer
    listener: MetricsServer


@asynccontextmanager
async def metered_server(chain: Chain, max_connections: int = 64) -> AsyncIterator[Metered]:
    console = Console(io.StringIO())
    backend = FakeBackend()
    backend.present["m0"] = FakeModule(
        "m0", chain.signer_key, chain.signer_cert, sn="0123000000000000EE"
    )
    manager = SignerManager([backend], console, NoPasswordSource(), rescan_interval=0)
    metrics = ServerMetrics()
    records = metrics.metered(MemoryRecordStore())
    metrics.attach(manager=manager)
    service = SigningService(manager, ProfileStore([], [chain.profile]), records, console)
    server = ProvisioningServer(
        metrics.cert_handler(service.handle),
        console,
        ready_handler=metrics.ready_handler(service.ready),
        host="127.0.0.1",
        port=0,
        limits=ServerLimits(max_connections=max_connections),
        on_refusal=metrics.connection_refused,
    )
    metrics.attach(server=server)
    listener = metrics.listener("127.0.0.1", 0)
    await service.open()
    await manager.start()
    await server.start()
    await manager.start_scanning()
    await listener.start()
    try:
        yield Metered(server, listener)
    finally:
        await listener.stop()
        await asyncio.wait_for(server.stop(), 20)
        await manager.stop()
        await service.close()


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode()


async def scrape(port: int) -> Samples:
    status, text = await http_get(port, "/metrics")
    assert status == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def test_refusals_and_signings_by_signer() -> None:
    chain = make_chain()
    signer = chain.cert_info.signer_id.hex().upper()
    async with metered_server(chain, max_connections=1) as run:
        port = run.listener.port
        station = await Station.connect(run.server.port)
        try:
            reply = await station.request(make_request(chain, 1))
            assert isinstance(reply, CertReply)
            other = make_request(chain, 2, signer_id=b"\x99\x99", signer_key_id=b"\x11" * 20)
            refused = await station.request(other)
            assert isinstance(refused, ErrorReply)
            assert refused.code is ReturnCode.SIGNER_NOT_FOUND
            during = await scrape(port)
            # a second station while the first is connected: over the limit
            extra = await Station.connect(run.server.port)
            busy = await extra.reply()  # "server busy", then closed
            assert isinstance(busy, ErrorReply) and busy.code is ReturnCode.SERVER_ERROR
            assert await extra.at_eof()
            await extra.close()
            after = await scrape(port)
        finally:
            await station.close()
        status, body = await http_get(port, "/healthz")
    assert value(during, "atcaprov_signings_total", signer=signer, result="issued") == 1
    assert value(during, "atcaprov_signings_total", signer="unknown", result="refused") == 1
    assert not any(labels and ("signer", "9999") in labels for (_, labels) in during)
    assert value(during, "atcaprov_refusals_total", reason="signer_not_found") == 1
    assert value(during, "atcaprov_request_duration_seconds_count", type="cert") == 2
    assert value(during, "atcaprov_ledger_commit_seconds_count", operation="issue") == 1
    assert value(during, "atcaprov_ledger_commit_seconds_count", operation="refuse") == 1
    assert value(during, "atcaprov_open_connections") == 1
    assert value(during, "atcaprov_signer_modules", signer=signer, state="present") == 1
    assert value(during, "atcaprov_signer_modules", signer=signer, state="locked") == 0
    assert value(after, "atcaprov_refusals_total", reason="too_many_connections") == 1
    assert status == 200 and json.loads(body) == {"status": "ok", "signers_ready": 1}


async def test_only_get_and_known_paths() -> None:
    async with metered_server(make_chain()) as run:
        port = run.listener.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /metrics HTTP/1.1\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        missing = await http_get(port, "/")
    assert answer.startswith(b"HTTP/1.1 405 ")
    assert missing[0] == 404
