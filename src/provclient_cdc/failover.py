"""Several provisioning servers for one station: which one is used, and when to move on.

``--host pc1,pc2`` (each with ``--port``, or ``host:port``) or ``--server host:port`` repeated
gives an ordered list (:func:`parse_servers`). :class:`ServerPool` holds one
:class:`~provclient_cdc.server_link.ServerLink` per server and the one in use.

The rules (docs/client.md, "Several servers"):

* the station uses the first server that is reachable and answers ready
  (:meth:`ServerPool.choose`); at start it goes through the list in order;
* before each board the flow asks the server in use whether it is ready, right before the
  first write or lock (:meth:`ServerPool.check_ready`); if it cannot be reached or answers
  not ready, the next servers are tried in turn, and the switch is said on the screen
  (``Server 127.0.0.1:11235 unreachable (connection refused): using 127.0.0.1:11236.``).
  Nothing of the board has been written or sent yet at that point, so moving on is safe;
* a request whose bytes went out is never sent to another server: a lost reply fails the
  board's certificate request (the part stays config-locked, "will resume"); the part is then
  resumed by its serial number as a new run, through whichever server is ready (see
  :mod:`.session`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from atcaprov.certreq import NotReadyError, ServerTooOldError
from atcaprov.errors import AtcaprovError
from atcaprov.protocol import HEADER_SIZE, MessageType, ProtocolError, ReadyRequest, parse_header
from atcaprov.return_codes import ReturnCode, ReturnCodeError

from .output import Output
from .server_link import LinkHooks, ServerLink, ServerLinkError, ServerUnreachableError

RESEND_ATTEMPTS = 2  # a lost reply: the same request again, to the same server, at most twice
RESEND_WINDOW_S = 10.0  # how long the same server may take to come back for it
RESEND_PAUSE_S = 0.5


def _is_cert_request(data: bytes) -> bool:
    try:
        msg_type = parse_header(data[:HEADER_SIZE]).msg_type
        return msg_type in (MessageType.CERT_REQUEST, MessageType.CERT_REQUEST2)
    except ProtocolError:
        return False


class ServerListError(AtcaprovError):
    """A ``--host`` / ``--server`` value that is not a list of servers."""


def _split_host_port(text: str, default_port: int | None) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or ``[v6]``; a bare IPv6 literal takes the
    default port."""
    host, port_text = text, ""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ServerListError(f"{text!r}: missing ']' after an IPv6 address")
        host, rest = text[1:close], text[close + 1 :]
        if rest and not rest.startswith(":"):
            raise ServerListError(f"{text!r}: expected ':port' after ']'")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host:
        raise ServerListError(f"{text!r}: no host name")
    if not port_text:
        if default_port is None:
            raise ServerListError(f"{text!r}: no port (host:port)")
        return host, default_port
    try:
        port = int(port_text)
    except ValueError:
        raise ServerListError(f"{text!r}: {port_text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise ServerListError(f"{text!r}: port {port} is outside 1..65535")
    return host, port


def parse_servers(hosts: str, port: int, servers: Sequence[str] = ()) -> list[tuple[str, int]]:
    """The ordered server list: the ``--server host:port`` values when given (each may be a
    comma list too), else the ``--host`` comma list, each with ``port`` unless it names its own.
    Duplicates are dropped (the first stays)."""
    items: list[tuple[str, int | None]]
    if servers:
        items = [(part, None) for value in servers for part in value.split(",")]
    else:
        items = [(part, port) for part in hosts.split(",")]
    found: list[tuple[str, int]] = []
    for text, default in items:
        text = text.strip()
        if not text:
            continue
        address = _split_host_port(text, default)
        if address not in found:
            found.append(address)
    if not found:
        raise ServerListError("no server given")
    return found


class ServerPool:
    """The station's servers in order and the one in use (:attr:`current`)."""

    def __init__(self, links: Sequence[ServerLink], output: Output) -> None:
        if not links:
            raise ValueError("ServerPool needs at least one server")
        self.links = list(links)
        self.output = output
        self.index = 0
        self.switches = 0  # how many times the station moved to another server

    @property
    def current(self) -> ServerLink:
        return self.links[self.index]

    @property
    def several(self) -> bool:
        return len(self.links) > 1

    def close(self) -> None:
        for link in self.links:
            link.close()

    def _order_from_current(self) -> list[int]:
        n = len(self.links)
        return [(self.index + k) % n for k in range(n)]

    def choose(
        self, ask_ready: Callable[[ServerLink], None], *, first_reason: str | None = None
    ) -> bool:
        """Use the first server, from the current one on, that connects and answers ready
        (``ask_ready`` raises when it does not). Each server gets one connect attempt. True if
        one was found (it is :attr:`current` then); False if none: :attr:`current` is then the
        first one that could be reached (its not-ready answer stands), else unchanged.

        ``first_reason``: the current server already failed for this reason (it is not asked
        again). Each failure and the switch are shown on the screen."""
        start = self.index
        reachable: int | None = None
        reasons: list[str] = []
        for k, i in enumerate(self._order_from_current()):
            link = self.links[i]
            if k == 0 and first_reason is not None:
                reasons.append(f"{link.address} {first_reason}")
                continue
            try:
                if not link.alive():
                    link.connect()
                if reachable is None:
                    reachable = i
                ask_ready(link)
            except ServerTooOldError as exc:
                link.close()
                reasons.append(f"{link.address} unusable ({exc.message})")
                continue
            except NotReadyError as exc:
                reasons.append(f"{link.address} not ready ({exc.message})")
                continue
            except ServerUnreachableError as exc:
                reasons.append(f"{link.address} unreachable ({exc.reason})")
                continue
            except (ReturnCodeError, OSError) as exc:  # lost while asking: not trusted
                link.close()
                reason = exc.message if isinstance(exc, ReturnCodeError) else str(exc)
                reasons.append(f"{link.address} failed ({reason})")
                continue
            self._switch(start, i, reasons)
            return True
        if reachable is not None and reachable != start:
            self._switch(start, reachable, reasons, ready=False)
        return False

    def _switch(self, start: int, new: int, reasons: list[str], *, ready: bool = True) -> None:
        self.index = new
        if new == start:
            return
        self.switches += 1
        self.links[start].close()
        why = "; ".join(reasons) if reasons else "not usable"
        state = "" if ready else " (not ready either)"
        self.output.detail(f"Server {why}: using {self.current.address}{state}.")


class FailoverHooks(LinkHooks):
    """:class:`~provclient_cdc.server_link.LinkHooks` over a :class:`ServerPool`: ``link`` is
    the server in use. With several servers, the readiness check before a board's first write
    moves to the next ready server when the one in use is unreachable or not ready, and a
    connection that cannot be opened again before a request is sent moves on too (nothing of
    that request went anywhere). A request already sent is never sent elsewhere: the link's
    errors after ``certreq_send`` pass through unchanged."""

    def __init__(self, pool: ServerPool, output: Output, station_id: str | None) -> None:
        super().__init__(pool.current, output, station_id)
        self.pool = pool
        self._choosing = False
        self._request: bytes | None = None  # the certificate request in flight (its bytes)
        self._answer_bytes = 0  # bytes of its answer received
        self._resends = 0

    def _follow(self) -> None:
        self.link = self.pool.current

    def _ask_on(self, request: ReadyRequest) -> Callable[[ServerLink], None]:
        def ask(link: ServerLink) -> None:
            self.link = link
            LinkHooks.check_ready(self, request)

        return ask

    def choose(self, request: ReadyRequest, *, first_reason: str | None = None) -> bool:
        """:meth:`ServerPool.choose` asking ``request``; ``link`` follows the pool."""
        self._choosing = True
        try:
            return self.pool.choose(self._ask_on(request), first_reason=first_reason)
        finally:
            self._choosing = False
            self._follow()

    def check_ready(self, request: ReadyRequest) -> None:
        if not self.pool.several or self._choosing:
            super().check_ready(request)
            return
        self._choosing = True  # this server first, alone; then the others in turn
        first: ReturnCodeError | OSError
        try:
            super().check_ready(request)
            return
        except ServerTooOldError as exc:
            first, reason = exc, f"unusable ({exc.message})"
        except NotReadyError as exc:
            first, reason = exc, f"not ready ({exc.message})"
        except ServerUnreachableError as exc:
            first, reason = exc, f"unreachable ({exc.reason})"
        except (ReturnCodeError, OSError) as exc:
            first = exc
            reason = f"failed ({exc.message if isinstance(exc, ReturnCodeError) else exc})"
        finally:
            self._choosing = False
        if not self.choose(request, first_reason=reason):
            raise first

    def certreq_send(self, data: bytes) -> None:
        self._request = data if _is_cert_request(data) else None
        self._answer_bytes = 0
        self._resends = 0
        super().certreq_send(data)

    def certreq_recv(self, n: int) -> bytes:
        """The link's answer bytes. A certificate request whose connection is lost before a
        byte of its answer came is sent again, to the same server only (:meth:`_resend`)."""
        while True:
            try:
                data = super().certreq_recv(n)
            except ServerLinkError as exc:
                if not self._may_resend(exc.code):
                    raise
                self._resend(exc.message, exc)
                continue
            if data:
                self._answer_bytes += len(data)
                return data
            if not self._may_resend(ReturnCode.COMM_ERROR):
                return data
            self._resend(f"the server at {self.link.address} closed the connection", None)

    def _may_resend(self, code: ReturnCode) -> bool:
        return (
            self._request is not None
            and self._answer_bytes == 0
            and code is ReturnCode.COMM_ERROR
            and self._resends < RESEND_ATTEMPTS
        )

    def _resend(self, reason: str, lost: ServerLinkError | None) -> None:
        """The reply to a certificate request was lost: reconnect to the SAME server and send
        the same request again (same serial number, same public key: the server's ledger
        answers with the certificate it may already have signed, byte for byte). Never to
        another server: without one shared ledger that could sign a second certificate."""
        assert self._request is not None
        self._resends += 1
        link = self.link
        self.output.detail(
            f"Reply lost ({reason}): sending the same request again to"
            f" {link.address} (same key: the same certificate)."
        )
        deadline = time.monotonic() + RESEND_WINDOW_S
        while True:
            try:
                link.connect()
                break
            except ServerUnreachableError as exc:
                if time.monotonic() + RESEND_PAUSE_S > deadline:
                    self.output.detail(
                        f"Server {link.address} still unreachable ({exc.reason}); the request"
                        " is not sent to another server: the part resumes by its serial"
                        " number on its next run."
                    )
                    if lost is not None:
                        raise lost from exc
                    raise ServerLinkError(ReturnCode.COMM_ERROR, reason) from exc
                time.sleep(RESEND_PAUSE_S)
        link.send(self._request)

    def certreq_start(self) -> None:
        try:
            super().certreq_start()
        except ServerUnreachableError as exc:
            if not self.pool.several or self._choosing:
                raise
            self._choosing = True
            try:
                found = self.pool.choose(
                    lambda link: None, first_reason=f"unreachable ({exc.reason})"
                )
            finally:
                self._choosing = False
                self._follow()
            if not found:
                raise
