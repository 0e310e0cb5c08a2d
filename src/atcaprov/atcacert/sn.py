"""Certificate serial numbers from the atcacert SN sources (``atcacert_cert_sn_src_t``)."""

from __future__ import annotations

import hashlib
from enum import IntEnum

from .dates import CertDate, encode_compressed_dates
from .errors import AtcacertCode, CertError


class SnSource(IntEnum):
    """``atcacert_cert_sn_src_t``."""

    STORED = 0x0
    STORED_DYNAMIC = 0x7
    DEVICE_SN = 0x8
    SIGNER_ID = 0x9
    PUB_KEY_HASH = 0xA
    DEVICE_SN_HASH = 0xB
    PUB_KEY_HASH_POS = 0xC
    DEVICE_SN_HASH_POS = 0xD
    PUB_KEY_HASH_RAW = 0xE
    DEVICE_SN_HASH_RAW = 0xF

    @property
    def c_name(self) -> str:
        return "SNSRC_" + self.name

    @property
    def uses_device_sn(self) -> bool:
        return self in (
            SnSource.DEVICE_SN,
            SnSource.DEVICE_SN_HASH,
            SnSource.DEVICE_SN_HASH_POS,
            SnSource.DEVICE_SN_HASH_RAW,
        )

    @property
    def is_stored(self) -> bool:
        return self in (SnSource.STORED, SnSource.STORED_DYNAMIC)

    @property
    def is_hash(self) -> bool:
        return self >= SnSource.PUB_KEY_HASH and self is not SnSource.SIGNER_ID

    def fixed_size(self) -> int | None:
        """The SN length this source always gives (None: set by the definition)."""
        if self is SnSource.DEVICE_SN:
            return 10
        if self is SnSource.SIGNER_ID:
            return 3
        return None


_PUB_KEY_KINDS = (SnSource.PUB_KEY_HASH, SnSource.PUB_KEY_HASH_POS, SnSource.PUB_KEY_HASH_RAW)
_POSITIVE = (
    SnSource.PUB_KEY_HASH,
    SnSource.PUB_KEY_HASH_POS,
    SnSource.DEVICE_SN_HASH,
    SnSource.DEVICE_SN_HASH_POS,
)
_NO_TRIM = (SnSource.PUB_KEY_HASH, SnSource.DEVICE_SN_HASH)


def generate_cert_sn(
    source: SnSource,
    size: int,
    *,
    issue_date: CertDate,
    expire_years: int,
    public_key: bytes | None = None,
    device_sn: bytes | None = None,
    signer_id: bytes | None = None,
) -> bytes:
    """The certificate SN Microchip's ``atcacert_gen_cert_sn`` computes.

    ``issue_date`` and ``expire_years`` (of the definition, not the cert) feed the hash kinds:
    they hash the public key (64) or the device SN (9), then the date bytes of the compressed
    record: bytes 64-66 in format 0, and also ``byte 71 & 0xF0`` in format 1 (picked, as the
    record's, when the issue year is past 2031 or the validity over 31 years).
    """
    source = SnSource(source)
    if source.is_stored:
        raise CertError(
            AtcacertCode.BAD_PARAMS,
            f"{source.c_name} serial numbers are stored, not generated",
            field="cert_sn",
        )
    if source is SnSource.DEVICE_SN:
        return b"\x40" + _device_sn(device_sn)
    if source is SnSource.SIGNER_ID:
        if signer_id is None or len(signer_id) != 2:
            raise CertError(
                AtcacertCode.BAD_PARAMS,
                "SNSRC_SIGNER_ID needs a 2-byte signer id",
                field="signer_id",
            )
        return b"\x40" + bytes(signer_id)
    if not 1 <= size <= 32:
        raise CertError(
            AtcacertCode.UNEXPECTED_ELEM_SIZE,
            f"hashed serial numbers are 1-32 bytes, the definition has {size}",
            field="cert_sn",
        )
    dates = encode_compressed_dates(issue_date, expire_years).hashed
    if source in _PUB_KEY_KINDS:
        if public_key is None or len(public_key) != 64:
            raise CertError(
                AtcacertCode.BAD_PARAMS,
                f"{source.c_name} needs the 64-byte public key",
                field="public_key",
            )
        digest = bytearray(hashlib.sha256(bytes(public_key) + dates).digest()[:size])
    else:
        digest = bytearray(hashlib.sha256(_device_sn(device_sn) + dates).digest()[:size])
    if source in _POSITIVE:
        digest[0] &= 0x7F
    if source in _NO_TRIM:
        digest[0] |= 0x40
    return bytes(digest)


def _device_sn(device_sn: bytes | None) -> bytes:
    if device_sn is None or len(device_sn) != 9:
        got = "none" if device_sn is None else f"{len(device_sn)} bytes"
        raise CertError(
            AtcacertCode.BAD_PARAMS,
            f"the device serial number (9 bytes) is needed, got {got}",
            field="device_sn",
        )
    return bytes(device_sn)
