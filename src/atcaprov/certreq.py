"""The exchanges of the flow with the server, over the user's connection hooks.

:func:`exchange` sends a :class:`~atcaprov.protocol.CertRequest`: it hands its bytes to
``certreq_send``, then asks ``certreq_recv`` for exactly the header and then exactly the body
length the header states (calling again while a hook returns fewer bytes). An
:class:`~atcaprov.protocol.ErrorReply` goes to ``request_error`` and is raised as
:class:`~atcaprov.protocol.ServerError`.

:func:`ask_ready` does the same with a :class:`~atcaprov.protocol.ReadyRequest` (protocol
version 2) and raises :class:`NotReadyError` unless the server answers ready; a server that
only speaks version 1 answers UNSUPPORTED_VERSION, raised as :class:`ServerTooOldError`.
:func:`ready_request` builds the request from a cert info. A client calls :func:`ask_ready` from
its ``check_ready`` hook (see :mod:`atcaprov.hooks`).

:func:`send_report` sends a :class:`~atcaprov.protocol.DeviceReport` (protocol version 2) the
same way and returns the server's :class:`~atcaprov.protocol.ReportAck`; a version-1 server
answers it with ``UNSUPPORTED_VERSION`` (raised as ServerError, not passed to
``request_error``: the board's result does not change). :func:`start_report` and
:func:`finish_report` are its two halves, for a client that reads the acknowledgement later
(while the operator swaps the board) instead of waiting for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .hooks import ProvisioningHooks
from .protocol import (
    HEADER_SIZE,
    CertReply,
    CertRequest,
    DeviceReport,
    ErrorReply,
    Message,
    ProtocolError,
    ReadyReply,
    ReadyRequest,
    ReportAck,
    ServerError,
    decode,
    encode,
    parse_header,
)
from .return_codes import ReturnCode, ReturnCodeError

if TYPE_CHECKING:
    from .certinfo import CertInfo


class NotReadyError(ReturnCodeError):
    """The server cannot sign for this cert info now: ``code`` is its reason (SIGNER_LOCKED,
    SIGNER_NOT_FOUND, NO_PROFILE, TEMPLATE_MISMATCH, RECORDS_UNAVAILABLE, or the code of an
    error reply), ``message`` its text for the operator."""


class ServerTooOldError(NotReadyError):
    """The server speaks only protocol version 1: it cannot say whether it is ready."""


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


def _send(hooks: ProvisioningHooks, request: CertRequest | ReadyRequest | DeviceReport) -> None:
    hooks.certreq_start()
    try:
        hooks.certreq_send(encode(request))
    except BaseException:
        hooks.certreq_done()
        raise


def _reply(hooks: ProvisioningHooks) -> Message:
    try:
        header = parse_header(_recv_exactly(hooks, HEADER_SIZE, "reply header"))
        body = _recv_exactly(hooks, header.body_length, "reply body")
        return decode(header, body)
    finally:
        hooks.certreq_done()


def _round_trip(
    hooks: ProvisioningHooks, request: CertRequest | ReadyRequest | DeviceReport
) -> Message:
    _send(hooks, request)
    return _reply(hooks)


def exchange(hooks: ProvisioningHooks, request: CertRequest) -> CertReply:
    """Send ``request`` and return the server's reply (raises ServerError / ProtocolError)."""
    reply = _round_trip(hooks, request)
    if isinstance(reply, ErrorReply):
        hooks.request_error(reply.code, reply.message)
        raise reply.to_exception()
    if isinstance(reply, CertReply):
        return reply
    raise ProtocolError(
        ReturnCode.UNKNOWN_MESSAGE_TYPE,
        f"server answered a certificate request with a {type(reply).__name__}",
    )


def ready_request(cert_info: CertInfo, station_id: str | None = None) -> ReadyRequest:
    """The readiness question for ``cert_info``: its signer id and key id, template/chain ids."""
    return ReadyRequest(
        signer_id=cert_info.signer_id,
        signer_key_id=cert_info.signer_key_id,
        device_template_id=cert_info.device_cert_def.template_id,
        signer_template_id=cert_info.signer_cert_def.template_id,
        chain_id=cert_info.device_cert_def.chain_id,
        station_id=station_id,
    )


def ask_ready(hooks: ProvisioningHooks, request: ReadyRequest) -> ReadyReply:
    """Ask the server whether it could sign for ``request`` now; return its ready answer.

    Raises :class:`NotReadyError` (the server's reason code and text) when it is not ready or
    answers with an error reply, :class:`ServerTooOldError` when it speaks only protocol
    version 1, ProtocolError for bytes that are not a valid answer; the connection hooks' own
    errors (socket errors, timeouts) pass through. ``request_error`` is not called: nothing was
    requested yet.
    """
    reply = _round_trip(hooks, request)
    if isinstance(reply, ReadyReply):
        if not reply.ready:
            raise NotReadyError(reply.code, reply.message)
        return reply
    if isinstance(reply, ErrorReply):
        if reply.code is ReturnCode.UNSUPPORTED_VERSION:
            raise ServerTooOldError(
                ReturnCode.UNSUPPORTED_VERSION,
                "the server speaks an older protocol (version 1) and cannot say whether it is"
                f" ready; update provserver (server said: {reply.message})",
            )
        raise NotReadyError(reply.code, reply.message)
    raise ProtocolError(
        ReturnCode.UNKNOWN_MESSAGE_TYPE,
        f"server answered a readiness request with a {type(reply).__name__}",
    )


def send_report(hooks: ProvisioningHooks, report: DeviceReport) -> ReportAck:
    """Send ``report`` and return the server's acknowledgement (raises ServerError /
    ProtocolError; ServerError UNSUPPORTED_VERSION from a server of protocol version 1)."""
    start_report(hooks, report)
    return finish_report(hooks)


def start_report(hooks: ProvisioningHooks, report: DeviceReport) -> None:
    """The first half of :func:`send_report`: send ``report`` (``certreq_start``, then
    ``certreq_send``). The caller must then call :func:`finish_report` before anything else
    goes over the same connection: the acknowledgement is the next answer on it."""
    _send(hooks, report)


def finish_report(hooks: ProvisioningHooks) -> ReportAck:
    """The second half of :func:`send_report`: read the acknowledgement of the report
    :func:`start_report` sent (then ``certreq_done``); raises as :func:`send_report` does."""
    reply = _reply(hooks)
    if isinstance(reply, ErrorReply):
        raise reply.to_exception()
    if isinstance(reply, ReportAck):
        return reply
    raise ProtocolError(
        ReturnCode.UNKNOWN_MESSAGE_TYPE,
        f"server answered a device report with a {type(reply).__name__}",
    )


__all__ = [
    "NotReadyError",
    "ServerError",
    "ServerTooOldError",
    "ask_ready",
    "exchange",
    "finish_report",
    "ready_request",
    "send_report",
    "start_report",
]
