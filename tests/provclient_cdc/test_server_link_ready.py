"""The client's side of readiness and deadlines, over loopback: the answer deadline against a
trickling server, TLS mismatches named both ways against provserver's own network server, the
readiness hook of the station's link (ready, not ready, too old), and COMM_ERROR codes."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import pytest

from atcaprov import provision
from atcaprov.certreq import NotReadyError, ServerTooOldError, ready_request
from atcaprov.device import Device
from atcaprov.emulator import Atecc508a
from atcaprov.hal import open_hal
from atcaprov.protocol import ReadyReply, ReadyRequest
from atcaprov.provisioning import PartState, ProvisioningError
from atcaprov.return_codes import ReturnCode
from atcaprov.stages import ProvStage
from provclient_cdc.console import NoKeys
from provclient_cdc.output import Output
from provclient_cdc.server_link import (
    LinkHooks,
    ServerLink,
    ServerLinkError,
    ServerUnreachableError,
    TlsOptions,
    connect_with_retry,
    make_client_tls,
    server_speaks_tls,
)
from provserver.server import make_tls_context
from tests.support.cert_server import CertServer
from tests.support.certs import tls_files
from tests.support.net import free_port
from tests.support.pki import Pki
from tests.support.server import make_chain, serving

CHAIN = make_chain()


def _hooks(port: int, *, io_timeout: float = 5.0) -> LinkHooks:
    link = ServerLink("127.0.0.1", port, io_timeout=io_timeout, connect_timeout=2.0)
    return LinkHooks(link, Output(io.StringIO()), "line-9")


def test_answer_deadline_bounds_a_trickled_answer(pki: Pki) -> None:
    """A byte every 0.2 s never lets a per-recv timeout of 1 s expire; the answer (21 bytes,
    4.2 s at that pace) must still be complete within 1 s of the request."""
    server = CertServer(pki)
    server.trickle = 0.2
    try:
        hooks = _hooks(server.port, io_timeout=1.0)
        hooks.link.connect()
        started = time.monotonic()
        with pytest.raises(ServerLinkError) as info:
            hooks.check_ready(ready_request(pki.cert_info, "line-9"))
        elapsed = time.monotonic() - started
        assert info.value.code is ReturnCode.TIMEOUT
        assert info.value.message.startswith(
            f"no complete answer from the server at 127.0.0.1:{server.port} within 1 s; "
        )
        assert "bytes of it arrived" in info.value.message
        assert 0.9 < elapsed < 3.0
        assert not hooks.link.connected  # the stream is out of step: closed
        # the same server answering at once is ready: the deadline is per answer
        server.trickle = None
        hooks.check_ready(ready_request(pki.cert_info, "line-9"))
    finally:
        server.close()


def test_ready_not_ready_and_too_old(pki: Pki) -> None:
    server = CertServer(pki)
    try:
        hooks = _hooks(server.port)
        hooks.check_ready(ready_request(pki.cert_info, "line-9"))  # connects on demand
        assert server.ready_requests[-1].station_id == "line-9"
        server.ready_answer = ReadyReply(ReturnCode.SIGNER_LOCKED, "signer 47DC is locked")
        with pytest.raises(NotReadyError) as info:
            hooks.check_ready(ready_request(pki.cert_info))
        assert info.value.code is ReturnCode.SIGNER_LOCKED
        assert hooks.link.alive()  # a plain "not ready" keeps the connection
        assert server.connections == 1
        server.versions = frozenset({1})  # new connections meet a version-1 server
        hooks.link.close()
        with pytest.raises(ServerTooOldError):
            hooks.check_ready(ready_request(pki.cert_info))
        assert not hooks.link.connected
    finally:
        server.close()


def test_refused_connection_is_comm_error(pki: Pki) -> None:
    hooks = _hooks(free_port())
    with pytest.raises(ServerUnreachableError) as info:
        hooks.check_ready(ready_request(pki.cert_info))
    assert info.value.code is ReturnCode.COMM_ERROR
    assert info.value.reason == "connection refused"


async def test_plain_client_meets_tls_server(tmp_path: Path) -> None:
    files = tls_files(tmp_path)
    tls = make_tls_context(files["server.crt"], files["server.key"])
    async with serving(CHAIN, tls=tls) as run:
        hooks = _hooks(run.port)
        await asyncio.to_thread(hooks.link.connect)  # TCP connects: "Connecting...ok"
        with pytest.raises(ServerLinkError) as info:
            await asyncio.to_thread(hooks.check_ready, ready_request(CHAIN.cert_info))
        assert info.value.code is ReturnCode.COMM_ERROR
        assert info.value.message.startswith(
            f"TLS mismatch: the server at 127.0.0.1:{run.port} speaks TLS"
        )
        assert "--tls-ca" in info.value.message
        assert await asyncio.to_thread(server_speaks_tls, "127.0.0.1", run.port, 2.0)


async def test_tls_client_meets_plain_server(tmp_path: Path) -> None:
    files = tls_files(tmp_path)
    ctx = make_client_tls(TlsOptions(ca=files["ca.crt"]))
    async with serving(CHAIN) as run:
        link = ServerLink("127.0.0.1", run.port, tls=ctx, connect_timeout=2.0)
        with pytest.raises(ServerUnreachableError) as info:
            await asyncio.to_thread(link.connect)
        assert info.value.reason.startswith("TLS mismatch: the server did not answer in TLS")
        assert info.value.code is ReturnCode.COMM_ERROR
        assert not info.value.retryable
        # at start: said once, no countdown (trying again cannot help)
        out = io.StringIO()
        with pytest.raises(ServerUnreachableError):
            await asyncio.to_thread(
                connect_with_retry, link, Output(out), NoKeys(), retries=5, interval=30
            )
        assert out.getvalue() == (
            f"Connecting to 127.0.0.1:{run.port}...failed ({info.value.reason})\n"
        )
        assert not await asyncio.to_thread(server_speaks_tls, "127.0.0.1", run.port, 2.0)


def test_refused_reconnect_at_the_certificate_request_is_comm_error(pki: Pki) -> None:
    """The server answered ready, then went away before the certificate request: the stage
    fails with COMM_ERROR (it used to be GENERAL_ERROR), the part stays resumable."""
    server = CertServer(pki)
    hooks = _hooks(server.port)

    class GoneAfterReady(LinkHooks):
        def check_ready(self, request: ReadyRequest) -> None:
            super().check_ready(request)
            self.link.close()
            server.close()  # nobody listens any more

    gone = GoneAfterReady(hooks.link, hooks.output, "line-9")
    chip = Atecc508a()
    try:
        with pytest.raises(ProvisioningError) as info:
            provision(Device(open_hal("emulator", chip=chip)), gone, pki.cert_info)
    finally:
        server.close()
    assert info.value.stage is ProvStage.CERTS_REQUEST
    assert info.value.code is ReturnCode.COMM_ERROR
    assert info.value.message == f"cannot connect to 127.0.0.1:{server.port}: connection refused"
    assert info.value.part_state is PartState.CONFIG_LOCKED
