"""atcaprov_cert_info_N.c: construction from certificates, writing, reading, errors."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from atcaprov.atcacert import (
    CSourceError,
    cert_def_to_c,
    key_id,
    load_cert_defs,
    make_root_cert,
    make_signer_cert,
    make_standard_cert_defs,
    public_key_bytes,
)
from atcaprov.certinfo import (
    CertInfo,
    CertInfoError,
    CertInfoSlots,
    load_cert_info,
    parse_cert_info,
)

NOW = datetime(2024, 6, 1, 8, 30, tzinfo=timezone.utc)
ROOT_KEY = ec.derive_private_key(31, ec.SECP256R1())
SIGNER_KEY = ec.derive_private_key(32, ec.SECP256R1())
ROOT = make_root_cert(ROOT_KEY, common_name="Info Root", now=NOW)
SIGNER = make_signer_cert(
    ROOT,
    ROOT_KEY,
    public_key_bytes(SIGNER_KEY.public_key()),
    signer_id=b"\x12\xab",
    now=NOW,
    common_name="Info Signer",
    expire_years=20,
)
DEFS = make_standard_cert_defs(ROOT, SIGNER, now=NOW)


def _info() -> CertInfo:
    return CertInfo.from_certs(SIGNER, ROOT, "Line 1 signer", DEFS.device, DEFS.signer)


def test_from_certs() -> None:
    info = _info()
    assert info.signer_id == b"\x12\xab"
    assert info.signer_public_key == public_key_bytes(SIGNER_KEY.public_key())
    assert info.signer_key_id == key_id(info.signer_public_key)
    assert info.root_public_key == public_key_bytes(ROOT_KEY.public_key())
    assert info.slots == CertInfoSlots(0, 10, 11, 12)


def test_write_then_read_gives_an_equal_object(tmp_path: Path) -> None:
    info = _info()
    text = info.to_c_source(index=0)
    assert parse_cert_info(text, "atcaprov_cert_info_0.c") == info
    path = tmp_path / "atcaprov_cert_info_0.c"
    path.write_text(text)
    assert load_cert_info(path) == info
    # the same file also carries the two cert defs for firmware
    defs = load_cert_defs(text, str(path))
    assert defs == {
        "g_cert_def_1_signer": info.signer_cert_def,
        "g_cert_def_2_device": info.device_cert_def,
    }
    assert "typedef struct atcaprov_cert_info_s" in text


def _where(text: str, needle: str) -> int:
    return text.count("\n", 0, text.index(needle)) + 1


def test_wrong_key_id_has_file_line_column(tmp_path: Path) -> None:
    text = _info().to_c_source()
    start = text.index(".signer_key_id")
    first = text.index("0x", start)
    bad = (
        text[:first] + ("0x00" if text[first : first + 4] != "0x00" else "0x01") + text[first + 4 :]
    )
    path = tmp_path / "atcaprov_cert_info_3.c"
    path.write_text(bad)
    with pytest.raises(CSourceError) as err:
        load_cert_info(path)
    assert err.value.filename == str(path)
    assert err.value.line == _where(bad, ".signer_key_id") and err.value.column > 1
    assert "signer_key_id" in str(err.value)


def test_slots_that_disagree_with_the_defs() -> None:
    text = _info().to_c_source()
    bad = text.replace(".device_cert        = 10", ".device_cert        = 9")
    with pytest.raises(CSourceError) as err:
        parse_cert_info(bad, "i.c")
    assert err.value.line == _where(bad, ".device_cert        = 9")
    assert "(10)" in str(err.value)


def test_no_info_variable() -> None:
    with pytest.raises(CSourceError) as err:
        parse_cert_info(cert_def_to_c(DEFS.signer, "1_signer"), "defs_only.c")
    assert "atcaprov_cert_info_t" in str(err.value) and err.value.filename == "defs_only.c"


def test_syntax_error_position() -> None:
    text = _info().to_c_source()
    bad = text.replace('.signer_name       = "Line 1 signer",', '.signer_name = "x" "y" 5,')
    with pytest.raises(CSourceError) as err:
        parse_cert_info(bad, "s.c")
    assert err.value.line == _where(bad, '.signer_name = "x"')


def test_missing_file() -> None:
    with pytest.raises(CertInfoError):
        load_cert_info("/nonexistent/atcaprov_cert_info_0.c")


def test_signer_not_issued_by_root() -> None:
    other_root = make_root_cert(
        ec.derive_private_key(33, ec.SECP256R1()), common_name="Info Root", now=NOW
    )
    with pytest.raises(CertInfoError) as err:
        CertInfo.from_certs(SIGNER, other_root, "x", DEFS.device, DEFS.signer)
    assert err.value.field == "signer_cert"


def test_overlapping_slots_are_refused() -> None:
    info = _info()
    clash = replace(info.device_cert_def, comp_cert_dev_loc=info.signer_cert_def.comp_cert_dev_loc)
    with pytest.raises(CertInfoError) as err:
        replace(info, device_cert_def=clash)
    assert err.value.field == "slots"


def test_bad_signer_name() -> None:
    with pytest.raises(CertInfoError) as err:
        replace(_info(), signer_name="")
    assert err.value.field == "signer_name"


STUB = Path(__file__).parent / "atcacert" / "data" / "cstub"


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler")
def test_the_file_is_c_that_compiles(tmp_path: Path) -> None:
    """gcc -fsyntax-only against a stand-in atcacert_def.h written from the facts file."""
    src = tmp_path / "atcaprov_cert_info_0.c"
    src.write_text(_info().to_c_source())
    result = subprocess.run(
        ["gcc", "-std=c99", "-Wall", "-Werror", "-fsyntax-only", "-I", str(STUB), str(src)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
