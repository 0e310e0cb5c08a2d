"""Write a CertDef as C source, in the layout of Microchip's generated cert-def files
(template byte array, optional element array, designated ``atcacert_def_t`` initialiser with
``// STDCERT_x`` comments), which ``load_cert_defs`` reads back to an equal CertDef."""

from __future__ import annotations

import re

from .certdef import CertDef, CertLoc, DeviceLoc, StdCertElement
from .errors import AtcacertCode, CertError

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


def c_hex_bytes(data: bytes, indent: str = "    ") -> str:
    """Comma-separated ``0x..`` lines, 16 bytes a line with a gap after 8."""
    lines = []
    for i in range(0, len(data), 16):
        chunk = data[i : i + 16]
        left = ", ".join(f"0x{b:02X}" for b in chunk[:8])
        right = ", ".join(f"0x{b:02X}" for b in chunk[8:])
        line = indent + left + ("," + "  " + right if right else "")
        lines.append(line)
    return ",\n".join(lines)


def c_byte_array(
    name: str, data: bytes, *, const: bool = True, comment: str | None = None, sized: bool = False
) -> str:
    head = f"/* {comment} */\n" if comment else ""
    size = str(len(data)) if sized else ""
    return (
        f"{head}{'const ' if const else ''}uint8_t {name}[{size}] = {{\n{c_hex_bytes(data)}\n}};\n"
    )


def c_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '\\"':
            out.append("\\" + ch)
        elif 32 <= ord(ch) < 127:
            out.append(ch)
        else:
            out.extend(f'\\x{b:02X}""' for b in ch.encode("utf-8"))
    return '"' + "".join(out) + '"'


def check_c_name(name: str, what: str) -> str:
    if not _NAME_RE.match(name):
        raise CertError(AtcacertCode.BAD_PARAMS, f"{name!r} is not a C identifier", field=what)
    return name


def _dev_loc(loc: DeviceLoc, indent: str) -> str:
    i2 = indent + "    "
    return (
        f"{{\n{i2}.zone      = {loc.zone.c_name},\n{i2}.slot      = {loc.slot},\n"
        f"{i2}.is_genkey = {int(loc.is_genkey)},\n{i2}.offset    = {loc.offset},\n"
        f"{i2}.count     = {loc.count}\n{indent}}}"
    )


def _cert_loc(loc: CertLoc, indent: str) -> str:
    i2 = indent + "    "
    return f"{{\n{i2}.offset = {loc.offset},\n{i2}.count  = {loc.count}\n{indent}}}"


def cert_def_names(name: str) -> tuple[str, str, str]:
    """(def, template, elements) variable names for a def name such as ``2_device``."""
    base = name[len("g_cert_def_") :] if name.startswith("g_cert_def_") else name
    check_c_name("g_" + base, "name")
    return f"g_cert_def_{base}", f"g_cert_template_{base}", f"g_cert_elements_{base}"


def cert_def_to_c(d: CertDef, name: str, *, include: bool = True) -> str:
    """C source defining ``d`` as ``g_cert_def_<name>`` (template, elements)."""
    def_name, tmpl_name, el_name = cert_def_names(name)
    out: list[str] = []
    if include:
        out.append('#include "atcacert/atcacert_def.h"\n')
    out.append(c_byte_array(tmpl_name, d.cert_template))
    if d.cert_elements:
        items = []
        for el in d.cert_elements:
            items.append(
                f"    {{\n        .id         = {c_string(el.id)},\n"
                f"        .device_loc = {_dev_loc(el.device_loc, '        ')},\n"
                f"        .cert_loc   = {_cert_loc(el.cert_loc, '        ')}\n    }}"
            )
        out.append(
            f"const atcacert_cert_element_t {el_name}[] = {{\n" + ",\n".join(items) + "\n};\n"
        )
    std = []
    for idx, loc in zip(StdCertElement, d.std_cert_elements, strict=True):
        std.append(
            f"        {{ // {idx.c_name}\n            .offset = {loc.offset},\n"
            f"            .count  = {loc.count}\n        }}"
        )
    fields = [
        f".type                   = {d.cert_type.c_name}",
        f".template_id            = {d.template_id}",
        f".chain_id               = {d.chain_id}",
        f".private_key_slot       = {d.private_key_slot}",
        f".sn_source              = {d.sn_source.c_name}",
        f".cert_sn_dev_loc        = {_dev_loc(d.cert_sn_dev_loc, '    ')}",
        f".issue_date_format      = {d.issue_date_format.c_name}",
        f".expire_date_format     = {d.expire_date_format.c_name}",
        f".tbs_cert_loc           = {_cert_loc(d.tbs_cert_loc, '    ')}",
        f".expire_years           = {d.expire_years}",
        f".public_key_dev_loc     = {_dev_loc(d.public_key_dev_loc, '    ')}",
        f".comp_cert_dev_loc      = {_dev_loc(d.comp_cert_dev_loc, '    ')}",
        ".std_cert_elements      = {\n" + ",\n".join(std) + "\n    }",
    ]
    if d.cert_elements:
        fields += [
            f".cert_elements          = {el_name}",
            f".cert_elements_count    = sizeof({el_name}) / sizeof({el_name}[0])",
        ]
    else:
        fields += [".cert_elements          = NULL", ".cert_elements_count    = 0"]
    fields += [
        f".cert_template          = {tmpl_name}",
        f".cert_template_size     = sizeof({tmpl_name})",
    ]
    if d.ca_cert_def:
        check_c_name(d.ca_cert_def, "ca_cert_def")
        out.insert(1 if include else 0, f"extern const atcacert_def_t {d.ca_cert_def};\n")
        fields.append(f".ca_cert_def            = &{d.ca_cert_def}")
    out.append(f"const atcacert_def_t {def_name} = {{\n    " + ",\n    ".join(fields) + "\n};\n")
    return "\n".join(out)
