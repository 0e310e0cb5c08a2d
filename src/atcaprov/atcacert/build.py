"""Certificate operations on a CertDef, each taking the definition as first argument:
``compress`` (cert -> 72 bytes), ``rebuild`` (72 bytes + chip data -> cert, byte-identical to
what was signed), ``prepare`` (fill the template, give the TBS digest to sign) and
``build_cert`` (prepare, sign with a callback, finish).

Same order of writes as CryptoAuthLib's rebuild: authority key id, compressed cert (signature,
dates, signer id), stored SN, public key and subject key id, extra elements, generated SN.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from .certdef import CertDef, CertLoc, CertType
from .compressed import CompCert
from .dates import (
    COMP_EXPIRE_YEARS_MAX,
    CertDate,
    compressed_format_for,
    decode_date,
    encode_date,
    expire_date_for,
)
from .der import decode_ecdsa_sig_value, encode_ecdsa_sig_value, read_tlv, set_outer_length
from .errors import AtcacertCode, CertError
from .keys import key_id, raw_public_key
from .sn import SnSource, generate_cert_sn

SignFn = Callable[[bytes], bytes]
"""``sign(digest32) -> r||s``: signs a 32-byte SHA-256 digest, returns the raw 64-byte signature."""


# ---- element access ---------------------------------------------------------------------------
def set_element(cert: bytearray, loc: CertLoc, data: bytes, name: str) -> None:
    if loc.count == 0:
        return
    if len(data) != loc.count:
        raise CertError(
            AtcacertCode.UNEXPECTED_ELEM_SIZE,
            f"{len(data)} bytes for a {loc.count}-byte element",
            field=name,
        )
    if loc.end > len(cert):
        raise CertError(
            AtcacertCode.ELEM_OUT_OF_BOUNDS,
            f"bytes {loc.offset}..{loc.end} past the {len(cert)}-byte cert",
            field=name,
        )
    cert[loc.offset : loc.end] = data


def get_element(cert: bytes | bytearray, loc: CertLoc, name: str) -> bytes:
    if loc.count == 0:
        raise CertError(AtcacertCode.ELEM_MISSING, "not in this certificate definition", field=name)
    if loc.end > len(cert):
        raise CertError(
            AtcacertCode.ELEM_OUT_OF_BOUNDS,
            f"bytes {loc.offset}..{loc.end} past the {len(cert)}-byte cert",
            field=name,
        )
    return bytes(cert[loc.offset : loc.end])


def signer_id_text(signer_id: bytes) -> bytes:
    if len(signer_id) != 2:
        raise CertError(
            AtcacertCode.BAD_PARAMS,
            f"signer id is 2 bytes, got {len(signer_id)}",
            field="signer_id",
        )
    return bytes(signer_id).hex().upper().encode("ascii")


def get_signer_id(d: CertDef, cert: bytes | bytearray) -> bytes:
    text = get_element(cert, d.std_cert_elements.signer_id, "signer_id")
    try:
        return bytes.fromhex(text.decode("ascii"))
    except ValueError as exc:
        raise CertError(
            AtcacertCode.DECODING_ERROR, f"{text!r} is not 4 hex characters", field="signer_id"
        ) from exc


def set_signature(d: CertDef, cert: bytearray, signature: bytes) -> None:
    loc = d.std_cert_elements.signature
    if d.cert_type != CertType.X509:
        set_element(cert, loc, signature, "signature")
        return
    if loc.count == 0 or loc.offset >= len(cert):
        raise CertError(
            AtcacertCode.ELEM_OUT_OF_BOUNDS, "no room for the signature", field="signature"
        )
    der = encode_ecdsa_sig_value(signature)
    del cert[loc.offset :]
    cert += der
    set_outer_length(cert, len(cert))


def get_signature(d: CertDef, cert: bytes) -> bytes:
    loc = d.std_cert_elements.signature
    if d.cert_type != CertType.X509:
        return get_element(cert, loc, "signature")
    if loc.count == 0 or loc.offset >= len(cert):
        raise CertError(
            AtcacertCode.ELEM_OUT_OF_BOUNDS, "signature past the end of the cert", field="signature"
        )
    try:
        return decode_ecdsa_sig_value(cert[loc.offset :])
    except CertError as exc:
        raise CertError(exc.code, exc.message, field="signature") from exc


def get_issue_date(d: CertDef, cert: bytes | bytearray) -> CertDate:
    raw = get_element(cert, d.std_cert_elements.issue_date, "issue_date")
    return decode_date(d.issue_date_format, raw)


def get_expire_date(d: CertDef, cert: bytes | bytearray) -> CertDate:
    raw = get_element(cert, d.std_cert_elements.expire_date, "expire_date")
    return decode_date(d.expire_date_format, raw)


def _set_dates(d: CertDef, cert: bytearray, issue: CertDate, expire: CertDate) -> None:
    std = d.std_cert_elements
    if std.issue_date.count:
        set_element(cert, std.issue_date, _enc(d, "issue_date", issue), "issue_date")
    if std.expire_date.count:
        set_element(cert, std.expire_date, _enc(d, "expire_date", expire), "expire_date")


def _enc(d: CertDef, name: str, value: CertDate) -> bytes:
    fmt = d.issue_date_format if name == "issue_date" else d.expire_date_format
    try:
        return encode_date(fmt, value)
    except CertError as exc:
        raise CertError(exc.code, exc.message, field=name) from exc


def _set_public_key(d: CertDef, cert: bytearray, pub64: bytes) -> None:
    set_element(cert, d.std_cert_elements.public_key, pub64, "public_key")
    set_element(cert, d.std_cert_elements.subj_key_id, key_id(pub64), "subj_key_id")


def _issue_checks(d: CertDef, issue: CertDate, expire_years: int) -> None:
    compressed_format_for(issue, expire_years)  # issue year 2000-2127, 0-127 years
    if issue.minute or issue.second:
        raise CertError(
            AtcacertCode.INVALID_DATE,
            f"issue date {issue} has minutes/seconds; the compressed certificate "
            "keeps whole hours only",
            field="issue_date",
        )
    expire = expire_date_for(issue, expire_years, d.expire_date_format)
    if d.std_cert_elements.expire_date.count:
        _enc(d, "expire_date", expire)  # raises if the format cannot hold it


def _element_data(d: CertDef, cert: bytearray, data: Mapping[str, bytes] | None) -> None:
    for el in d.cert_elements:
        if el.cert_loc.count == 0:
            continue
        if data is None or el.id not in data:
            raise CertError(
                AtcacertCode.ELEM_MISSING,
                f"element data for {el.id!r} ({el.device_loc.zone.c_name} slot "
                f"{el.device_loc.slot} offset {el.device_loc.offset}) not given",
                field=el.id,
            )
        set_element(cert, el.cert_loc, bytes(data[el.id]), el.id)


def _finish_sn(d: CertDef, cert: bytearray, device_sn: bytes | None, issue: CertDate) -> None:
    """Generate the SN. ``issue`` is the issue date just written; CryptoAuthLib reads it back
    from the cert, which we do only where that could differ: extra elements may overwrite it,
    and without an issue-date element the read raises."""
    loc = d.std_cert_elements.cert_sn
    if d.sn_source.is_stored or loc.count == 0:
        return
    signer = get_signer_id(d, cert) if d.sn_source == SnSource.SIGNER_ID else None
    pub = (
        get_element(cert, d.std_cert_elements.public_key, "public_key")
        if d.sn_source
        in (SnSource.PUB_KEY_HASH, SnSource.PUB_KEY_HASH_POS, SnSource.PUB_KEY_HASH_RAW)
        else None
    )
    if d.sn_source.is_hash and (d.cert_elements or not d.std_cert_elements.issue_date.count):
        issue = get_issue_date(d, cert)
    sn = generate_cert_sn(
        d.sn_source,
        loc.count,
        issue_date=issue,
        expire_years=d.expire_years,
        public_key=pub,
        device_sn=device_sn,
        signer_id=signer,
    )
    set_element(cert, loc, sn, "cert_sn")


def _stored_sn(d: CertDef, cert: bytearray, cert_sn: bytes | None) -> None:
    if d.sn_source == SnSource.STORED_DYNAMIC:
        raise CertError(
            AtcacertCode.UNIMPLEMENTED,
            "SNSRC_STORED_DYNAMIC (variable-length stored SN) is not supported",
            field="sn_source",
        )
    if d.sn_source != SnSource.STORED or d.std_cert_elements.cert_sn.count == 0:
        if cert_sn is not None and not d.sn_source.is_stored:
            raise CertError(
                AtcacertCode.BAD_PARAMS,
                f"cert_sn given but {d.sn_source.c_name} generates the serial number",
                field="cert_sn",
            )
        return
    if cert_sn is None:
        raise CertError(
            AtcacertCode.BAD_PARAMS,
            "SNSRC_STORED needs cert_sn= (the serial number stored on the chip)",
            field="cert_sn",
        )
    set_element(cert, d.std_cert_elements.cert_sn, bytes(cert_sn), "cert_sn")


# ---- rebuild ----------------------------------------------------------------------------------
def rebuild(
    d: CertDef,
    comp_cert: bytes,
    public_key: bytes,
    device_sn: bytes | None = None,
    *,
    ca_public_key: bytes | None = None,
    cert_sn: bytes | None = None,
    element_data: Mapping[str, bytes] | None = None,
) -> bytes:
    """Full certificate from template + compressed record + public key (+ device SN)."""
    comp = CompCert.decode(comp_cert)
    if (comp.template_id, comp.chain_id, comp.sn_source) != (
        d.template_id,
        d.chain_id,
        int(d.sn_source),
    ):
        raise CertError(
            AtcacertCode.WRONG_CERT_DEF,
            f"record is template {comp.template_id} chain {comp.chain_id} SN source "
            f"{comp.sn_source:#x}; definition is template {d.template_id} chain "
            f"{d.chain_id} {d.sn_source.c_name}",
        )
    if device_sn is not None and len(device_sn) != 9:
        raise CertError(
            AtcacertCode.BAD_PARAMS,
            f"device serial number is 9 bytes, got {len(device_sn)}",
            field="device_sn",
        )
    cert = bytearray(d.cert_template)
    if ca_public_key is not None:
        set_element(cert, d.std_cert_elements.auth_key_id, key_id(ca_public_key), "auth_key_id")
    set_signature(d, cert, comp.signature)
    issue, expire, _years = comp.dates(d.expire_date_format)
    _set_dates(d, cert, issue, expire)
    if d.std_cert_elements.signer_id.count:
        set_element(
            cert, d.std_cert_elements.signer_id, signer_id_text(comp.signer_id), "signer_id"
        )
    _stored_sn(d, cert, cert_sn)
    _set_public_key(d, cert, raw_public_key(public_key))
    _element_data(d, cert, element_data)
    _finish_sn(d, cert, device_sn, issue)
    return bytes(cert)


# ---- compress ---------------------------------------------------------------------------------
def _fixed_ranges(d: CertDef) -> tuple[int, tuple[tuple[int, int], ...]]:
    """(end of the fixed part, byte ranges that must equal the template), cached per def."""
    cached: tuple[int, tuple[tuple[int, int], ...]] | None = d.__dict__.get(
        "_atcaprov_fixed_ranges"
    )
    if cached is not None:
        return cached
    t = d.cert_template
    sig = d.std_cert_elements.signature
    fixed_end = sig.offset if (d.cert_type == CertType.X509 and sig.count) else len(t)
    mask = bytearray(fixed_end)
    skip = [*d.std_cert_elements, *(e.cert_loc for e in d.cert_elements)]
    if d.cert_type == CertType.X509:
        skip.append(CertLoc(1, read_tlv(t, 0).header_size - 1))
    for loc in skip:
        for i in range(loc.offset, min(loc.end, fixed_end)):
            mask[i] = 1
    ranges = []
    i = 0
    while i < fixed_end:
        if mask[i]:
            i += 1
            continue
        j = i
        while j < fixed_end and not mask[j]:
            j += 1
        ranges.append((i, j))
        i = j
    result = (fixed_end, tuple(ranges))
    object.__setattr__(d, "_atcaprov_fixed_ranges", result)
    return result


def _check_static(d: CertDef, cert: bytes) -> None:
    """Every byte outside the variable elements must equal the template."""
    t = d.cert_template
    fixed_end, ranges = _fixed_ranges(d)
    if d.cert_type != CertType.X509 and len(cert) != len(t):
        raise CertError(
            AtcacertCode.WRONG_CERT_DEF, f"certificate is {len(cert)} bytes, the template {len(t)}"
        )
    if len(cert) < fixed_end:
        raise CertError(
            AtcacertCode.WRONG_CERT_DEF,
            f"certificate is {len(cert)} bytes, shorter than the template's fixed "
            f"part ({fixed_end})",
        )
    for a, b in ranges:
        if cert[a:b] != t[a:b]:
            i = next(k for k in range(a, b) if cert[k] != t[k])
            raise CertError(
                AtcacertCode.WRONG_CERT_DEF,
                f"byte {i} of the certificate is 0x{cert[i]:02X}, the template has "
                f"0x{t[i]:02X} there: this certificate was not made from this "
                "definition",
            )


def compress(d: CertDef, cert_der: bytes) -> bytes:
    """The 72-byte record; refuses what the record cannot reproduce (with the field named)."""
    cert = bytes(cert_der)
    if d.cert_type == CertType.X509:
        outer = read_tlv(cert, 0, what="certificate")
        if outer.tag != 0x30 or outer.end != len(cert):
            raise CertError(AtcacertCode.BAD_CERT, "not one DER SEQUENCE")
    _check_static(d, cert)
    signature = get_signature(d, cert)
    std = d.std_cert_elements
    issue = get_issue_date(d, cert) if std.issue_date.count else CertDate(2000, 1, 1)
    _issue_checks(d, issue, d.expire_years)
    if std.expire_date.count:
        actual = get_expire_date(d, cert)
        want = expire_date_for(issue, d.expire_years, d.expire_date_format)
        if actual != want:
            rule = (
                f"issue date + {d.expire_years} years"
                if d.expire_years
                else f"the no-expiry date of {d.expire_date_format.c_name}"
            )
            raise CertError(
                AtcacertCode.INVALID_DATE,
                f"expire date {actual} cannot be expressed: this definition "
                f"rebuilds it as {rule} = {want} (expire years "
                f"0-{COMP_EXPIRE_YEARS_MAX})",
                field="expire_date",
            )
    signer_id = get_signer_id(d, cert) if std.signer_id.count else b"\x00\x00"
    return CompCert.from_dates(
        signature=signature,
        issue_date=issue,
        expire_years=d.expire_years,
        signer_id=signer_id,
        template_id=d.template_id,
        chain_id=d.chain_id,
        sn_source=d.sn_source,
    ).encode()


# ---- build ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BuiltCert:
    """A signed certificate and its compressed record."""

    cert_der: bytes
    comp_cert: bytes
    tbs_digest: bytes


@dataclass(frozen=True)
class UnsignedCert:
    """A filled template waiting for its signature over ``tbs_digest``."""

    cert_def: CertDef
    cert: bytes
    tbs_digest: bytes
    issue_date: CertDate
    signer_id: bytes

    def finish(self, signature: bytes) -> BuiltCert:
        if len(signature) != 64:
            raise CertError(
                AtcacertCode.BAD_PARAMS,
                f"signer returned {len(signature)} bytes, expected 64 (r||s)",
                field="signature",
            )
        cert = bytearray(self.cert)
        set_signature(self.cert_def, cert, bytes(signature))
        d = self.cert_def
        comp = CompCert.from_dates(
            signature=bytes(signature),
            issue_date=self.issue_date,
            expire_years=d.expire_years,
            signer_id=self.signer_id,
            template_id=d.template_id,
            chain_id=d.chain_id,
            sn_source=d.sn_source,
        )
        return BuiltCert(bytes(cert), comp.encode(), self.tbs_digest)


def tbs_digest(d: CertDef, cert: bytes | bytearray) -> bytes:
    loc = d.tbs_cert_loc
    if loc.count == 0 or loc.end > len(cert):
        raise CertError(
            AtcacertCode.BAD_CERT, "TBS location outside the certificate", field="tbs_cert_loc"
        )
    return hashlib.sha256(bytes(cert[loc.offset : loc.end])).digest()


@dataclass(frozen=True)
class CertBase:
    """The template with the parts shared by every certificate of one signer in one issue hour
    written (authority key id, dates, signer id): what :func:`prepare` starts from when given
    one. Made by :func:`prepare_base`; a server keeps one per signer and hour."""

    cert_def: CertDef
    cert: bytes
    issue_date: datetime
    signer_id: bytes
    ca_public_key: bytes | None
    issue: CertDate


def prepare_base(
    d: CertDef, *, issue_date: datetime, signer_id: bytes, ca_public_key: bytes | None = None
) -> CertBase:
    """Check the dates and write the per-signer, per-hour parts into the template."""
    issue = CertDate.from_datetime(issue_date)
    _issue_checks(d, issue, d.expire_years)
    expire = expire_date_for(issue, d.expire_years, d.expire_date_format)
    if d.expire_years and d.std_cert_elements.expire_date.count:
        try:
            expire.to_datetime()
        except CertError as exc:
            raise CertError(
                AtcacertCode.INVALID_DATE,
                f"issue date {issue} + {d.expire_years} years gives {expire}, which "
                "does not exist (the rebuild adds years without normalising)",
                field="expire_date",
            ) from exc
    cert = bytearray(d.cert_template)
    if ca_public_key is not None:
        set_element(cert, d.std_cert_elements.auth_key_id, key_id(ca_public_key), "auth_key_id")
    _set_dates(d, cert, issue, expire)
    if d.std_cert_elements.signer_id.count:
        set_element(cert, d.std_cert_elements.signer_id, signer_id_text(signer_id), "signer_id")
    return CertBase(d, bytes(cert), issue_date, bytes(signer_id), ca_public_key, issue)


def prepare(
    d: CertDef,
    *,
    public_key: bytes,
    issue_date: datetime,
    signer_id: bytes,
    device_sn: bytes | None = None,
    ca_public_key: bytes | None = None,
    cert_sn: bytes | None = None,
    element_data: Mapping[str, bytes] | None = None,
    base: CertBase | None = None,
) -> UnsignedCert:
    """Fill the template (dates from ``issue_date`` and the definition's expire years).

    ``base``: the same definition, issue date, signer id and CA key already written
    (:func:`prepare_base`, kept by the caller); the result is the same, byte for byte. A base
    made for another definition (by identity) or other values is not used.
    """
    if device_sn is not None and len(device_sn) != 9:
        raise CertError(
            AtcacertCode.BAD_PARAMS,
            f"device serial number is 9 bytes, got {len(device_sn)}",
            field="device_sn",
        )
    if (
        base is None
        or base.cert_def is not d
        or base.issue_date != issue_date
        or base.signer_id != signer_id
        or base.ca_public_key != ca_public_key
    ):
        base = prepare_base(
            d, issue_date=issue_date, signer_id=signer_id, ca_public_key=ca_public_key
        )  # none given, or one for other values
    issue = base.issue
    cert = bytearray(base.cert)
    _stored_sn(d, cert, cert_sn)
    _set_public_key(d, cert, raw_public_key(public_key))
    _element_data(d, cert, element_data)
    _finish_sn(d, cert, device_sn, issue)
    recorded_id = bytes(signer_id) if d.std_cert_elements.signer_id.count else b"\x00\x00"
    recorded_issue = issue if d.std_cert_elements.issue_date.count else CertDate(2000, 1, 1)
    return UnsignedCert(d, bytes(cert), tbs_digest(d, cert), recorded_issue, recorded_id)


def build_cert(
    d: CertDef,
    *,
    public_key: bytes,
    issue_date: datetime,
    signer_id: bytes,
    sign: SignFn,
    device_sn: bytes | None = None,
    ca_public_key: bytes | None = None,
    cert_sn: bytes | None = None,
    element_data: Mapping[str, bytes] | None = None,
) -> BuiltCert:
    """Fill the template, sign the TBS digest with ``sign(digest32) -> r||s``."""
    unsigned = prepare(
        d,
        public_key=public_key,
        issue_date=issue_date,
        signer_id=signer_id,
        device_sn=device_sn,
        ca_public_key=ca_public_key,
        cert_sn=cert_sn,
        element_data=element_data,
    )
    return unsigned.finish(sign(unsigned.tbs_digest))
