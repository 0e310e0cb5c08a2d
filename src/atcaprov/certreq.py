"""The certificate request exchange of the flow, over the user's connection hooks.

Builds the :class:`~atcaprov.protocol.CertRequest`, hands its bytes to ``certreq_send``, then
asks ``certreq_recv`` for exactly the header and then exactly the body length the header states
(calling again while a hook returns fewer bytes). An :class:`~atcaprov.protocol.ErrorReply`
goes to ``request_error`` and is raised as :class:`~atcaprov.protocol.ServerError`.

:func:`send_report` sends a :class:`~atcaprov.protocol.DeviceReport` (protocol version 2) the
same way and returns the server's :class:`~atcaprov.protocol.ReportAck`; a version-1 server
answers it with ``UNSUPPORTED_VERSION`` (raised as ServerError, not passed to
``request_error``: the board's result does not change).
"""

from __future__ import annotations

from .hooks import ProvisioningHooks
from .protocol import (
    HEADER_SIZE,
    CertReply,
    CertRequest,
    DeviceReport,
    ErrorReply,
    ProtocolError,
    ReportAck,
    ServerError,
    decode,
    encode,
    parse_header,
)
from .return_codes import ReturnCode


def _recv_exactly(hooks: ProvisioningHooks, n: int, what: str) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = hooks.certreq_recv(n - len(buf))
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise ProtocolError(
                ReturnCode.COMM_ERROR,
                f"certreq_recv returned {type(chunk).__name__}, expected bytes",
            )
        if len(chunk) == 0:  # an empty read means "closed" (never spin on it)
            raise ProtocolError(
                ReturnCode.COMM_ERROR,
                f"server closed the connection after {len(buf)} of {n} bytes of the {what}",
            )
        if len(chunk) > n - len(buf):
            raise ProtocolError(
                ReturnCode.COMM_ERROR,
                f"certreq_recv returned {len(chunk)} bytes when {n - len(buf)} were asked for",
            )
        buf += chunk
    return bytes(buf)


def exchange(hooks: ProvisioningHooks, request: CertRequest) -> CertReply:
    """Send ``request`` and return the server's reply (raises ServerError / ProtocolError)."""
    hooks.certreq_start()
    try:
        hooks.certreq_send(encode(request))
        header = parse_header(_recv_exactly(hooks, HEADER_SIZE, "reply header"))
        body = _recv_exactly(hooks, header.body_length, "reply body")
        reply = decode(header, body)
    finally:
        hooks.certreq_done()
    if isinstance(reply, ErrorReply):
        hooks.request_error(reply.code, reply.message)
        raise reply.to_exception()
    if isinstance(reply, CertReply):
        return reply
    raise ProtocolError(
        ReturnCode.UNKNOWN_MESSAGE_TYPE,
        f"server answered a certificate request with a {type(reply).__name__}",
    )


def send_report(hooks: ProvisioningHooks, report: DeviceReport) -> ReportAck:
    """Send ``report`` and return the server's acknowledgement (raises ServerError /
    ProtocolError; ServerError UNSUPPORTED_VERSION from a server of protocol version 1)."""
    hooks.certreq_start()
    try:
        hooks.certreq_send(encode(report))
        header = parse_header(_recv_exactly(hooks, HEADER_SIZE, "report answer header"))
        body = _recv_exactly(hooks, header.body_length, "report answer body")
        reply = decode(header, body)
    finally:
        hooks.certreq_done()
    if isinstance(reply, ErrorReply):
        raise reply.to_exception()
    if isinstance(reply, ReportAck):
        return reply
    raise ProtocolError(
        ReturnCode.UNKNOWN_MESSAGE_TYPE,
        f"server answered a device report with a {type(reply).__name__}",
    )


__all__ = ["ServerError", "exchange", "send_report"]
