"""``atcaprov cert``: def-from-cert, compress, rebuild and info, end to end through files."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from atcaprov.atcacert import build_cert, cert_def_to_c, load_cert_defs
from atcaprov.atcacert.keys import public_key_bytes
from atcaprov.atcacert.standard import make_device_template_cert
from atcaprov.cli import main
from tests.support.certs import der_to_pem
from tests.support.keys import sign_digest
from tests.support.pki import NOW, make_pki


def test_def_from_cert_compress_rebuild_round_trip(tmp_path: Path) -> None:
    pki = make_pki()
    runner = CliRunner()
    template = tmp_path / "template.pem"
    template.write_bytes(der_to_pem(make_device_template_cert(pki.signer_cert, now=NOW)))
    cdef = tmp_path / "cert_def_2_device.c"
    result = runner.invoke(
        main,
        [
            "cert",
            "def-from-cert",
            str(template),
            "--kind",
            "device",
            "--signer-id",
            pki.cert_info.signer_id.hex().upper(),
            "-o",
            str(cdef),
        ],
    )
    assert result.exit_code == 0, result.output
    device_def = load_cert_defs(cdef.read_text())["g_cert_def_2_device"]
    assert device_def.comp_cert_dev_loc.slot == 10 and device_def.public_key_dev_loc.is_genkey

    # a real device certificate made from that definition, then compressed and rebuilt by CLI
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    sn = bytes.fromhex("0123A1B2C3D4E5F6EE")
    built = build_cert(
        device_def,
        public_key=public_key_bytes(key.public_key()),
        issue_date=NOW,
        signer_id=pki.cert_info.signer_id,
        device_sn=sn,
        sign=lambda d: sign_digest(pki.signer_key, d),
        ca_public_key=pki.cert_info.signer_public_key,
    )
    device_pem = tmp_path / "device.pem"
    device_pem.write_bytes(der_to_pem(built.cert_der))
    result = runner.invoke(main, ["cert", "compress", str(device_pem), "--def", str(cdef)])
    assert result.exit_code == 0, result.output
    record = result.output.strip()
    assert bytes.fromhex(record) == built.comp_cert
    result = runner.invoke(
        main,
        [
            "cert",
            "rebuild",
            "--def",
            str(cdef),
            "--record",
            record,
            "--public-key",
            public_key_bytes(key.public_key()).hex(),
            "--device-sn",
            sn.hex(),
            "--ca-public-key",
            pki.cert_info.signer_public_key.hex(),
        ],
    )
    assert result.exit_code == 0, result.output
    rebuilt = x509.load_pem_x509_certificate(result.output.encode())
    assert rebuilt.public_bytes(serialization.Encoding.DER) == built.cert_der


def test_info_shows_the_signer(tmp_path: Path) -> None:
    pki = make_pki()
    path = tmp_path / "atcaprov_cert_info_0.c"
    path.write_text(pki.cert_info.to_c_source())
    result = CliRunner().invoke(main, ["cert", "info", str(path)])
    assert result.exit_code == 0, result.output
    assert "signer:           Test Signer" in result.output
    assert f"signer key id:    {pki.cert_info.signer_key_id.hex().upper()}" in result.output
    assert "device cert slot: 10" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compress", "{bad}", "--def", "{cdef}"], "not a PEM or DER certificate"),
        (["compress", "{cdef}", "--def", "{bad}"], "bad.pem:2:1"),
        (["rebuild", "--def", "{cdef}", "--record", "zz", "--public-key", "00"], "not hex"),
        (
            ["rebuild", "--def", "{cdef}", "--record", "00" * 71, "--public-key", "00" * 64],
            "71 bytes, expected 72",
        ),
        (["info", "{bad}"], "bad.pem"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path: Path, args: list[str], message: str) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    cdef = tmp_path / "d.c"
    pki = make_pki()
    cdef.write_text(cert_def_to_c(pki.cert_info.device_cert_def, "2_device"))
    argv = ["cert", *[a.format(bad=bad, cdef=cdef) for a in args]]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
