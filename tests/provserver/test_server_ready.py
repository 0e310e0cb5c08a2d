"""The readiness exchange on the server (protocol version 2) over loopback: every reason a
server gives for "not ready", that nothing is signed or recorded for it, that version-1
stations are still served, and that ``read_timeout`` is a deadline for a whole request."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import time
from typing import Any

from atcaprov.protocol import (
    HEADER_SIZE,
    CertReply,
    ErrorReply,
    MessageType,
    ReadyReply,
    ReadyRequest,
    encode,
    parse_header,
)
from atcaprov.return_codes import ReturnCode
from provserver.console import Console
from provserver.records import MemoryRecordStore
from provserver.server import ProvisioningServer, ServerLimits
from tests.support.server import make_chain, make_request, serving
from tests.support.station import Station, ready_request_for

CHAIN = make_chain()
SIGNER = CHAIN.cert_info.signer_id.hex().upper()


def _ready(**changes: Any) -> ReadyRequest:
    return dataclasses.replace(ready_request_for(CHAIN.cert_info, "line-1"), **changes)


async def _ask(port: int, **changes: Any) -> ReadyReply:
    station = await Station.connect(port)
    try:
        reply = await station.request(_ready(**changes))
    finally:
        await station.close()
    assert isinstance(reply, ReadyReply), reply
    return reply


async def test_ready_then_served_on_the_same_connection() -> None:
    async with serving(CHAIN) as run:
        station = await Station.connect(run.port)
        reply = await station.request(_ready())
        assert reply == ReadyReply(ReturnCode.SUCCESS, f"signer {SIGNER} ready")
        assert isinstance(await station.request(make_request(run.chain)), CertReply)
        await station.close()
        assert len(run.log.signings) == 1 and run.log.refusals == []  # the question: no record
    assert not any("not ready" in line for line in run.lines())


async def test_not_ready_reasons() -> None:
    async with serving(CHAIN) as run:
        reply = await _ask(run.port, signer_key_id=b"\x11" * 20)
        assert reply.code is ReturnCode.SIGNER_NOT_FOUND
        assert "1111111111" in reply.message and "present" in reply.message
        reply = await _ask(run.port, signer_id=b"\x47\xdc")
        assert reply.code is ReturnCode.SIGNER_NOT_FOUND and "47DC" in reply.message
        reply = await _ask(run.port, device_template_id=9)
        assert reply.code is ReturnCode.TEMPLATE_MISMATCH
        assert "device template 9" in reply.message
        reply = await _ask(run.port, chain_id=5)
        assert reply.code is ReturnCode.TEMPLATE_MISMATCH
        assert run.log.signings == [] and run.log.refusals == []
    warnings = [line for line in run.lines() if "not ready" in line]
    assert len(warnings) == 4 and all("line-1" in line for line in warnings)
    assert "ATCAPROV_E_TEMPLATE_MISMATCH" in warnings[-1]


async def test_signer_locked() -> None:
    async with serving(CHAIN, password="secret") as run:
        reply = await _ask(run.port)
        assert reply.code is ReturnCode.SIGNER_LOCKED
        assert reply.message == f"signer {SIGNER} is locked (enter its password at the server)"


async def test_no_profile() -> None:
    async with serving(CHAIN, profiles=[]) as run:
        reply = await _ask(run.port)
        assert reply.code is ReturnCode.NO_PROFILE
        assert f"no signer profile for key id {CHAIN.key_id.hex().upper()}" in reply.message


class BrokenStore(MemoryRecordStore):
    """A store that failed earlier (as FileRecordStore does after an I/O error)."""

    def problem(self) -> str | None:
        return "record store failed earlier: OSError: [Errno 28] No space left on device"


async def test_record_store_failing() -> None:
    async with serving(CHAIN, records=BrokenStore()) as run:
        reply = await _ask(run.port)
        assert reply.code is ReturnCode.RECORDS_UNAVAILABLE
        assert reply.message == (
            "the server cannot record signings: record store failed"
            " earlier: OSError: [Errno 28] No space left on device"
        )


async def test_version_1_station_is_served_in_version_1() -> None:
    async with serving(CHAIN) as run:
        station = await Station.connect(run.port, versions=frozenset({1}))
        request = make_request(run.chain)
        wire = encode(request)
        assert wire[4] == 1  # what a version-1 station sends
        await station.send(wire)
        # the raw answer's header says version 1; the version-1 reader accepts it
        head = await asyncio.wait_for(station.reader.readexactly(HEADER_SIZE), 10)
        header = parse_header(head, versions={1})
        assert header.version == 1 and header.msg_type is MessageType.CERT_REPLY
        station.messages.feed(head)
        reply = await station.reply()
        assert isinstance(reply, CertReply)
        await station.close()


async def test_server_without_ready_handler_refuses_the_type() -> None:
    async def never(request: object, peer: object) -> ErrorReply:
        raise AssertionError("not called")

    server = ProvisioningServer(never, Console(io.StringIO()), host="127.0.0.1", port=0)
    await server.start()
    try:
        station = await Station.connect(server.port)
        reply = await station.request(_ready())
        assert isinstance(reply, ErrorReply) and reply.code is ReturnCode.UNKNOWN_MESSAGE_TYPE
        await station.close()
    finally:
        await server.stop()


async def test_read_timeout_bounds_a_whole_trickled_request() -> None:
    """A station sending a byte every 50 ms never lets a per-read timeout of 0.5 s expire;
    the deadline counts from the first byte, so it is dropped about 0.5 s in."""
    async with serving(CHAIN, ServerLimits(read_timeout=0.5, idle_timeout=30)) as run:
        station = await Station.connect(run.port)
        wire = encode(make_request(run.chain))  # 230 bytes: 11.5 s at this pace
        started = time.monotonic()

        async def trickle() -> int:
            sent = 0
            for i in range(len(wire)):  # bounded by the message size
                try:
                    await station.send(wire[i : i + 1])
                except (ConnectionError, OSError):
                    break
                sent += 1
                await asyncio.sleep(0.05)
            return sent

        sender = asyncio.create_task(trickle())
        reply = await station.reply(timeout=10)
        elapsed = time.monotonic() - started
        sender.cancel()
        assert isinstance(reply, ErrorReply) and reply.code is ReturnCode.TIMEOUT
        assert "no complete message within 0.5 s" in reply.message
        assert elapsed < 5  # far below the 11.5 s the trickle would take
        assert await station.at_eof()
        await station.close()
    assert any("dropped" in line for line in run.lines())
