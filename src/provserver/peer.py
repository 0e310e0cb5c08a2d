"""What the transport tells the domain about a request: who sent it (``Peer``, shown with
``station_text``), and how long an ``ErrorReply`` message may be (``clip_message``).

Shared by the network side (:mod:`provserver.server`) and the signing service
(:mod:`provserver.signing`), so that the service never imports its transport.
"""

from __future__ import annotations

from dataclasses import dataclass

from atcaprov.protocol import MAX_ERROR_MESSAGE_BYTES
from atcaprov.text import printable, quoted


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of a connection."""

    address: str  # "host:port"
    certificate_subject: str | None = None  # TLS client certificate subject, if any

    def __str__(self) -> str:
        """``host:port``, then ``(TLS: subject)`` (escaped) if the station showed a certificate."""
        if self.certificate_subject:
            subject = printable(self.certificate_subject, escape_backslash=True)
            return f"{self.address} (TLS: {subject})"
        return self.address


def station_text(peer: Peer, station_id: str | None) -> str:
    """How a station is shown and recorded: its address, its TLS subject, its own id in quotes.

    ``127.0.0.1:40112 (TLS: commonName=line-1) "line-1"``. The id is the station's free text:
    quoted and escaped (:func:`atcaprov.text.quoted`), it can neither start a new log line nor
    pass for the TLS part, which only the server writes.
    """
    return f"{peer} {quoted(station_id)}" if station_id else str(peer)


def clip_message(text: str) -> str:
    """``text`` cut to what an ErrorReply message can carry (UTF-8 bytes limit)."""
    raw = text.encode("utf-8")
    if len(raw) <= MAX_ERROR_MESSAGE_BYTES:
        return text
    return raw[: MAX_ERROR_MESSAGE_BYTES - 3].decode("utf-8", errors="ignore") + "..."
