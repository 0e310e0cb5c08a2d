"""Turn parsed C variables into CertDefs: ``load_cert_defs(c_text, filename)``.

Maps ``atcacert_def_t`` / ``atcacert_cert_element_t`` / location initialisers (designated or
positional, 2016-2017 field order plus ``ca_cert_def``) to the typed model, resolving enum
names, ``sizeof`` and references to the template and element arrays. Any mismatch (unknown
field, wrong count, template size that disagrees with the array) is a ``CSourceError`` at the
place in the file, and definition problems are reported with the variable's position.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .certdef import (
    CertDef,
    CertElement,
    CertLoc,
    CertType,
    DeviceLoc,
    DevZone,
    StdCertElement,
    StdCertElements,
)
from .csource import (
    AddrOf,
    CFile,
    CVar,
    Evaluator,
    Ident,
    Index,
    InitList,
    Node,
    Num,
    Str,
    parse_c_source,
)
from .dates import COMP_EXPIRE_YEARS_MAX, DateFormat
from .errors import CertDefError, CSourceError
from .sn import SnSource

CONSTANTS: dict[str, int] = {
    **{e.c_name: int(e) for e in CertType},
    **{e.c_name: int(e) for e in DevZone},
    **{e.c_name: int(e) for e in SnSource},
    **{e.c_name: int(e) for e in DateFormat},
    **{e.c_name: int(e) for e in StdCertElement},
    "STDCERT_NUM_ELEMENTS": 8,
    "TF_NONE": 0,
    "TRUE": 1,
    "FALSE": 0,
    "true": 1,
    "false": 0,
}

DEF_FIELDS = (
    "type",
    "template_id",
    "chain_id",
    "private_key_slot",
    "sn_source",
    "cert_sn_dev_loc",
    "issue_date_format",
    "expire_date_format",
    "tbs_cert_loc",
    "expire_years",
    "public_key_dev_loc",
    "comp_cert_dev_loc",
    "std_cert_elements",
    "cert_elements",
    "cert_elements_count",
    "cert_template",
    "cert_template_size",
    "ca_cert_def",
)
DEV_LOC_FIELDS = ("zone", "slot", "is_genkey", "offset", "count")
CERT_LOC_FIELDS = ("offset", "count")
ELEMENT_FIELDS = ("id", "device_loc", "cert_loc", "transforms")


class StructReader:
    """Reads brace initialisers of known structures with an Evaluator."""

    def __init__(self, cfile: CFile, constants: dict[str, int] | None = None) -> None:
        self.cfile = cfile
        self.ev = Evaluator(cfile, constants if constants is not None else CONSTANTS)

    def error(self, message: str, node: Node | CVar, expected: str | None = None) -> CSourceError:
        return self.ev.error(message, node, expected)

    def fields(self, node: Node, names: Sequence[str], what: str) -> dict[str, Node]:
        """Field name -> value node of a struct initialiser (designated or positional)."""
        if not isinstance(node, InitList):
            raise self.error(f"{what} must be a brace initialiser", node, "'{'")
        out: dict[str, Node] = {}
        pos = 0
        for desig, value in node.items:
            if desig:
                kind, name = desig[0]
                if kind != "." or not isinstance(name, str):
                    raise self.error(f"index designator in {what}", value, "'.field ='")
                if name not in names:
                    raise self.error(
                        f"unknown field {name!r} of {what}", value, "one of " + ", ".join(names)
                    )
                if len(desig) > 1:
                    raise self.error(
                        "nested designators are not supported", value, f"'.{name} = {{...}}'"
                    )
                pos = names.index(name) + 1
            else:
                if pos >= len(names):
                    raise self.error(f"too many values for {what}", value, f"at most {len(names)}")
                name = names[pos]
                pos += 1
            if name in out:
                raise self.error(f"field {name!r} of {what} given twice", value)
            out[name] = value
        return out

    def integer(self, node: Node | None, default: int = 0) -> int:
        return default if node is None else self.ev.integer(node)

    def ranged(self, node: Node | None, lo: int, hi: int, what: str, default: int = 0) -> int:
        value = self.integer(node, default)
        if not lo <= value <= hi:
            assert node is not None
            raise self.error(f"{what} = {value} out of range", node, f"{lo}-{hi}")
        return value

    def enum(self, node: Node | None, enum: Any, what: str, default: int = 0) -> Any:
        value = self.integer(node, default)
        try:
            return enum(value)
        except ValueError as exc:
            assert node is not None
            names = ", ".join(e.c_name for e in enum)
            raise self.error(
                f"{what} = {value} is not a known value", node, f"one of {names}"
            ) from exc

    def device_loc(self, node: Node | None, what: str) -> DeviceLoc:
        if node is None:
            return DeviceLoc()
        f = self.fields(node, DEV_LOC_FIELDS, what)
        zone = self.enum(f.get("zone"), DevZone, what + ".zone")
        assert isinstance(zone, DevZone)
        return DeviceLoc(
            zone,
            self.ranged(f.get("slot"), 0, 15, what + ".slot"),
            bool(self.ranged(f.get("is_genkey"), 0, 1, what + ".is_genkey")),
            self.ranged(f.get("offset"), 0, 0xFFFF, what + ".offset"),
            self.ranged(f.get("count"), 0, 0xFFFF, what + ".count"),
        )

    def cert_loc(self, node: Node | None, what: str) -> CertLoc:
        if node is None:
            return CertLoc()
        f = self.fields(node, CERT_LOC_FIELDS, what)
        return CertLoc(
            self.ranged(f.get("offset"), 0, 0xFFFF, what + ".offset"),
            self.ranged(f.get("count"), 0, 0xFFFF, what + ".count"),
        )

    def ref(self, node: Node, what: str) -> CVar | None:
        """The variable a pointer field refers to (``name``, ``&name``, ``&name[0]``)."""
        if isinstance(node, Ident) and node.name == "NULL":
            return None
        if isinstance(node, Num) and node.value == 0:
            return None
        if isinstance(node, (Ident, AddrOf)):
            return self.ev.variable(node.name, node)
        if isinstance(node, Index):
            return self.ev.variable(node.name, node)
        raise self.error(f"{what} must name a variable", node, "a name, &name or NULL")

    def string(self, node: Node, what: str) -> str:
        if not isinstance(node, Str):
            raise self.error(f"{what} must be a string", node, '"..."')
        return node.value

    def byte_array(self, node: Node, what: str) -> tuple[bytes, CVar]:
        var = self.ref(node, what)
        if var is None:
            raise self.error(f"{what} is NULL", node, "a byte array")
        return self.ev.bytes_of(var), var

    # ---- atcacert structures ----------------------------------------------------------
    def elements(self, var: CVar, count_node: Node | None, what: str) -> tuple[CertElement, ...]:
        if not isinstance(var.init, InitList):
            raise self.error(f"{var.name!r} has no initialiser", var, "'{ {...}, ... }'")
        out = []
        for i, (desig, item) in enumerate(var.init.items):
            if desig:
                raise self.error("designators in the element array are not supported", item)
            name = f"{var.name}[{i}]"
            f = self.fields(item, ELEMENT_FIELDS, name)
            if "id" not in f:
                raise self.error(f"{name} has no id", item, '.id = "..."')
            ident = self.string(f["id"], name + ".id")
            if len(ident.encode()) > 15:
                raise self.error(
                    f"element id {ident!r} longer than 15 characters",
                    f["id"],
                    "at most 15 characters (char[16])",
                )
            tf = f.get("transforms")
            if tf is not None:
                self._no_transforms(tf, name)
            out.append(
                CertElement(
                    ident,
                    self.device_loc(f.get("device_loc"), name + ".device_loc"),
                    self.cert_loc(f.get("cert_loc"), name + ".cert_loc"),
                )
            )
        if count_node is not None:
            count = self.integer(count_node)
            if count > len(out) or count < 0:
                raise self.error(
                    f"cert_elements_count = {count} but {var.name} has {len(out)} elements",
                    count_node,
                    f"0-{len(out)}",
                )
            out = out[:count]
        return tuple(out)

    def _no_transforms(self, node: Node, what: str) -> None:
        values = [v for _, v in node.items] if isinstance(node, InitList) else [node]
        for v in values:
            if self.integer(v) != 0:
                raise self.error(
                    f"{what}: element transforms (TF_REVERSE, TF_BIN2HEX...) are not supported",
                    v,
                    "TF_NONE",
                )

    def std_elements(self, node: Node | None) -> StdCertElements:
        locs = [CertLoc()] * 8
        if node is None:
            return StdCertElements.from_list(locs)
        if not isinstance(node, InitList):
            raise self.error("std_cert_elements must be a brace initialiser", node, "'{'")
        pos = 0
        seen: set[int] = set()
        for desig, item in node.items:
            if desig:
                kind, index = desig[0]
                if kind != "[" or isinstance(index, str) or len(desig) > 1:
                    raise self.error("std_cert_elements designator", item, "[STDCERT_x] =")
                pos = self.integer(index)
            if not 0 <= pos < 8:
                raise self.error(f"std_cert_elements index {pos}", item, "0-7 (8 elements)")
            if pos in seen:
                raise self.error(f"std_cert_elements[{pos}] given twice", item)
            seen.add(pos)
            locs[pos] = self.cert_loc(item, f"std_cert_elements[{StdCertElement(pos).c_name}]")
            pos += 1
        return StdCertElements.from_list(locs)

    def cert_def(self, var: CVar) -> CertDef:
        if var.init is None:
            raise self.error(f"{var.name!r} has no initialiser", var, "'= { ... }'")
        f = self.fields(var.init, DEF_FIELDS, var.name)
        if "cert_template" not in f:
            raise self.error(
                f"{var.name} has no cert_template", var.init, ".cert_template = g_cert_template_..."
            )
        template, tvar = self.byte_array(f["cert_template"], "cert_template")
        if "cert_template_size" in f:
            size = self.integer(f["cert_template_size"])
            if size != len(template):
                raise self.error(
                    f"cert_template_size = {size} but {tvar.name} holds {len(template)} bytes",
                    f["cert_template_size"],
                    f"{len(template)} or sizeof({tvar.name})",
                )
        elements: tuple[CertElement, ...] = ()
        if "cert_elements" in f:
            evar = self.ref(f["cert_elements"], "cert_elements")
            if evar is not None:
                elements = self.elements(evar, f.get("cert_elements_count"), evar.name)
            elif "cert_elements_count" in f and self.integer(f["cert_elements_count"]) != 0:
                raise self.error(
                    "cert_elements_count > 0 with cert_elements = NULL",
                    f["cert_elements_count"],
                    "0",
                )
        ca_name = None
        if "ca_cert_def" in f:
            ca = self.ref(f["ca_cert_def"], "ca_cert_def")
            ca_name = ca.name if ca is not None else None
        kinds = {
            "type": (CertType, "type"),
            "sn_source": (SnSource, "sn_source"),
            "issue_date_format": (DateFormat, "issue_date_format"),
            "expire_date_format": (DateFormat, "expire_date_format"),
        }
        enums = {k: self.enum(f.get(k), e, f"{var.name}.{name}") for k, (e, name) in kinds.items()}
        try:
            return CertDef(
                cert_type=enums["type"],
                template_id=self.ranged(f.get("template_id"), 0, 15, "template_id"),
                chain_id=self.ranged(f.get("chain_id"), 0, 15, "chain_id"),
                private_key_slot=self.ranged(f.get("private_key_slot"), 0, 15, "private_key_slot"),
                sn_source=enums["sn_source"],
                cert_sn_dev_loc=self.device_loc(f.get("cert_sn_dev_loc"), "cert_sn_dev_loc"),
                issue_date_format=enums["issue_date_format"],
                expire_date_format=enums["expire_date_format"],
                tbs_cert_loc=self.cert_loc(f.get("tbs_cert_loc"), "tbs_cert_loc"),
                expire_years=self.ranged(
                    f.get("expire_years"), 0, COMP_EXPIRE_YEARS_MAX, "expire_years"
                ),
                public_key_dev_loc=self.device_loc(
                    f.get("public_key_dev_loc"), "public_key_dev_loc"
                ),
                comp_cert_dev_loc=self.device_loc(f.get("comp_cert_dev_loc"), "comp_cert_dev_loc"),
                std_cert_elements=self.std_elements(f.get("std_cert_elements")),
                cert_template=template,
                cert_elements=elements,
                ca_cert_def=ca_name,
            )
        except CertDefError as exc:
            raise self.error(
                f"{var.name} is not a usable certificate definition: "
                f"{exc.message}" + (f" [{exc.field}]" if exc.field else ""),
                var,
            ) from exc


def cert_defs_of(cfile: CFile) -> dict[str, CertDef]:
    reader = StructReader(cfile)
    return {
        var.name: reader.cert_def(var)
        for var in cfile.of_type("atcacert_def_t")
        if var.init is not None
    }


def load_cert_defs(c_source_text: str, filename: str = "<string>") -> dict[str, CertDef]:
    """Every ``atcacert_def_t`` defined in a C source text, by variable name."""
    return cert_defs_of(parse_c_source(c_source_text, filename))
