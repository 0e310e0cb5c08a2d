"""The typed model of ``atcacert_def_t`` and its consistency checks.

A ``CertDef`` is immutable and validated when created: everything a rebuild writes must fit the
template for every device of a product (fixed serial-number length, dates of the template's
ASN.1 type, DER length bytes that cannot change with the signature size...). A pure data
model: the operations on a definition are functions taking it as first argument, in ``build``
(``compress``, ``rebuild``, ``prepare``, ``build_cert``) and ``cwriter`` (``cert_def_to_c``);
only ``device_locations`` (which needs nothing but the model) lives here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from enum import IntEnum

from .dates import COMP_EXPIRE_YEARS_MAX, DateFormat
from .der import SIG_DER_MAX, SIG_DER_MIN, encode_length, read_tlv
from .errors import AtcacertCode, CertDefError, CertError
from .sn import SnSource


class CertType(IntEnum):
    """``atcacert_cert_type_t``."""

    X509 = 0
    CUSTOM = 1

    @property
    def c_name(self) -> str:
        return "CERTTYPE_" + self.name


class DevZone(IntEnum):
    """``atcacert_device_zone_t``."""

    CONFIG = 0
    OTP = 1
    DATA = 2
    NONE = 7

    @property
    def c_name(self) -> str:
        return "DEVZONE_" + self.name


class StdCertElement(IntEnum):
    """Index of ``std_cert_elements``."""

    PUBLIC_KEY = 0
    SIGNATURE = 1
    ISSUE_DATE = 2
    EXPIRE_DATE = 3
    SIGNER_ID = 4
    CERT_SN = 5
    AUTH_KEY_ID = 6
    SUBJ_KEY_ID = 7

    @property
    def c_name(self) -> str:
        return "STDCERT_" + self.name


@dataclass(frozen=True, order=True)
class DeviceLoc:
    """``atcacert_device_loc_t``: where bytes live on the chip."""

    zone: DevZone = DevZone.NONE
    slot: int = 0
    is_genkey: bool = False
    offset: int = 0
    count: int = 0

    @property
    def present(self) -> bool:
        return self.zone != DevZone.NONE and self.count > 0

    @property
    def end(self) -> int:
        return self.offset + self.count


@dataclass(frozen=True)
class CertLoc:
    """``atcacert_cert_loc_t``: where bytes live in the certificate (count 0 = absent)."""

    offset: int = 0
    count: int = 0

    @property
    def end(self) -> int:
        return self.offset + self.count


@dataclass(frozen=True)
class CertElement:
    """``atcacert_cert_element_t``: an extra element copied as is from the chip to the cert."""

    id: str
    device_loc: DeviceLoc
    cert_loc: CertLoc


@dataclass(frozen=True)
class StdCertElements:
    """The eight standard elements, in ``std_cert_elements`` order."""

    public_key: CertLoc = field(default_factory=CertLoc)
    signature: CertLoc = field(default_factory=CertLoc)
    issue_date: CertLoc = field(default_factory=CertLoc)
    expire_date: CertLoc = field(default_factory=CertLoc)
    signer_id: CertLoc = field(default_factory=CertLoc)
    cert_sn: CertLoc = field(default_factory=CertLoc)
    auth_key_id: CertLoc = field(default_factory=CertLoc)
    subj_key_id: CertLoc = field(default_factory=CertLoc)

    def __iter__(self) -> Iterator[CertLoc]:
        return iter(getattr(self, f.name) for f in fields(self))

    def __getitem__(self, index: int) -> CertLoc:
        return list(self)[int(index)]

    @classmethod
    def from_list(cls, locs: list[CertLoc]) -> StdCertElements:
        if len(locs) != 8:
            raise CertDefError(
                f"std_cert_elements needs 8 entries, got {len(locs)}", field="std_cert_elements"
            )
        return cls(*locs)


@dataclass(frozen=True)
class CertDef:
    """Everything ``atcacert_def_t`` carries (plus the name of the linked CA cert def)."""

    cert_type: CertType
    template_id: int
    chain_id: int
    private_key_slot: int
    sn_source: SnSource
    cert_sn_dev_loc: DeviceLoc
    issue_date_format: DateFormat
    expire_date_format: DateFormat
    tbs_cert_loc: CertLoc
    expire_years: int
    public_key_dev_loc: DeviceLoc
    comp_cert_dev_loc: DeviceLoc
    std_cert_elements: StdCertElements
    cert_template: bytes
    cert_elements: tuple[CertElement, ...] = ()
    ca_cert_def: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "cert_template", bytes(self.cert_template))
        object.__setattr__(self, "cert_elements", tuple(self.cert_elements))
        validate_cert_def(self)

    def device_locations(self, block_size: int = 32) -> list[DeviceLoc]:
        """The chip areas a rebuild reads, rounded to blocks and merged (facts 5.6 step 1)."""
        return device_locations(self, block_size)


# ---------------------------------------------------------------------------------------------
def _merge(locs: list[DeviceLoc], loc: DeviceLoc, block: int) -> None:
    if not loc.present:
        return
    start = (loc.offset // block) * block
    end = -(-loc.end // block) * block
    for i, cur in enumerate(locs):
        if cur.zone != loc.zone:
            continue
        if loc.zone == DevZone.DATA and (cur.slot != loc.slot or cur.is_genkey != loc.is_genkey):
            continue
        if end < cur.offset or start > cur.end:
            continue
        new_start = min(start, cur.offset)
        locs[i] = DeviceLoc(
            cur.zone, cur.slot, cur.is_genkey, new_start, max(end, cur.end) - new_start
        )
        return
    locs.append(
        DeviceLoc(
            loc.zone,
            loc.slot if loc.zone == DevZone.DATA else 0,
            loc.is_genkey if loc.zone == DevZone.DATA else False,
            start,
            end - start,
        )
    )


def device_locations(cert_def: CertDef, block_size: int = 32) -> list[DeviceLoc]:
    """Merge comp cert, cert SN, public key, extra elements and (for the DEVICE_SN kinds) config
    bytes 0-12, each rounded out to ``block_size`` (same order as CryptoAuthLib)."""
    if block_size <= 0:
        raise CertDefError("block_size must be positive", code=AtcacertCode.BAD_PARAMS)
    locs: list[DeviceLoc] = []
    for loc in (
        cert_def.comp_cert_dev_loc,
        cert_def.cert_sn_dev_loc,
        cert_def.public_key_dev_loc,
        *(e.device_loc for e in cert_def.cert_elements),
    ):
        _merge(locs, loc, block_size)
    if cert_def.sn_source.uses_device_sn:
        _merge(locs, DeviceLoc(DevZone.CONFIG, 0, False, 0, 13), block_size)
    return locs


# ---------------------------------------------------------------------------------------------
_STD_NAMES = [e.name.lower() for e in StdCertElement]


def _fail(message: str, fld: str) -> CertDefError:
    return CertDefError(message, field=fld)


def _check_dev_loc(loc: DeviceLoc, name: str) -> None:
    if not isinstance(loc.zone, DevZone):
        raise _fail(f"unknown zone {loc.zone!r}", name)
    if not 0 <= loc.slot <= 15:
        raise _fail(f"slot {loc.slot} out of range 0-15", name)
    if loc.offset < 0 or loc.count < 0 or loc.end > 0xFFFF:
        raise _fail(f"offset/count {loc.offset}/{loc.count} out of range", name)
    if loc.zone == DevZone.DATA and loc.present and not loc.is_genkey:
        size = 36 if loc.slot < 8 else (416 if loc.slot == 8 else 72)
        if loc.end > size:
            raise _fail(
                f"bytes {loc.offset}-{loc.end - 1} do not fit slot {loc.slot} ({size} bytes)", name
            )


def validate_cert_def(d: CertDef) -> None:
    """Raise CertDefError (field named) unless the definition fits every device."""
    if not isinstance(d.cert_type, CertType):
        raise _fail(f"unknown cert type {d.cert_type!r}", "type")
    for name in ("template_id", "chain_id"):
        if not 0 <= getattr(d, name) <= 15:
            raise _fail(f"{getattr(d, name)} does not fit 4 bits", name)
    if not 0 <= d.private_key_slot <= 15:
        raise _fail(f"slot {d.private_key_slot} out of range 0-15", "private_key_slot")
    if not isinstance(d.sn_source, SnSource):
        raise _fail(f"unknown SN source {d.sn_source!r}", "sn_source")
    for name in ("issue_date_format", "expire_date_format"):
        if not isinstance(getattr(d, name), DateFormat):
            raise _fail(f"unknown date format {getattr(d, name)!r}", name)
    if not 0 <= d.expire_years <= COMP_EXPIRE_YEARS_MAX:
        raise _fail(
            f"{d.expire_years} is outside 0-{COMP_EXPIRE_YEARS_MAX} (7 bits of the "
            "compressed dates, format 1)",
            "expire_years",
        )
    for name in ("cert_sn_dev_loc", "public_key_dev_loc", "comp_cert_dev_loc"):
        _check_dev_loc(getattr(d, name), name)
    if d.public_key_dev_loc.present and d.public_key_dev_loc.count not in (64, 72):
        raise _fail(
            f"count {d.public_key_dev_loc.count}: a public key is 64 bytes (GenKey) "
            "or 72 bytes (padded in a slot)",
            "public_key_dev_loc",
        )
    if d.comp_cert_dev_loc.present and d.comp_cert_dev_loc.count != 72:
        raise _fail(
            f"count {d.comp_cert_dev_loc.count}: a compressed certificate is 72 bytes",
            "comp_cert_dev_loc",
        )
    size = len(d.cert_template)
    if size == 0:
        raise _fail("empty template", "cert_template")
    std = d.std_cert_elements
    for name, loc in zip(_STD_NAMES, std, strict=True):
        if loc.offset < 0 or loc.count < 0 or (loc.count and loc.end > size):
            raise _fail(
                f"bytes {loc.offset}..{loc.end} are outside the {size}-byte template",
                f"std_cert_elements[{name}]",
            )
    if d.tbs_cert_loc.count and d.tbs_cert_loc.end > size:
        raise _fail(
            f"bytes {d.tbs_cert_loc.offset}..{d.tbs_cert_loc.end} outside the template",
            "tbs_cert_loc",
        )
    ids = set()
    for el in d.cert_elements:
        fld = f"cert_elements[{el.id!r}]"
        if el.id in ids:
            raise _fail("duplicate element id", fld)
        ids.add(el.id)
        _check_dev_loc(el.device_loc, fld + ".device_loc")
        if el.cert_loc.count and el.cert_loc.end > size:
            raise _fail(
                f"cert bytes {el.cert_loc.offset}..{el.cert_loc.end} outside the template", fld
            )
        if el.cert_loc.count and el.device_loc.count != el.cert_loc.count:
            raise _fail(
                f"device count {el.device_loc.count} != cert count {el.cert_loc.count}", fld
            )
    _check_sizes(d)
    if d.cert_type == CertType.X509:
        _check_x509(d)


def _check_sizes(d: CertDef) -> None:
    std = d.std_cert_elements
    expect = {"public_key": 64, "signer_id": 4, "auth_key_id": 20, "subj_key_id": 20}
    for name, want in expect.items():
        loc = getattr(std, name)
        if loc.count not in (0, want):
            raise _fail(
                f"count {loc.count}, must be {want} (or 0 when absent)",
                f"std_cert_elements[{name}]",
            )
    for name, fmt_name in (
        ("issue_date", "issue_date_format"),
        ("expire_date", "expire_date_format"),
    ):
        loc = getattr(std, name)
        fmt: DateFormat = getattr(d, fmt_name)
        if loc.count not in (0, fmt.size):
            raise _fail(
                f"count {loc.count} but {fmt.c_name} dates are {fmt.size} bytes",
                f"std_cert_elements[{name}]",
            )
    sn = std.cert_sn
    fixed = d.sn_source.fixed_size()
    if sn.count:
        if fixed is not None and sn.count != fixed:
            raise _fail(
                f"{d.sn_source.c_name} always gives a {fixed}-byte serial number, "
                f"the template has {sn.count}: it would change length between devices",
                "std_cert_elements[cert_sn]",
            )
        if d.sn_source.is_hash and sn.count > 32:
            raise _fail(
                f"hashed serial numbers are at most 32 bytes, got {sn.count}",
                "std_cert_elements[cert_sn]",
            )
        if (
            d.sn_source == SnSource.STORED
            and d.cert_sn_dev_loc.present
            and d.cert_sn_dev_loc.count != sn.count
        ):
            raise _fail(
                f"stored SN is {d.cert_sn_dev_loc.count} bytes on the chip but "
                f"{sn.count} in the template",
                "cert_sn_dev_loc",
            )
    if d.sn_source == SnSource.SIGNER_ID and std.signer_id.count == 0 and sn.count:
        raise _fail("SNSRC_SIGNER_ID needs the signer id element", "std_cert_elements[signer_id]")
    if d.cert_type == CertType.CUSTOM and std.signature.count not in (0, 64):
        raise _fail(
            "custom certificates hold a raw 64-byte signature", "std_cert_elements[signature]"
        )


def _check_x509(d: CertDef) -> None:
    t = d.cert_template
    std = d.std_cert_elements
    try:
        outer = read_tlv(t, 0, what="template certificate")
    except CertError as exc:
        raise _fail(exc.message, "cert_template") from exc
    if outer.tag != 0x30 or outer.end != len(t):
        raise _fail(f"not one DER SEQUENCE of {len(t)} bytes", "cert_template")
    tbs = d.tbs_cert_loc
    if tbs.count:
        try:
            inner = read_tlv(t, tbs.offset, what="tbsCertificate")
        except CertError as exc:
            raise _fail(exc.message, "tbs_cert_loc") from exc
        if inner.tag != 0x30 or inner.end != tbs.end:
            raise _fail(
                f"offset {tbs.offset} count {tbs.count} is not the tbsCertificate "
                "SEQUENCE of the template",
                "tbs_cert_loc",
            )
    sig = std.signature
    if sig.count:
        if t[sig.offset] != 0x03 or sig.end != len(t):
            raise _fail(
                "must point at the signatureValue BIT STRING and run to the end of the template",
                "std_cert_elements[signature]",
            )
        hdr = outer.header_size
        sizes = {
            len(encode_length(sig.offset - hdr + n)) for n in range(SIG_DER_MIN, SIG_DER_MAX + 1)
        }
        if sizes != {hdr - 1}:
            raise _fail(
                f"the certificate length ({sig.offset - hdr} + signature "
                f"{SIG_DER_MIN}-{SIG_DER_MAX} bytes) would change its number of DER "
                "length bytes between devices",
                "std_cert_elements[signature]",
            )
    pk = std.public_key
    if pk.count and (pk.offset < 4 or t[pk.offset - 4 : pk.offset] != b"\x03\x42\x00\x04"):
        raise _fail(
            "must follow '03 42 00 04' (uncompressed P-256 subjectPublicKey)",
            "std_cert_elements[public_key]",
        )
    sn = std.cert_sn
    if sn.count and (sn.offset < 2 or t[sn.offset - 2] != 0x02 or t[sn.offset - 1] != sn.count):
        raise _fail(
            f"the template's serialNumber is not a {sn.count}-byte INTEGER at offset "
            f"{sn.offset}: its DER length would change between devices",
            "std_cert_elements[cert_sn]",
        )
    for name, fmt_name in (
        ("issue_date", "issue_date_format"),
        ("expire_date", "expire_date_format"),
    ):
        loc = getattr(std, name)
        fmt: DateFormat = getattr(d, fmt_name)
        if not loc.count or fmt not in (DateFormat.RFC5280_UTC, DateFormat.RFC5280_GEN):
            continue
        tag = 0x17 if fmt == DateFormat.RFC5280_UTC else 0x18
        kind = "UTCTime" if tag == 0x17 else "GeneralizedTime"
        if loc.offset < 2 or t[loc.offset - 2] != tag or t[loc.offset - 1] != fmt.size:
            raise _fail(
                f"{fmt.c_name} needs a {fmt.size}-byte {kind} at offset {loc.offset} "
                "of the template",
                f"std_cert_elements[{name}]",
            )
    for name in ("auth_key_id", "subj_key_id"):
        loc = getattr(std, name)
        if loc.count and t[loc.offset - 1] != 20:
            raise _fail(
                "the template's key identifier is not a 20-byte OCTET STRING",
                f"std_cert_elements[{name}]",
            )
