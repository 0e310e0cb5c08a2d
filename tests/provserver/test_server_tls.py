"""TLS with client-certificate authentication: a station without a valid certificate is refused."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from atcaprov.protocol import CertReply
from provserver.server import ServerLimits, ServerStartError, make_tls_context
from tests.support.certs import an_hour_ago, self_signed, tls_files, write_cert_and_key
from tests.support.keys import new_key
from tests.support.server import make_chain, make_request, serving
from tests.support.station import Station

CHAIN = make_chain()


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The line CA, the server's and station-7's certificates, and a self-signed rogue."""
    d = tmp_path_factory.mktemp("pki")
    tls_files(d, "Line CA", ("server", "station-7"))
    rogue_key = new_key()
    rogue = self_signed("rogue", rogue_key, not_before=an_hour_ago(), ca=False)
    write_cert_and_key(d / "rogue", rogue, rogue_key)
    return d


def client_context(pki: Path, who: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki / "ca.crt"))
    if who is not None:
        ctx.load_cert_chain(str(pki / f"{who}.crt"), str(pki / f"{who}.key"))
    return ctx


async def test_client_certificate_required(tls_dir: Path) -> None:
    tls = make_tls_context(tls_dir / "server.crt", tls_dir / "server.key", tls_dir / "ca.crt")
    async with serving(CHAIN, ServerLimits(tls_handshake_timeout=5), tls=tls) as run:
        server, out = run.server, run.out
        assert (
            f"Server listening on 127.0.0.1:{server.port} (TLS, client certificate required)."
            in out.getvalue()
        )
        # a station with a certificate from the line CA is served
        good = await Station.connect(server.port, tls=client_context(tls_dir, "station-7"))
        reply = await good.request(make_request(CHAIN))
        assert isinstance(reply, CertReply)
        await good.close()
        # without a certificate, or with one the CA did not sign: refused and logged
        for who in (None, "rogue"):
            refused = False
            try:
                bad = await Station.connect(server.port, tls=client_context(tls_dir, who))
                await bad.request(make_request(CHAIN), timeout=5)
            except (ssl.SSLError, ConnectionError, OSError, asyncio.IncompleteReadError):
                refused = True
            assert refused, f"station {who} was served"
        for _ in range(100):
            if out.getvalue().count("TLS handshake failed") >= 2:
                break
            await asyncio.sleep(0.02)
        assert out.getvalue().count("TLS handshake failed") >= 2
        # a plain TCP station is refused too
        plain = await Station.connect(server.port)
        with pytest.raises((ConnectionError, OSError, asyncio.TimeoutError)):
            await plain.request(make_request(CHAIN), timeout=5)
        await plain.close()
        assert "station-7" in out.getvalue()  # the served station's certificate is logged


def test_bad_tls_files_are_a_start_error(tls_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ServerStartError):
        make_tls_context(tmp_path / "missing.crt", tls_dir / "server.key")
