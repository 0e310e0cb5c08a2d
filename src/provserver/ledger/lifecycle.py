"""The device lifecycle rules: what a certificate request gets, given what the ledger holds.

Pure functions, no SQL: every engine gathers a :class:`Snapshot` inside its write transaction
(with the device and the key locked where several servers share the ledger) and applies the
:class:`Decision`. The rules, in order:

1. The public key was issued to another serial number: refused, ``PUBLIC_KEY_REUSED`` (a key
   belongs to one chip).
2. The device is ``installed`` (the client reported its certificates on the chip, data zone
   locked):
   * same public key and same signer as the installed issuance: that certificate again
     (``reissued``; harmless, nothing changes);
   * anything else: refused, ``DEVICE_ALREADY_PROVISIONED``, unless the server runs with
     ``--allow-reprovision`` (then as in 3, the installed issuance is superseded).
3. Otherwise (new device, or ``signed`` / ``failed`` / ``abandoned``: not on a locked chip):
   * an issuance for the same public key and signer exists: that certificate again, byte for
     byte (``reissued``: a resumed part; no second issuance); if it was not the current one it
     becomes current and the current one is ``superseded``;
   * else the new certificate is issued; the device's earlier current issuance (a resumed part
     that generated a new key) is ``superseded``.

A new certificate whose serial number the same signer already used for another certificate is
refused with ``CERT_SERIAL_IN_USE`` when it is committed (the ledger's unique constraint).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from atcaprov.return_codes import ReturnCode

from .model import IssuanceState


@dataclass(frozen=True)
class Brief:
    """The facts of one issuance the rules look at."""

    id: int
    public_key: str
    issuer_key_id: str
    state: IssuanceState


@dataclass(frozen=True)
class Snapshot:
    """What the ledger holds for one request, read inside the write transaction."""

    key_owner: str | None  # serial number the public key was issued to, if any
    current: Brief | None  # the device's current issuance
    match: Brief | None  # the latest issuance for (serial number, public key, signer key)
    # the issuance already holding the new certificate's serial number from this issuer (its
    # id and device), which the ledger's unique constraint (issuer, cert_sn) would refuse
    serial_clash: tuple[int, str] | None = None


@dataclass(frozen=True)
class Decision:
    action: Literal["issue", "reissue", "refuse"]
    reissue_id: int | None = None
    supersede_id: int | None = None
    code: ReturnCode | None = None
    message: str = ""


def short_key(public_key_hex: str) -> str:
    """A public key for messages: its first 8 bytes in hex and an ellipsis."""
    return public_key_hex[:16] + "..."


def decide(
    device_sn: str,
    public_key: str,
    issuer_key_id: str,
    snap: Snapshot,
    *,
    allow_reprovision: bool,
) -> Decision:
    """Apply the rules of the module docstring."""
    if snap.key_owner is not None and snap.key_owner != device_sn:
        return Decision(
            "refuse",
            code=ReturnCode.PUBLIC_KEY_REUSED,
            message=f"public key {short_key(public_key)} was already issued to device "
            f"{snap.key_owner}; a key belongs to one chip, device {device_sn} is refused",
        )
    current, match = snap.current, snap.match
    if current is not None and current.state is IssuanceState.INSTALLED:
        if match is not None and match.id == current.id:
            return Decision("reissue", reissue_id=current.id)
        if not allow_reprovision:
            what = "public key" if current.public_key != public_key else "signer"
            return Decision(
                "refuse",
                code=ReturnCode.DEVICE_ALREADY_PROVISIONED,
                message=f"device {device_sn} is installed (issuance {current.id}, public key "
                f"{short_key(current.public_key)}); a request with another {what} is refused "
                "(the server allows it with --allow-reprovision)",
            )
    if match is not None:
        supersede = current.id if current is not None and current.id != match.id else None
        return Decision("reissue", reissue_id=match.id, supersede_id=supersede)
    return Decision("issue", supersede_id=current.id if current is not None else None)
