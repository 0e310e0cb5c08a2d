"""Write a certificate definition from a real certificate (what Microchip's cert2certdef does):
find each variable element's offset and length in the DER, pick the date formats from the
ASN.1 time types, derive expire years from the validity, and validate that one definition fits
every device. Offsets are found by walking the DER (same results as the change-one-field-and-
diff method of cert2certdef)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from .certdef import CertDef, CertElement, CertLoc, CertType, DeviceLoc, DevZone, StdCertElements
from .dates import COMP_EXPIRE_YEARS_MAX, DateFormat, decode_date, max_date
from .der import Tlv, children, read_tlv
from .errors import AtcacertCode, CertDefError, CertError
from .keys import key_id
from .sn import SnSource

_OID_SKI = bytes.fromhex("551d0e")
_OID_AKI = bytes.fromhex("551d23")


class _Cert:
    """Offsets of the parts of an X.509 certificate."""

    def __init__(self, der: bytes) -> None:
        self.der = der
        try:
            self.outer = read_tlv(der, 0, what="certificate")
            if self.outer.tag != 0x30 or self.outer.end != len(der):
                raise CertDefError("not one DER SEQUENCE", field="cert_der")
            top = children(der, self.outer, what="certificate")
            if len(top) != 3:
                raise CertDefError(
                    "a certificate has 3 parts (tbs, algorithm, signature)", field="cert_der"
                )
            self.tbs, _alg, self.sig = top
            parts = children(der, self.tbs, what="tbsCertificate")
        except CertError as exc:
            if isinstance(exc, CertDefError):
                raise
            raise CertDefError(
                exc.message, field="cert_der", code=AtcacertCode.DECODING_ERROR
            ) from exc
        if parts and parts[0].tag == 0xA0:
            parts = parts[1:]
        if len(parts) < 6:
            raise CertDefError("tbsCertificate is missing fields", field="cert_der")
        self.serial, _sigalg, self.issuer, validity, self.subject, spki = parts[:6]
        self.extensions: Tlv | None = next((p for p in parts[6:] if p.tag == 0xA3), None)
        self.not_before, self.not_after = children(der, validity)
        _alg2, self.pubkey_bits = children(der, spki)

    def value(self, t: Tlv) -> bytes:
        return self.der[t.value_offset : t.end]

    def extension_value(self, oid: bytes) -> Tlv | None:
        if self.extensions is None:
            return None
        (seq,) = children(self.der, self.extensions)
        for ext in children(self.der, seq):
            parts = children(self.der, ext)
            if self.value(parts[0]) == oid:
                return parts[-1]  # OCTET STRING wrapping the extension value
        return None


def _date_loc(c: _Cert, t: Tlv, name: str) -> tuple[CertLoc, DateFormat]:
    if t.tag == 0x17 and t.length == 13:
        return CertLoc(t.value_offset, 13), DateFormat.RFC5280_UTC
    if t.tag == 0x18 and t.length == 15:
        return CertLoc(t.value_offset, 15), DateFormat.RFC5280_GEN
    raise CertDefError(
        f"tag 0x{t.tag:02X} length {t.length} is neither a 13-byte UTCTime nor "
        "a 15-byte GeneralizedTime",
        field=name,
    )


def _expire_years(
    c: _Cert, issue_fmt: DateFormat, expire_fmt: DateFormat, expire_loc: CertLoc, issue_loc: CertLoc
) -> int:
    issue = decode_date(issue_fmt, c.der[issue_loc.offset : issue_loc.end])
    expire = decode_date(expire_fmt, c.der[expire_loc.offset : expire_loc.end])
    if expire == max_date(expire_fmt):
        return 0
    years = expire.year - issue.year
    same_time = (expire.month, expire.day, expire.hour, expire.minute, expire.second) == (
        issue.month,
        issue.day,
        issue.hour,
        0,
        0,
    )
    if 1 <= years <= COMP_EXPIRE_YEARS_MAX and same_time:
        return years
    if same_time and years > COMP_EXPIRE_YEARS_MAX:
        raise CertDefError(
            f"validity of {years} years ({issue} to {expire}) exceeds the "
            f"{COMP_EXPIRE_YEARS_MAX} years a compressed certificate can hold",
            field="expire_years",
            code=AtcacertCode.INVALID_DATE,
        )
    raise CertDefError(
        f"expire date {expire} is not issue date {issue} plus whole years "
        f"(1-{COMP_EXPIRE_YEARS_MAX}, "
        "same month/day/hour, minutes 0) nor the no-expiry date "
        f"{max_date(expire_fmt)}: a compressed certificate cannot express it",
        field="expire_date",
        code=AtcacertCode.INVALID_DATE,
    )


def _signer_id_loc(c: _Cert, where: str, text: bytes) -> CertLoc | None:
    name = c.subject if where == "subject" else c.issuer
    blob = c.der[name.offset : name.end]
    first = blob.find(text)
    if first < 0:
        return None
    if blob.find(text, first + 1) >= 0:
        raise CertDefError(
            f"signer id text {text.decode()!r} occurs more than once in the {where} name",
            field="signer_id",
        )
    return CertLoc(name.offset + first, 4)


def cert_def_from_cert(
    cert_der: bytes,
    *,
    template_id: int,
    chain_id: int,
    sn_source: SnSource,
    private_key_slot: int,
    public_key_dev_loc: DeviceLoc,
    comp_cert_dev_loc: DeviceLoc,
    cert_sn_dev_loc: DeviceLoc | None = None,
    signer_id: bytes | str | None = None,
    signer_id_in: Literal["subject", "issuer"] | None = None,
    cert_elements: Sequence[CertElement] = (),
    ca_cert_def: str | None = None,
    ca_public_key: bytes | None = None,
) -> CertDef:
    """A CertDef whose template is ``cert_der`` with every variable element located.

    ``signer_id`` is the 2-byte id (or its 4 hex chars) written in the ``signer_id_in`` name
    (default: the subject for a SNSRC_SIGNER_ID/signer definition, else the issuer); when not
    given the text ``FFFF`` is looked for, as cert2certdef does. ``ca_public_key`` (optional)
    checks the authority key id.
    """
    der = bytes(cert_der)
    c = _Cert(der)
    sn_source = SnSource(sn_source)
    if (
        read_tlv(der, c.pubkey_bits.offset).length != 66
        or der[c.pubkey_bits.value_offset : c.pubkey_bits.value_offset + 2] != b"\x00\x04"
    ):
        raise CertDefError(
            "subjectPublicKey is not an uncompressed P-256 point (03 42 00 04)", field="public_key"
        )
    pk = CertLoc(c.pubkey_bits.value_offset + 2, 64)
    sig = CertLoc(c.sig.offset, c.sig.end - c.sig.offset)
    issue_loc, issue_fmt = _date_loc(c, c.not_before, "issue_date")
    expire_loc, expire_fmt = _date_loc(c, c.not_after, "expire_date")
    years = _expire_years(c, issue_fmt, expire_fmt, expire_loc, issue_loc)

    where = signer_id_in or ("subject" if sn_source == SnSource.SIGNER_ID else "issuer")
    if signer_id is None:
        text = b"FFFF"
    elif isinstance(signer_id, str):
        text = signer_id.upper().encode("ascii")
    else:
        text = bytes(signer_id).hex().upper().encode("ascii")
    if len(text) != 4:
        raise CertDefError(
            f"signer id {signer_id!r} is not 2 bytes / 4 hex chars", field="signer_id"
        )
    signer_loc = _signer_id_loc(c, where, text)
    if signer_loc is None:
        if signer_id is not None or signer_id_in is not None or sn_source == SnSource.SIGNER_ID:
            raise CertDefError(
                f"signer id text {text.decode()!r} not found in the {where} name", field="signer_id"
            )
        signer_loc = CertLoc()

    sn_len = c.serial.length
    if sn_len < 1 or sn_len > 20 + 12:
        raise CertDefError(f"serial number of {sn_len} bytes", field="cert_sn")
    sn_loc = CertLoc(c.serial.value_offset, sn_len)

    pub = der[pk.offset : pk.end]
    ski_loc = CertLoc()
    ski = c.extension_value(_OID_SKI)
    if ski is not None:
        inner = read_tlv(der, ski.value_offset)
        if inner.tag != 0x04 or inner.length != 20:
            raise CertDefError("subject key id is not a 20-byte OCTET STRING", field="subj_key_id")
        if c.value(inner) != key_id(pub):
            raise CertDefError(
                "subject key id is not SHA1(04||X||Y) of the key: a rebuild "
                "would write a different one",
                field="subj_key_id",
            )
        ski_loc = CertLoc(inner.value_offset, 20)
    aki_loc = CertLoc()
    aki = c.extension_value(_OID_AKI)
    if aki is not None:
        seq = read_tlv(der, aki.value_offset)
        kid = next((t for t in children(der, seq) if t.tag == 0x80), None)
        if kid is not None:
            if kid.length != 20:
                raise CertDefError("authority key id is not 20 bytes", field="auth_key_id")
            if ca_public_key is not None and c.value(kid) != key_id(ca_public_key):
                raise CertDefError(
                    "authority key id is not SHA1(04||X||Y) of the CA key", field="auth_key_id"
                )
            aki_loc = CertLoc(kid.value_offset, 20)

    if sn_source == SnSource.STORED and cert_sn_dev_loc is None:
        raise CertDefError(
            "SNSRC_STORED needs cert_sn_dev_loc (where the SN is on the chip)",
            field="cert_sn_dev_loc",
        )
    return CertDef(
        cert_type=CertType.X509,
        template_id=template_id,
        chain_id=chain_id,
        private_key_slot=private_key_slot,
        sn_source=sn_source,
        cert_sn_dev_loc=cert_sn_dev_loc or DeviceLoc(DevZone.NONE, 0, False, 0, 0),
        issue_date_format=issue_fmt,
        expire_date_format=expire_fmt,
        tbs_cert_loc=CertLoc(c.tbs.offset, c.tbs.end - c.tbs.offset),
        expire_years=years,
        public_key_dev_loc=public_key_dev_loc,
        comp_cert_dev_loc=comp_cert_dev_loc,
        std_cert_elements=StdCertElements(
            pk, sig, issue_loc, expire_loc, signer_loc, sn_loc, aki_loc, ski_loc
        ),
        cert_template=der,
        cert_elements=tuple(cert_elements),
        ca_cert_def=ca_cert_def,
    )
