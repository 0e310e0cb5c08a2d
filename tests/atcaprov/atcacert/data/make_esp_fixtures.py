"""Make the esp-cryptoauth-utility fixtures in this folder (run once; outputs are committed).

    .venv/bin/python tests/atcaprov/atcacert/data/make_esp_fixtures.py

Certificates are made with ``cryptography`` only (serial numbers computed here with hashlib,
independently of atcaprov), then Espressif's ``helper_scripts/cert2certdef.py`` (PyPI
``esp-cryptoauth-utility`` 1.2.0, a fork of Microchip's generator) writes the cert-def .c files
from them: ``gen_cert_def_c_signer`` and ``gen_cert_def_c_device``. Its package ``__init__``
needs ``esptool``, so the module file is loaded on its own.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HERE = Path(__file__).parent
ROOT_KEY = ec.derive_private_key(0x5EED_0001, ec.SECP256R1())
SIGNER_KEY = ec.derive_private_key(0x5EED_0002, ec.SECP256R1())
DEVICE_KEY = ec.derive_private_key(0x5EED_0003, ec.SECP256R1())
ISSUE = datetime(2021, 3, 7, 10, tzinfo=timezone.utc)


def load_esp_cert2certdef() -> ModuleType:
    dist = importlib.metadata.distribution("esp-cryptoauth-utility")
    files = [f for f in (dist.files or []) if f.name == "cert2certdef.py"]
    spec = importlib.util.spec_from_file_location("esp_cert2certdef", str(files[0].locate()))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def xy(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )[1:]


def name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Inc"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def make() -> dict[str, bytes]:
    root_name = name("Example Root CA")
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(ROOT_KEY.public_key())
        .serial_number(0x1234)
        .not_valid_before(ISSUE)
        .not_valid_after(datetime(2049, 12, 31, 23, 59, 59, tzinfo=timezone.utc))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ROOT_KEY.public_key()), critical=False
        )
        .sign(ROOT_KEY, hashes.SHA256())
    )
    signer = (
        x509.CertificateBuilder()
        .subject_name(name("Example Signer FFFF"))
        .issuer_name(root_name)
        .public_key(SIGNER_KEY.public_key())
        .serial_number(int.from_bytes(bytes.fromhex("5C1A2B3C4D5E6F708192A3B4C5D6E7F8"), "big"))
        .not_valid_before(ISSUE)
        .not_valid_after(ISSUE.replace(year=2041))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(SIGNER_KEY.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ROOT_KEY.public_key()),
            critical=False,
        )
        .sign(ROOT_KEY, hashes.SHA256())
    )
    # SNSRC_PUB_KEY_HASH serial: SHA256(X||Y || encoded dates)[:16], msb cleared, bit 6 set.
    enc_dates = (((2021 - 2000) << 19) | (3 << 15) | (7 << 10) | (10 << 5) | 10).to_bytes(3, "big")
    sn = bytearray(hashlib.sha256(xy(DEVICE_KEY.public_key()) + enc_dates).digest()[:16])
    sn[0] = (sn[0] & 0x7F) | 0x40
    device = (
        x509.CertificateBuilder()
        .subject_name(name("Example Device"))
        .issuer_name(signer.subject)
        .public_key(DEVICE_KEY.public_key())
        .serial_number(int.from_bytes(sn, "big"))
        .not_valid_before(ISSUE)
        .not_valid_after(ISSUE.replace(year=2031))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(DEVICE_KEY.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(SIGNER_KEY.public_key()),
            critical=False,
        )
        .sign(SIGNER_KEY, hashes.SHA256())
    )
    der = serialization.Encoding.DER
    return {
        "esp_root.der": root.public_bytes(der),
        "esp_signer.der": signer.public_bytes(der),
        "esp_device.der": device.public_bytes(der),
    }


def main() -> None:
    certs = make()
    for file_name, data in certs.items():
        (HERE / file_name).write_bytes(data)
    esp = load_esp_cert2certdef()
    (HERE / "esp_cert_def_1_signer.c").write_text(
        esp.gen_cert_def_c_signer(certs["esp_signer.der"])
    )
    (HERE / "esp_cert_def_2_device.c").write_text(
        esp.gen_cert_def_c_device(certs["esp_device.der"])
    )


if __name__ == "__main__":
    main()
