"""``atcaprov_cert_info_N.c``: what a provisioning client needs to know about its signer.

One file per signer, written by the server's signer set-up tool (``CertInfo.to_c_source``) and
read by the client (``load_cert_info``) and the server: the signer and device certificate
definitions, the signer's identity (signer id, public key and key id, the root CA certificate
of the chain), a display name, and the chip slots the certificates use. The file is C a
firmware engineer can compile (it carries its own guarded typedef); we only read it, with the
parser of ``atcaprov.atcacert``. See docs/certinfo.md for the format.

Only ``load_cert_info(path)`` touches the file system; everything else takes text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from .atcacert.build import compress, get_signer_id, rebuild
from .atcacert.certdef import CertDef, DeviceLoc, DevZone
from .atcacert.csource import CFile, CVar, InitList, Node, parse_c_source
from .atcacert.cwriter import (
    c_byte_array,
    c_hex_bytes,
    c_string,
    cert_def_names,
    cert_def_to_c,
)
from .atcacert.errors import AtcacertCode, CertError, CSourceError
from .atcacert.keys import key_id, public_key_object
from .atcacert.loader import StructReader
from .crypto import CryptoFormatError, certificate_public_key, public_key_xy
from .errors import AtcaprovError

CERT_INFO_VERSION = 1
CERT_INFO_TYPE = "atcaprov_cert_info_t"
CERT_INFO_VAR = "g_atcaprov_cert_info"
INFO_FIELDS = (
    "version",
    "signer_name",
    "signer_id",
    "signer_public_key",
    "signer_key_id",
    "root_cert",
    "root_cert_size",
    "signer_cert_def",
    "device_cert_def",
    "slots",
)
SLOT_FIELDS = ("device_private_key", "device_cert", "signer_public_key", "signer_cert")


class CertInfoError(AtcaprovError):
    """A cert info is inconsistent (``field`` names the part)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        self.message = message
        super().__init__(f"cert info{' [' + field + ']' if field else ''}: {message}")


@dataclass(frozen=True)
class CertInfoSlots:
    """Chip slots the certificates use (derived from the two definitions)."""

    device_private_key: int
    device_cert: int
    signer_public_key: int
    signer_cert: int


def _slot(loc: DeviceLoc, what: str) -> int:
    if loc.zone != DevZone.DATA:
        raise CertInfoError(f"{what} is not in a data slot ({loc.zone.c_name})", field=what)
    return loc.slot


@dataclass(frozen=True)
class CertInfo:
    """The signer a client needs and the certificate layout on the chip."""

    signer_name: str
    signer_id: bytes
    signer_public_key: bytes
    root_cert_der: bytes
    signer_cert_def: CertDef
    device_cert_def: CertDef

    def __post_init__(self) -> None:
        if not self.signer_name or len(self.signer_name) > 64 or not self.signer_name.isprintable():
            raise CertInfoError(
                "signer name must be 1-64 printable characters", field="signer_name"
            )
        if len(self.signer_id) != 2:
            raise CertInfoError(
                f"signer id is 2 bytes, got {len(self.signer_id)}", field="signer_id"
            )
        try:
            public_key_object(self.signer_public_key)
        except CertError as exc:
            raise CertInfoError(exc.message, field="signer_public_key") from exc
        if len(self.signer_public_key) != 64:
            raise CertInfoError("signer public key is 64 bytes X||Y", field="signer_public_key")
        try:
            root = x509.load_der_x509_certificate(self.root_cert_der)
        except ValueError as exc:
            raise CertInfoError(
                f"root certificate is not DER X.509: {exc}", field="root_cert"
            ) from exc
        try:
            certificate_public_key(root)
        except CryptoFormatError as exc:
            raise CertInfoError("root certificate key is not EC P-256", field="root_cert") from exc
        self.slots  # noqa: B018 - validates the slot layout
        if self.signer_cert_def.public_key_dev_loc.count != 72:
            raise CertInfoError(
                "the signer public key must be stored padded (72 bytes)",
                field="signer_cert_def.public_key_dev_loc",
            )
        if (
            not self.device_cert_def.comp_cert_dev_loc.present
            or not self.signer_cert_def.comp_cert_dev_loc.present
        ):
            raise CertInfoError(
                "both definitions need a compressed-cert location", field="comp_cert_dev_loc"
            )
        used = [
            ("device_cert", self.device_cert_def.comp_cert_dev_loc),
            ("signer_public_key", self.signer_cert_def.public_key_dev_loc),
            ("signer_cert", self.signer_cert_def.comp_cert_dev_loc),
        ]
        for i, (name_a, a) in enumerate(used):
            for name_b, b in used[i + 1 :]:
                if a.slot == b.slot and a.offset < b.end and b.offset < a.end:
                    raise CertInfoError(
                        f"{name_a} and {name_b} overlap in slot {a.slot}", field="slots"
                    )

    # ---- derived ------------------------------------------------------------------------
    @property
    def signer_key_id(self) -> bytes:
        return key_id(self.signer_public_key)

    @property
    def root_public_key(self) -> bytes:
        root = x509.load_der_x509_certificate(self.root_cert_der)
        return public_key_xy(certificate_public_key(root))  # checked in __post_init__

    @property
    def slots(self) -> CertInfoSlots:
        return CertInfoSlots(
            self.device_cert_def.private_key_slot,
            _slot(self.device_cert_def.comp_cert_dev_loc, "device_cert_def.comp_cert_dev_loc"),
            _slot(self.signer_cert_def.public_key_dev_loc, "signer_cert_def.public_key_dev_loc"),
            _slot(self.signer_cert_def.comp_cert_dev_loc, "signer_cert_def.comp_cert_dev_loc"),
        )

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_certs(
        cls,
        signer_cert_der: bytes,
        root_cert_der: bytes,
        signer_name: str,
        device_cert_def: CertDef,
        signer_cert_def: CertDef,
    ) -> CertInfo:
        """From the signer's certificate and its root (what the signer set-up tool has).

        Checks that the root signed the signer certificate and that the signer definition
        reproduces it (compress + rebuild give the same DER)."""
        try:
            signer = x509.load_der_x509_certificate(signer_cert_der)
            root = x509.load_der_x509_certificate(root_cert_der)
        except ValueError as exc:
            raise CertInfoError(f"not a DER certificate: {exc}", field="signer_cert") from exc
        try:
            signer.verify_directly_issued_by(root)
        except (ValueError, TypeError) as exc:
            raise CertInfoError(
                f"the root did not issue the signer certificate: {exc}", field="signer_cert"
            ) from exc
        except InvalidSignature as exc:
            raise CertInfoError(
                "signer certificate signature does not verify with the root key",
                field="signer_cert",
            ) from exc
        try:
            signer_pub = public_key_xy(certificate_public_key(signer))
        except CryptoFormatError as exc:
            raise CertInfoError("signer key is not EC P-256", field="signer_cert") from exc
        signer_id = (
            get_signer_id(signer_cert_def, signer_cert_der)
            if signer_cert_def.std_cert_elements.signer_id.count
            else b"\x00\x00"
        )
        comp = compress(signer_cert_def, signer_cert_der)
        try:
            root_pub = public_key_xy(certificate_public_key(root))
        except CryptoFormatError as exc:
            raise CertInfoError("root certificate key is not EC P-256", field="root_cert") from exc
        rebuilt = rebuild(signer_cert_def, comp, signer_pub, None, ca_public_key=root_pub)
        if rebuilt != signer_cert_der:
            raise CertInfoError(
                "the signer definition does not rebuild the signer certificate byte for byte",
                field="signer_cert_def",
            )
        return cls(
            signer_name,
            signer_id,
            signer_pub,
            bytes(root_cert_der),
            signer_cert_def,
            device_cert_def,
        )

    # ---- writing ------------------------------------------------------------------------
    def to_c_source(
        self,
        *,
        index: int = 0,
        signer_def_name: str = "1_signer",
        device_def_name: str = "2_device",
    ) -> str:
        """The complete ``atcaprov_cert_info_<index>.c`` text."""
        signer_var = cert_def_names(signer_def_name)[0]
        device_var = cert_def_names(device_def_name)[0]
        device_def = self.device_cert_def
        if device_def.ca_cert_def is not None:
            device_def = replace(device_def, ca_cert_def=signer_var)
        s = self.slots
        parts = [
            _HEADER.format(index=index, name=self.signer_name.replace("*/", "* /")),
            _TYPEDEF,
            "/* ---- signer certificate definition ---- */",
            cert_def_to_c(self.signer_cert_def, signer_def_name, include=False),
            "/* ---- device certificate definition ---- */",
            cert_def_to_c(device_def, device_def_name, include=False),
            "/* ---- signer identity ---- */",
            c_byte_array(
                "g_atcaprov_signer_public_key",
                self.signer_public_key,
                sized=True,
                comment="signer public key, X || Y (64 bytes)",
            ),
            c_byte_array(
                "g_atcaprov_root_cert",
                self.root_cert_der,
                comment="root CA certificate of the chain (DER)",
            ),
            f"const {CERT_INFO_TYPE} {CERT_INFO_VAR} = {{\n"
            f"    .version           = {CERT_INFO_VERSION},\n"
            f"    .signer_name       = {c_string(self.signer_name)},\n"
            f"    .signer_id         = {{ 0x{self.signer_id[0]:02X}, "
            f"0x{self.signer_id[1]:02X} }},\n"
            f"    .signer_public_key = g_atcaprov_signer_public_key,\n"
            f"    .signer_key_id     = {{\n{c_hex_bytes(self.signer_key_id, ' ' * 8)}\n"
            f"    }},\n"
            f"    .root_cert         = g_atcaprov_root_cert,\n"
            f"    .root_cert_size    = sizeof(g_atcaprov_root_cert),\n"
            f"    .signer_cert_def   = &{signer_var},\n"
            f"    .device_cert_def   = &{device_var},\n"
            f"    .slots             = {{\n"
            f"        .device_private_key = {s.device_private_key},\n"
            f"        .device_cert        = {s.device_cert},\n"
            f"        .signer_public_key  = {s.signer_public_key},\n"
            f"        .signer_cert        = {s.signer_cert}\n"
            f"    }}\n}};\n",
        ]
        return "\n".join(parts)


_HEADER = """\
/*
 * atcaprov_cert_info_{index}.c - provisioning information for signer "{name}".
 *
 * Written by the atcaprov signer set-up tool. A provisioning client reads this file (it is
 * not compiled for that) to learn which signer it must ask the provisioning server for, and
 * where the device and signer certificates go on the ATECC508A. Firmware may compile it
 * against CryptoAuthLib's atcacert_def.h (tag 20180718 or later when the device definition
 * links to the signer's with .ca_cert_def; any version otherwise).
 */
#include "atcacert/atcacert_def.h"
"""

_TYPEDEF = """\
#ifndef ATCAPROV_CERT_INFO_T_DEFINED
#define ATCAPROV_CERT_INFO_T_DEFINED
/* Slots the certificates use on the chip. */
typedef struct atcaprov_slots_s {
    uint8_t device_private_key; /* device key, made by GenKey (public key via GenKey) */
    uint8_t device_cert;        /* 72-byte compressed device certificate */
    uint8_t signer_public_key;  /* signer public key, 72-byte padded form */
    uint8_t signer_cert;        /* 72-byte compressed signer certificate */
} atcaprov_slots_t;

/* Cert info, format version 1. */
typedef struct atcaprov_cert_info_s {
    uint32_t              version;           /* 1 */
    const char*           signer_name;       /* display name of the signer */
    uint8_t               signer_id[2];      /* as in the compressed certificates */
    const uint8_t*        signer_public_key; /* 64 bytes, X || Y */
    uint8_t               signer_key_id[20]; /* SHA1(04 || X || Y) */
    const uint8_t*        root_cert;         /* root CA certificate, DER */
    size_t                root_cert_size;
    const atcacert_def_t* signer_cert_def;
    const atcacert_def_t* device_cert_def;
    atcaprov_slots_t      slots;
} atcaprov_cert_info_t;
#endif
"""


# ---- reading ------------------------------------------------------------------------------------
def _info_var(cfile: CFile) -> CVar:
    found = [v for v in cfile.of_type(CERT_INFO_TYPE) if v.init is not None]
    if len(found) != 1:
        raise CSourceError(
            f"{len(found)} {CERT_INFO_TYPE} definitions found",
            filename=cfile.filename,
            line=1,
            column=1,
            expected=f"exactly one 'const {CERT_INFO_TYPE} ... = {{...}};'",
        )
    return found[0]


def _fixed_bytes(reader: StructReader, node: Node, size: int, what: str) -> bytes:
    if isinstance(node, InitList):
        values = []
        for desig, item in node.items:
            if desig:
                raise reader.error("designators are not supported here", item)
            values.append(reader.ranged(item, 0, 255, what))
        data = bytes(values)
    else:
        data, _var = reader.byte_array(node, what)
    if len(data) != size:
        raise reader.error(f"{what} has {len(data)} bytes", node, f"{size} bytes")
    return data


def parse_cert_info(text: str, filename: str = "<string>") -> CertInfo:
    """Read the text of an ``atcaprov_cert_info_N.c`` file."""
    cfile = parse_c_source(text, filename)
    var = _info_var(cfile)
    reader = StructReader(cfile)
    assert var.init is not None
    f = reader.fields(var.init, INFO_FIELDS, var.name)
    for name in INFO_FIELDS:
        if name not in f:
            raise reader.error(f"{var.name} has no .{name}", var.init, f".{name} = ...")
    version = reader.integer(f["version"])
    if version != CERT_INFO_VERSION:
        raise reader.error(
            f"cert info version {version} is not supported", f["version"], str(CERT_INFO_VERSION)
        )
    name = reader.string(f["signer_name"], "signer_name")
    signer_id = _fixed_bytes(reader, f["signer_id"], 2, "signer_id")
    signer_pub = _fixed_bytes(reader, f["signer_public_key"], 64, "signer_public_key")
    key_id_given = _fixed_bytes(reader, f["signer_key_id"], 20, "signer_key_id")
    if key_id_given != key_id(signer_pub):
        raise reader.error(
            "signer_key_id is not SHA1(04 || signer public key)",
            f["signer_key_id"],
            key_id(signer_pub).hex().upper(),
        )
    root, root_var = reader.byte_array(f["root_cert"], "root_cert")
    size = reader.integer(f["root_cert_size"])
    if size != len(root):
        raise reader.error(
            f"root_cert_size = {size} but {root_var.name} holds {len(root)} bytes",
            f["root_cert_size"],
            str(len(root)),
        )
    defs = {}
    for which in ("signer_cert_def", "device_cert_def"):
        ref = reader.ref(f[which], which)
        if ref is None or ref.type_name != "atcacert_def_t":
            raise reader.error(
                f"{which} must point at an atcacert_def_t", f[which], "&g_cert_def_..."
            )
        defs[which] = reader.cert_def(ref)
    device = defs["device_cert_def"]
    signer_ref = reader.ref(f["signer_cert_def"], "signer_cert_def")
    assert signer_ref is not None
    if device.ca_cert_def is not None and device.ca_cert_def != signer_ref.name:
        raise reader.error(
            f"device cert def links to {device.ca_cert_def}, not to the signer "
            f"def {signer_ref.name}",
            f["device_cert_def"],
        )
    slots = reader.fields(f["slots"], SLOT_FIELDS, "slots")
    try:
        info = CertInfo(name, signer_id, signer_pub, root, defs["signer_cert_def"], device)
    except CertInfoError as exc:
        node = f.get((exc.field or "").split(".")[0], var.init)
        raise reader.error(exc.message, node) from exc
    actual = info.slots
    for slot_name in SLOT_FIELDS:
        if slot_name not in slots:
            raise reader.error(f"slots has no .{slot_name}", f["slots"], f".{slot_name} = N")
        given = reader.integer(slots[slot_name])
        if given != getattr(actual, slot_name):
            raise reader.error(
                f"slots.{slot_name} = {given} disagrees with the cert "
                f"definitions ({getattr(actual, slot_name)})",
                slots[slot_name],
                str(getattr(actual, slot_name)),
            )
    return info


def load_cert_info(path: str | os.PathLike[str]) -> CertInfo:
    """Read an ``atcaprov_cert_info_N.c`` file; errors name file, line and column."""
    filename = os.fspath(path)
    try:
        with open(filename, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise CertInfoError(f"cannot read {filename}: {exc.strerror}", field="path") from exc
    except UnicodeDecodeError as exc:
        raise CSourceError(
            f"not UTF-8 text ({exc.reason})", filename=filename, line=1, column=exc.start + 1
        ) from exc
    return parse_cert_info(text, filename)


__all__ = [
    "AtcacertCode",
    "CertError",
    "CertInfo",
    "CertInfoError",
    "CertInfoSlots",
    "load_cert_info",
    "parse_cert_info",
]
