"""What the transport tells the domain about a request: who sent it (``Peer``), and how long an
``ErrorReply`` message may be (``clip_message``).

Shared by the network side (:mod:`provserver.server`) and the signing service
(:mod:`provserver.signing`), so that the service never imports its transport.
"""

from __future__ import annotations

from dataclasses import dataclass

from atcaprov.protocol import MAX_ERROR_MESSAGE_BYTES


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of a connection."""

    address: str  # "host:port"
    certificate_subject: str | None = None  # TLS client certificate subject, if any

    def __str__(self) -> str:
        if self.certificate_subject:
            return f"{self.address} ({self.certificate_subject})"
        return self.address


def clip_message(text: str) -> str:
    """``text`` cut to what an ErrorReply message can carry (UTF-8 bytes limit)."""
    raw = text.encode("utf-8")
    if len(raw) <= MAX_ERROR_MESSAGE_BYTES:
        return text
    return raw[: MAX_ERROR_MESSAGE_BYTES - 3].decode("utf-8", errors="ignore") + "..."
