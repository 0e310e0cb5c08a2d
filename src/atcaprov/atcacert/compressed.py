"""The 72-byte compressed certificate record (format versions 0 and 1).

Layout: signature R‖S (0-63), encoded dates (64-66), signer id (67-68), template id ‖ chain id
(69), SN source ‖ format version (70), byte 71: 00 in format 0; in formats 1 and 2 its high
nibble holds bits 6-5 of (issue year - 2000) and of the expire years, the low nibble is
reserved. Format 2 (signatures larger than P-256, continued past byte 72) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from .dates import (
    COMP_FORMATS,
    CertDate,
    DateFormat,
    decode_compressed_dates,
    encode_compressed_dates,
)
from .errors import AtcacertCode, CertError

COMP_CERT_SIZE = 72
COMP_CERT_FORMAT = 0
"""The format version of records whose dates fit format 0 (what CryptoAuthLib before 3.7.5
reads); :data:`COMP_CERT_FORMAT_EXT` otherwise."""
COMP_CERT_FORMAT_EXT = 1


@dataclass(frozen=True)
class CompCert:
    """A decoded compressed certificate. ``reserved`` is byte 71 as stored (in formats 1 and 2
    its high nibble carries the extended date bits)."""

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
    def from_dates(
        cls,
        *,
        signature: bytes,
        issue_date: CertDate,
        expire_years: int,
        signer_id: bytes,
        template_id: int,
        chain_id: int,
        sn_source: int,
    ) -> CompCert:
        """The record CryptoAuthLib writes: format 0 when the dates fit it, otherwise 1."""
        dates = encode_compressed_dates(issue_date, expire_years)
        return cls(
            bytes(signature),
            dates.enc,
            bytes(signer_id),
            template_id,
            chain_id,
            int(sn_source),
            dates.format_version,
            dates.ext,
        )

    def encode(self) -> bytes:
        return (
            self.signature
            + self.enc_dates
            + self.signer_id
            + bytes(
                [
                    (self.template_id << 4) | self.chain_id,
                    (self.sn_source << 4) | self.format_version,
                    self.reserved,
                ]
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> CompCert:
        """Parse 72 bytes of format 0 or 1. Format 2 (signatures larger than P-256) and unknown
        formats are refused, naming ``format_version``."""
        data = bytes(data)
        fmt = data[70] & 0x0F if len(data) > 70 else None
        if fmt == 2:
            raise CertError(
                AtcacertCode.UNIMPLEMENTED,
                "compressed certificate format version 2 (signatures larger than "
                "P-256, continued past byte 72) is not supported: atcaprov "
                "certificates are P-256 (formats 0 and 1)",
                field="format_version",
            )
        if fmt is not None and fmt not in COMP_FORMATS:
            raise CertError(
                AtcacertCode.DECODING_ERROR,
                f"compressed certificate format version {fmt} is unknown "
                f"(CryptoAuthLib defines {', '.join(map(str, COMP_FORMATS))})",
                field="format_version",
            )
        if len(data) != COMP_CERT_SIZE:
            raise CertError(
                AtcacertCode.BAD_PARAMS,
                f"compressed certificate must be {COMP_CERT_SIZE} bytes, got {len(data)}",
            )
        return cls(
            data[:64],
            data[64:67],
            data[67:69],
            data[69] >> 4,
            data[69] & 0x0F,
            data[70] >> 4,
            data[70] & 0x0F,
            data[71],
        )

    def dates(self, expire_format: DateFormat) -> tuple[CertDate, CertDate, int]:
        """(issue date, expire date, expire years) as a rebuild writes them."""
        return decode_compressed_dates(
            self.enc_dates, expire_format, format_version=self.format_version, ext=self.reserved
        )
