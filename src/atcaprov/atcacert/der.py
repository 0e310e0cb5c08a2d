"""The few DER pieces atcacert needs with byte-exact control: TLV headers, length rewriting,
and the ECDSA signature BIT STRING (``03 L 00 30 L2 02 lenR R 02 lenS S``)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import AtcacertCode, CertError

# DER size range of a P-256 ECDSA-Sig-Value BIT STRING that a real signer can produce: R and S
# of 30..32 significant bytes (shorter has probability < 2^-24), plus a 00 when the MSB is set.
SIG_DER_MIN = 69
SIG_DER_MAX = 75


@dataclass(frozen=True)
class Tlv:
    """One DER element: ``tag`` at ``offset``, value at ``value_offset`` of ``length`` bytes."""

    tag: int
    offset: int
    value_offset: int
    length: int

    @property
    def end(self) -> int:
        return self.value_offset + self.length

    @property
    def header_size(self) -> int:
        return self.value_offset - self.offset


def encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def read_tlv(buf: bytes | bytearray, offset: int, *, what: str = "DER element") -> Tlv:
    """Parse the header at ``offset``; the value must fit inside ``buf``."""
    if offset + 2 > len(buf):
        raise CertError(AtcacertCode.DECODING_ERROR, f"{what} at offset {offset}: truncated header")
    tag = buf[offset]
    first = buf[offset + 1]
    if first < 0x80:
        value_offset, length = offset + 2, first
    else:
        n = first & 0x7F
        if n == 0 or n > 3 or offset + 2 + n > len(buf):
            raise CertError(
                AtcacertCode.DECODING_ERROR,
                f"{what} at offset {offset}: bad length byte 0x{first:02X}",
            )
        length = int.from_bytes(buf[offset + 2 : offset + 2 + n], "big")
        value_offset = offset + 2 + n
    if value_offset + length > len(buf):
        raise CertError(
            AtcacertCode.DECODING_ERROR,
            f"{what} at offset {offset}: length {length} runs past the end ({len(buf)} bytes)",
        )
    return Tlv(tag, offset, value_offset, length)


def children(buf: bytes | bytearray, parent: Tlv, *, what: str = "DER element") -> list[Tlv]:
    out: list[Tlv] = []
    pos = parent.value_offset
    while pos < parent.end:
        child = read_tlv(buf, pos, what=what)
        if child.end > parent.end:
            raise CertError(
                AtcacertCode.DECODING_ERROR,
                f"{what} at offset {pos} runs past its parent at {parent.offset}",
            )
        out.append(child)
        pos = child.end
    return out


def _unsigned_int_der(value: bytes) -> bytes:
    stripped = value.lstrip(b"\x00") or b"\x00"
    if stripped[0] & 0x80:
        stripped = b"\x00" + stripped
    return b"\x02" + bytes([len(stripped)]) + stripped


def encode_ecdsa_sig_value(sig: bytes) -> bytes:
    """BIT STRING holding ECDSA-Sig-Value for a raw 64-byte R||S."""
    if len(sig) != 64:
        raise CertError(AtcacertCode.BAD_PARAMS, f"signature must be 64 bytes R||S, got {len(sig)}")
    body = _unsigned_int_der(sig[:32]) + _unsigned_int_der(sig[32:])
    seq = b"\x30" + encode_length(len(body)) + body
    return b"\x03" + encode_length(len(seq) + 1) + b"\x00" + seq


def _read_int(buf: bytes, off: int) -> tuple[bytes, int]:
    t = read_tlv(buf, off, what="signature INTEGER")
    if t.tag != 0x02 or t.length == 0:
        raise CertError(
            AtcacertCode.DECODING_ERROR,
            f"signature: expected INTEGER at offset {off}, got tag 0x{t.tag:02X}",
        )
    value = buf[t.value_offset : t.end]
    if len(value) > 33 or (len(value) == 33 and value[0] != 0):
        raise CertError(AtcacertCode.DECODING_ERROR, "signature integer longer than 32 bytes")
    return value[-32:].rjust(32, b"\x00"), t.end


def decode_ecdsa_sig_value(der: bytes) -> bytes:
    """Raw R||S from the signatureValue BIT STRING; the whole buffer must be that element."""
    bit = read_tlv(der, 0, what="signatureValue")
    if bit.tag != 0x03 or bit.end != len(der) or bit.length < 3 or der[bit.value_offset] != 0:
        raise CertError(
            AtcacertCode.DECODING_ERROR,
            "signatureValue: expected a BIT STRING (03 L 00 ...) up to the end of the certificate",
        )
    seq = read_tlv(der, bit.value_offset + 1, what="ECDSA-Sig-Value")
    if seq.tag != 0x30 or seq.end != len(der):
        raise CertError(AtcacertCode.DECODING_ERROR, "ECDSA-Sig-Value: expected a SEQUENCE")
    r, pos = _read_int(der, seq.value_offset)
    s, pos = _read_int(der, pos)
    if pos != seq.end:
        raise CertError(AtcacertCode.DECODING_ERROR, "ECDSA-Sig-Value: trailing bytes")
    return r + s


def length_size(length: int) -> int:
    return len(encode_length(length))


def set_outer_length(cert: bytearray, new_total: int) -> None:
    """Rewrite the length of the SEQUENCE at offset 0 so the whole is ``new_total`` bytes,
    keeping the same number of length bytes (as atcacert does); error if it cannot."""
    if len(cert) < 2:
        raise CertError(AtcacertCode.BAD_CERT, "certificate too short")
    first = cert[1]
    hdr = 2 + (first & 0x7F if first & 0x80 else 0)
    content = new_total - hdr
    enc = encode_length(content)
    if len(enc) != hdr - 1:
        raise CertError(
            AtcacertCode.BAD_CERT,
            f"certificate length {content} needs {len(enc)} length bytes, the "
            f"template has {hdr - 1}",
            field="signature",
        )
    cert[1:hdr] = enc
