"""The TCP server over loopback: serving, refusals, protocol errors, limits, stalls, load."""

from __future__ import annotations

import asyncio

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from atcaprov.atcacert import compress, rebuild
from atcaprov.atcacert.keys import public_key_bytes
from atcaprov.protocol import HEADER_SIZE, CertReply, ErrorReply, encode
from atcaprov.return_codes import ReturnCode
from provserver.server import ServerLimits
from tests.support.pki import SIGNER_ID
from tests.support.server import make_chain, make_request, serving
from tests.support.station import Station

CHAIN = make_chain()


def check_device_cert(reply: CertReply, public_key: bytes | None = None) -> x509.Certificate:
    cert = x509.load_der_x509_certificate(reply.device_cert)
    signer = x509.load_der_x509_certificate(reply.signer_cert)
    signer_key = signer.public_key()
    assert isinstance(signer_key, ec.EllipticCurvePublicKey)
    assert cert.signature_hash_algorithm is not None
    signer_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    assert cert.issuer == signer.subject
    if public_key is not None:
        key = cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert key.public_numbers().x.to_bytes(32, "big") == public_key[:32]
    return cert


async def test_request_served_and_rebuildable_from_compressed_cert() -> None:
    async with serving(CHAIN) as run:
        station = await Station.connect(run.port)
        request = make_request(run.chain)
        reply = await station.request(request)
        assert isinstance(reply, CertReply), reply
        check_device_cert(reply, request.device_public_key)
        assert reply.signer_cert == run.chain.signer_cert
        assert reply.root_cert == run.chain.root_cert
        cert_def = run.chain.profile.device_cert_def
        comp = compress(cert_def, reply.device_cert)
        rebuilt = rebuild(
            cert_def,
            comp,
            request.device_public_key,
            request.device_serial_number,
            ca_public_key=public_key_bytes(run.chain.signer_key.public_key()),
        )
        assert rebuilt == reply.device_cert
        [(record, device_pem, signer_pem)] = run.log.signings
        assert (
            x509.load_pem_x509_certificate(signer_pem.encode())
            .subject.rfc4514_string()
            .endswith("C48B")
        )
        assert record.result == "signed" and "BEGIN CERTIFICATE" in device_pem
        assert (
            x509.load_pem_x509_certificate(device_pem.encode()).public_bytes(
                serialization.Encoding.DER
            )
            == reply.device_cert
        )
        assert record.station.endswith(' "line-1"')
        assert record.device_sn == request.device_serial_number.hex().upper()
        assert record.public_key == request.device_public_key.hex().upper()
        await station.close()
    assert any("signed by Signer (0123000000000000EE" in line for line in run.lines())


async def test_persistent_connection_many_requests_and_refusals_keep_it_open() -> None:
    async with serving(CHAIN) as run:
        station = await Station.connect(run.port)
        for i in range(3):
            assert isinstance(await station.request(make_request(run.chain, i)), CertReply)
        bad_cfg = bytearray(make_request(run.chain).config_zone)
        bad_cfg[87] = 0x55  # config zone not locked
        reply = await station.request(make_request(run.chain, config_zone=bytes(bad_cfg)))
        assert isinstance(reply, ErrorReply) and reply.code is ReturnCode.BAD_CONFIG_ZONE
        assert "LockConfig" in reply.message
        reply = await station.request(make_request(run.chain, device_public_key=bytes(64)))
        assert isinstance(reply, ErrorReply) and reply.code is ReturnCode.BAD_PUBLIC_KEY
        assert isinstance(await station.request(make_request(run.chain, 9)), CertReply)
        await station.close()
        assert len(run.log.signings) == 4
        assert len(run.log.refusals) == 2  # every refusal is a record too
        assert run.log.refusals[0].reason.startswith("ATCAPROV_E_BAD_CONFIG_ZONE: ")


async def test_unknown_signer_gets_signer_not_found() -> None:
    async with serving(CHAIN) as run:
        station = await Station.connect(run.port)
        reply = await station.request(make_request(run.chain, signer_key_id=b"\x11" * 20))
        assert isinstance(reply, ErrorReply)
        assert reply.code is ReturnCode.SIGNER_NOT_FOUND
        assert "1111111111" in reply.message and "present" in reply.message
        # the connection is still usable
        assert isinstance(await station.request(make_request(run.chain)), CertReply)
        await station.close()


async def test_template_mismatch_refused() -> None:
    async with serving(CHAIN) as run:
        station = await Station.connect(run.port)
        reply = await station.request(make_request(run.chain, device_template_id=9))
        assert isinstance(reply, ErrorReply) and reply.code is ReturnCode.TEMPLATE_MISMATCH
        await station.close()


async def test_malformed_header_gets_error_reply_then_close() -> None:
    async with serving(CHAIN) as run:
        station = await Station.connect(run.port)
        await station.send(b"XXXX" + bytes(HEADER_SIZE - 4))
        reply = await station.reply()
        assert isinstance(reply, ErrorReply) and reply.code is ReturnCode.BAD_MAGIC
        assert "APRV" in reply.message or "41 50 52 56" in reply.message
        assert await station.at_eof()
        await station.close()
        # wrong message type and a too-large body are protocol errors too
        station = await Station.connect(run.port)
        await station.send(encode(ErrorReply(ReturnCode.GENERAL_ERROR, "x")))
        reply = await station.reply()
        assert isinstance(reply, ErrorReply) and reply.code is ReturnCode.UNKNOWN_MESSAGE_TYPE
        await station.close()
        station = await Station.connect(run.port)
        await station.send(b"APRV\x01\x01\x00\x00" + (1 << 20).to_bytes(4, "big"))
        reply = await station.reply()
        assert isinstance(reply, ErrorReply) and reply.code is ReturnCode.BODY_TOO_LARGE
        await station.close()
    assert any("protocol error" in line for line in run.lines())


async def test_stalled_client_dropped_while_another_is_served() -> None:
    limits = ServerLimits(read_timeout=0.5, idle_timeout=30)
    async with serving(CHAIN, limits) as run:
        staller = await Station.connect(run.port)
        data = encode(make_request(run.chain))
        await staller.send(data[:40])  # header and part of the body, then silence
        other = await Station.connect(run.port)
        for i in range(3):
            assert isinstance(await other.request(make_request(run.chain, i)), CertReply)
        reply = await staller.reply(timeout=10)
        assert isinstance(reply, ErrorReply) and reply.code is ReturnCode.TIMEOUT
        assert "40 bytes received" in reply.message
        assert await staller.at_eof()
        assert isinstance(await other.request(make_request(run.chain, 7)), CertReply)
        await staller.close()
        await other.close()
    assert any("dropped" in line for line in run.lines())


async def test_idle_connection_closed_after_idle_timeout() -> None:
    async with serving(CHAIN, ServerLimits(idle_timeout=0.3)) as run:
        station = await Station.connect(run.port)
        assert isinstance(await station.request(make_request(run.chain)), CertReply)
        assert await station.at_eof(timeout=10)
        await station.close()


async def test_connection_limit() -> None:
    async with serving(CHAIN, ServerLimits(max_connections=2)) as run:
        a = await Station.connect(run.port)
        b = await Station.connect(run.port)
        assert isinstance(await a.request(make_request(run.chain)), CertReply)
        c = await Station.connect(run.port)
        reply = await c.reply()
        assert isinstance(reply, ErrorReply) and reply.code is ReturnCode.SERVER_ERROR
        assert "busy" in reply.message
        await c.close()
        await a.close()
        for _ in range(100):
            if run.server.connection_count < 2:
                break
            await asyncio.sleep(0.02)
        d = await Station.connect(run.port)
        assert isinstance(await d.request(make_request(run.chain)), CertReply)
        await b.close()
        await d.close()


async def test_many_concurrent_stations() -> None:
    async with serving(CHAIN, modules=2) as run:

        async def station_run(n: int) -> int:
            station = await Station.connect(run.port)
            try:
                ok = 0
                for i in range(2):
                    reply = await station.request(make_request(run.chain, n * 10 + i), 30)
                    assert isinstance(reply, CertReply), reply
                    ok += 1
                return ok
            finally:
                await station.close()

        results = await asyncio.wait_for(asyncio.gather(*(station_run(n) for n in range(32))), 60)
        assert sum(results) == 64
        assert len(run.log.signings) == 64
        mods = list(run.backend.present.values())
        assert all(m.max_active == 1 for m in mods)
        assert all(m.signed > 0 for m in mods)


async def test_stop_lets_in_flight_request_finish() -> None:
    async with serving(CHAIN, ServerLimits(shutdown_grace=10), delay=0.5) as run:
        busy = await Station.connect(run.port)
        idle = await Station.connect(run.port)
        await busy.send(encode(make_request(run.chain)))
        await asyncio.sleep(0.2)  # the request is now in the (slow) module
        stopper = asyncio.create_task(run.server.stop())
        reply = await busy.reply(timeout=10)
        assert isinstance(reply, CertReply)
        assert await idle.at_eof()
        await asyncio.wait_for(stopper, 10)
        await busy.close()
        await idle.close()
        # no longer accepting
        try:
            late = await Station.connect(run.port, timeout=2)
        except (ConnectionError, OSError):
            pass
        else:
            assert await late.at_eof()
            await late.close()


async def test_signer_id_in_request_must_match() -> None:
    async with serving(CHAIN) as run:
        station = await Station.connect(run.port)
        reply = await station.request(make_request(run.chain, signer_id=b"\x00\x01"))
        assert isinstance(reply, ErrorReply) and reply.code is ReturnCode.SIGNER_NOT_FOUND
        assert SIGNER_ID.hex().upper() in reply.message
        await station.close()
