"""C source parsing (syntax the generators write) and writing (round trip to equal CertDefs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from atcaprov.atcacert import (
    CertDef,
    CSourceError,
    DeviceLoc,
    DevZone,
    SnSource,
    cert_def_to_c,
    load_cert_defs,
    parse_c_source,
)
from atcaprov.atcacert.cwriter import c_hex_bytes
from tests.support.pki import standard_pki


def _template_c(d: CertDef) -> str:
    return c_hex_bytes(d.cert_template).lower()


def _hand_written(d: CertDef) -> str:
    """The standard signer def written by hand in several C styles at once."""
    std = d.std_cert_elements
    tbs = d.tbs_cert_loc
    return f"""\
/* A hand-written definition. */
#include "atcacert/atcacert_def.h"
#ifndef CERT_DEF_H
#define CERT_DEF_H
#define SIGNER_SLOT   (11)
#define COMP_SLOT     12  // compressed signer cert
#if 0
this text is not C at all {{{{
#else
static const uint8_t g_signer_1_ca_public_key[64] = {{ 0 }};
#endif
#endif

const uint8_t g_cert_template_1_signer[] = {{
{_template_c(d)} , // trailing comma
}};

const atcacert_def_t g_cert_def_1_signer =
{{
    .chain_id = 0, .type = CERTTYPE_X509,   /* any order */
    .template_id            = 1,
    .private_key_slot       = (uint8_t)0,
    .sn_source              = SNSRC_SIGNER_ID,
    .cert_sn_dev_loc        = {{ DEVZONE_NONE, 0, 0, 0, 0 }},
    .issue_date_format      = DATEFMT_RFC5280_UTC,
    .expire_date_format     = DATEFMT_RFC5280_UTC,
    .tbs_cert_loc           = {{ .count = {tbs.count}, .offset = {tbs.offset} + 0 }},
    .expire_years           = 30-2,
    .public_key_dev_loc     = {{
        .zone      = DEVZONE_DATA,
        .slot      = SIGNER_SLOT,
        .is_genkey = FALSE,
        .offset    = 0,
        .count     = 8*9
    }},
    .comp_cert_dev_loc      = {{ .zone = DEVZONE_DATA, .slot = COMP_SLOT, .count = 72 }},
    .std_cert_elements      = {{
        [STDCERT_PUBLIC_KEY] = {{ {std.public_key.offset + 13}-13, 64 }},
        [STDCERT_SIGNATURE] = {{ {std.signature.offset}, {std.signature.count} }},
        {{ {std.issue_date.offset}, 13 }}, // STDCERT_ISSUE_DATE, positional after [1]
        {{ .offset = {std.expire_date.offset}, .count = 13 }},
        {{ {std.signer_id.offset}, 4 }},
        {{ {std.cert_sn.offset}, sizeof(uint8_t) * 3 }},
        {{ {std.auth_key_id.offset}, 20 }},
        {{ {std.subj_key_id.offset}, 20, }},
    }},
    .cert_elements          = NULL,
    .cert_elements_count    = 0,
    .cert_template          = &g_cert_template_1_signer[0],
    .cert_template_size     = sizeof(g_cert_template_1_signer) /
                              sizeof(g_cert_template_1_signer[0]),
}};

int unrelated_function(int x) {{ return x * 2; }}
"""


def test_hand_written_syntax_gives_the_same_def() -> None:
    d = standard_pki().defs.signer
    defs = load_cert_defs(_hand_written(d), "hand.c")
    assert list(defs) == ["g_cert_def_1_signer"]
    assert defs["g_cert_def_1_signer"] == d


def test_writer_round_trip_with_elements_and_link() -> None:
    from dataclasses import replace

    from atcaprov.atcacert import CertElement

    p = standard_pki()
    signer = replace(
        p.defs.signer,
        sn_source=SnSource.STORED,
        cert_sn_dev_loc=DeviceLoc(DevZone.DATA, 14, False, 17, 3),
        cert_elements=(
            CertElement(
                "IssueDate",
                DeviceLoc(DevZone.DATA, 14, False, 22, 13),
                p.defs.signer.std_cert_elements.issue_date,
            ),
        ),
    )
    text = (
        cert_def_to_c(signer, "1_signer")
        + "\n"
        + cert_def_to_c(p.defs.device, "g_cert_def_2_device", include=False)
    )
    defs = load_cert_defs(text, "gen.c")
    assert defs == {"g_cert_def_1_signer": signer, "g_cert_def_2_device": p.defs.device}
    assert "sizeof(g_cert_elements_1_signer) / sizeof(g_cert_elements_1_signer[0])" in text
    assert ".ca_cert_def            = &g_cert_def_1_signer" in text


def _error(text: str) -> CSourceError:
    with pytest.raises(CSourceError) as err:
        load_cert_defs(text, "bad.c")
    return err.value


def _swap(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


def _line_col(text: str, needle: str) -> tuple[int, int]:
    at = text.index(needle)
    line = text.count("\n", 0, at) + 1
    return line, at - (text.rfind("\n", 0, at) + 1) + 1


def test_error_unknown_field_has_position() -> None:
    good = cert_def_to_c(standard_pki().defs.signer, "1_signer")
    bad = _swap(good, ".expire_years           = 28", ".expire_yeers           = 28")
    err = _error(bad)
    assert (err.filename, err.line) == ("bad.c", _line_col(bad, ".expire_yeers")[0])
    assert "expire_yeers" in str(err) and "expire_years" in (err.expected or "")


def test_error_missing_comma() -> None:
    good = cert_def_to_c(standard_pki().defs.signer, "1_signer")
    bad = _swap(good, ".template_id            = 1,", ".template_id            = 1")
    err = _error(bad)
    assert err.line == _line_col(bad, ".chain_id")[0]
    assert err.expected == "',' or '}'"


def test_error_unknown_enum_name() -> None:
    good = cert_def_to_c(standard_pki().defs.signer, "1_signer")
    bad = _swap(good, "SNSRC_SIGNER_ID", "SNSRC_SIGNR_ID")
    err = _error(bad)
    assert (err.line, err.column) == _line_col(bad, "SNSRC_SIGNR_ID")
    assert "SNSRC_SIGNR_ID" in str(err)


def test_error_template_size_mismatch() -> None:
    good = cert_def_to_c(standard_pki().defs.signer, "1_signer")
    bad = _swap(good, "sizeof(g_cert_template_1_signer)", "sizeof(g_cert_template_1_signer)-1")
    err = _error(bad)
    assert "cert_template_size" in str(err) and err.line == _line_col(bad, "sizeof(g_cert_t")[0]


def test_error_unterminated_comment_and_endif() -> None:
    assert "comment" in str(_error("const int a = 1; /* open"))
    assert "#endif" in str(_error("#if 1\nconst int a = 1;\n"))


def test_error_bad_definition_is_reported_at_the_variable() -> None:
    good = cert_def_to_c(standard_pki().defs.signer, "1_signer")
    bad = _swap(good, ".count  = 3\n", ".count  = 4\n")  # cert SN count of SNSRC_SIGNER_ID
    err = _error(bad)
    assert err.line == _line_col(bad, "g_cert_def_1_signer =")[0]
    assert "cert_sn" in str(err)


def test_parser_expressions_and_strings() -> None:
    cfile = parse_c_source(
        '#define K (2 << 3)\nconst char s[] = "a\\x41" "b";\n'
        "const uint8_t b[4] = { K | 1, 0x0F, 017, 'A' };\n",
        "e.c",
    )
    from atcaprov.atcacert.csource import Evaluator

    ev = Evaluator(cfile, {})
    assert ev.bytes_of(cfile.variables["b"]) == bytes([17, 15, 15, 65])
    assert ev.bytes_of(cfile.variables["s"]) == b"aAb"
    more = parse_c_source(
        "const uint8_t g_t[] = { 1, 2, 3 };\n"
        "const int n = sizeof(g_t)/sizeof(g_t[0]) + sizeof(uint16_t)"
        " + (uint8_t)4 + sizeof(const uint8_t *) + 35-13 - -1;\n",
        "f.c",
    )
    init = more.variables["n"].init
    assert init is not None
    assert Evaluator(more, {}).integer(init) == 3 + 2 + 4 + 8 + 22 + 1


def test_transforms_are_refused() -> None:
    d = standard_pki().defs.signer
    from dataclasses import replace

    from atcaprov.atcacert import CertElement

    with_el = replace(
        d,
        cert_elements=(
            CertElement(
                "SN", DeviceLoc(DevZone.DATA, 14, False, 0, 3), d.std_cert_elements.cert_sn
            ),
        ),
        sn_source=SnSource.STORED,
        cert_sn_dev_loc=DeviceLoc(DevZone.DATA, 14, False, 0, 3),
    )
    text = cert_def_to_c(with_el, "x")
    bad = _swap(text, '.id         = "SN",', '.id = "SN", .transforms = { TF_REVERSE, TF_NONE },')
    err = _error(bad.replace("TF_REVERSE", "1"))
    assert "transforms" in str(err)


STUB = Path(__file__).parent / "data" / "cstub"


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler")
def test_written_and_esp_files_compile(tmp_path: Path) -> None:
    """Our output and the esp generator's both compile against a stand-in atcacert_def.h."""
    p = standard_pki()
    ours = tmp_path / "ours.c"
    ours.write_text(
        cert_def_to_c(p.defs.signer, "1_signer")
        + "\n"
        + cert_def_to_c(p.defs.device, "2_device", include=False)
    )
    data = Path(__file__).parent / "data"
    for src in (ours, data / "esp_cert_def_1_signer.c", data / "esp_cert_def_2_device.c"):
        result = subprocess.run(
            ["gcc", "-std=c99", "-Wall", "-Werror", "-fsyntax-only", "-I", str(STUB), str(src)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, (src.name, result.stderr)


def _positional(d: CertDef) -> str:
    """2016 field order, no designators, HEAD-style guards and export macros around it."""

    def dev(loc: DeviceLoc) -> str:
        return (
            f"{{ {loc.zone.c_name}, {loc.slot}, {int(loc.is_genkey)}, {loc.offset}, {loc.count} }}"
        )

    std = ", ".join(f"{{ {loc.offset}, {loc.count} }}" for loc in d.std_cert_elements)
    return f"""\
#ifdef __cplusplus
extern "C" {{
#endif
#define SHARED_LIB_EXPORT
#if ATCACERT_COMPCERT_EN /* a guard whose
                            comment spans lines */
SHARED_LIB_EXPORT const uint8_t g_t[] = {{ {_template_c(d)} }};
SHARED_LIB_EXPORT const atcacert_def_t g_def = {{
    {d.cert_type.c_name}, {d.template_id}, {d.chain_id}, {d.private_key_slot},
    {d.sn_source.c_name}, {dev(d.cert_sn_dev_loc)}, {d.issue_date_format.c_name},
    {d.expire_date_format.c_name}, {{ {d.tbs_cert_loc.offset}, {d.tbs_cert_loc.count} }},
    {d.expire_years}, {dev(d.public_key_dev_loc)}, {dev(d.comp_cert_dev_loc)},
    {{ {std} }}, NULL, 0, g_t, sizeof(g_t)
}};
#endif
#ifdef __cplusplus
}}
#endif
"""


def test_positional_2016_order_with_guards() -> None:
    d = standard_pki().defs.device
    defs = load_cert_defs(_positional(d).replace("g_cert_def_1_signer", "x"), "pos.c")
    from dataclasses import replace

    assert defs["g_def"] == replace(d, ca_cert_def=None)
