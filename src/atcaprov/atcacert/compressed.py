"""The 72-byte compressed certificate record (format version 0).

Layout: signature R‖S (0-63), encoded dates (64-66), signer id (67-68), template id ‖ chain id
(69), SN source ‖ format version (70), reserved 00 (71).
"""

from __future__ import annotations

from dataclasses import dataclass

from .dates import CertDate, DateFormat, decode_compressed_dates, encode_compressed_dates
from .errors import AtcacertCode, CertError

COMP_CERT_SIZE = 72
COMP_CERT_FORMAT = 0


@dataclass(frozen=True)
class CompCert:
    """A decoded compressed certificate."""

    signature: bytes
    enc_dates: bytes
    signer_id: bytes
    template_id: int
    chain_id: int
    sn_source: int
    format_version: int = COMP_CERT_FORMAT
    reserved: int = 0

    def __post_init__(self) -> None:
        checks = [
            (len(self.signature) == 64, "signature", "64 bytes"),
            (len(self.enc_dates) == 3, "enc_dates", "3 bytes"),
            (len(self.signer_id) == 2, "signer_id", "2 bytes"),
            (0 <= self.template_id <= 15, "template_id", "0-15"),
            (0 <= self.chain_id <= 15, "chain_id", "0-15"),
            (0 <= self.sn_source <= 15, "sn_source", "0-15"),
            (0 <= self.format_version <= 15, "format_version", "0-15"),
            (0 <= self.reserved <= 255, "reserved", "0-255"),
        ]
        for ok, name, want in checks:
            if not ok:
                raise CertError(AtcacertCode.BAD_PARAMS, f"{name} must be {want}", field=name)

    @classmethod
    def from_dates(cls, *, signature: bytes, issue_date: CertDate, expire_years: int,
                   signer_id: bytes, template_id: int, chain_id: int, sn_source: int) -> CompCert:
        return cls(bytes(signature), encode_compressed_dates(issue_date, expire_years),
                   bytes(signer_id), template_id, chain_id, int(sn_source))

    def encode(self) -> bytes:
        return (self.signature + self.enc_dates + self.signer_id
                + bytes([(self.template_id << 4) | self.chain_id,
                         (self.sn_source << 4) | self.format_version, self.reserved]))

    @classmethod
    def decode(cls, data: bytes) -> CompCert:
        """Parse 72 bytes; only format version 0 is accepted (as CryptoAuthLib 2016-2017)."""
        data = bytes(data)
        if len(data) != COMP_CERT_SIZE:
            raise CertError(AtcacertCode.BAD_PARAMS,
                            f"compressed certificate must be {COMP_CERT_SIZE} bytes, "
                            f"got {len(data)}")
        fmt = data[70] & 0x0F
        if fmt != COMP_CERT_FORMAT:
            raise CertError(AtcacertCode.DECODING_ERROR,
                            f"compressed certificate format version {fmt} is not supported "
                            f"(only {COMP_CERT_FORMAT})", field="format_version")
        return cls(data[:64], data[64:67], data[67:69], data[69] >> 4, data[69] & 0x0F,
                   data[70] >> 4, fmt, data[71])

    def dates(self, expire_format: DateFormat) -> tuple[CertDate, CertDate, int]:
        """(issue date, expire date, expire years) as a rebuild writes them."""
        return decode_compressed_dates(self.enc_dates, expire_format)
