"""Definitions written by an independent generator (Espressif's esp-cryptoauth-utility):
parse them and rebuild their certificates byte-identically."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from cryptography import x509

from atcaprov.atcacert import (
    CertError,
    DeviceLoc,
    DevZone,
    SnSource,
    build_cert,
    cert_def_from_cert,
    compress,
    load_cert_defs,
    make_device_template_cert,
    public_key_bytes,
    rebuild,
)
from tests.support.keys import cert_public_key, key, pub, signer_fn
from tests.support.pki import ATCACERT_NOW as NOW
from tests.support.pki import standard_pki

DATA = Path(__file__).parent / "data"
# the old pyasn1 the esp generator pins warns on Python 3.11; not ours to fix
ESP_WARNINGS = pytest.mark.filterwarnings("ignore::DeprecationWarning:pyasn1")


def _der(name: str) -> bytes:
    return (DATA / name).read_bytes()


def _pub_of(der: bytes) -> bytes:
    return public_key_bytes(cert_public_key(der))


def test_esp_device_def_rebuilds_its_certificate() -> None:
    d = load_cert_defs((DATA / "esp_cert_def_2_device.c").read_text(), "esp_cert_def_2_device.c")[
        "g_cert_def_2_device"
    ]
    device, signer = _der("esp_device.der"), _der("esp_signer.der")
    assert d.sn_source == SnSource.PUB_KEY_HASH and d.expire_years == 10
    record = compress(d, device)
    assert record[64:69] == bytes.fromhex("A99D4AFFFF")  # 2021-03-07 10h +10y, signer FFFF
    rebuilt = rebuild(d, record, _pub_of(device), None, ca_public_key=_pub_of(signer))
    assert rebuilt == device
    x509.load_der_x509_certificate(rebuilt).verify_directly_issued_by(
        x509.load_der_x509_certificate(signer)
    )


def test_esp_signer_def_with_stored_sn_and_slot_14_dates() -> None:
    d = load_cert_defs((DATA / "esp_cert_def_1_signer.c").read_text(), "esp_cert_def_1_signer.c")[
        "g_cert_def_1_signer"
    ]
    signer, root = _der("esp_signer.der"), _der("esp_root.der")
    assert d.sn_source == SnSource.STORED and d.cert_sn_dev_loc.slot == 14
    assert [e.id for e in d.cert_elements] == ["IssueDate", "ExpireDate"]
    record = compress(d, signer)
    sn = signer[d.std_cert_elements.cert_sn.offset : d.std_cert_elements.cert_sn.end]
    # what slot 14 would hold: the SN and the two dates as text
    elements = {e.id: signer[e.cert_loc.offset : e.cert_loc.end] for e in d.cert_elements}
    with pytest.raises(CertError):
        rebuild(d, record, _pub_of(signer), ca_public_key=_pub_of(root), cert_sn=sn)
    rebuilt = rebuild(
        d, record, _pub_of(signer), ca_public_key=_pub_of(root), cert_sn=sn, element_data=elements
    )
    assert rebuilt == signer
    x509.load_der_x509_certificate(rebuilt).verify_directly_issued_by(
        x509.load_der_x509_certificate(root)
    )


def test_our_locator_agrees_with_the_esp_generator() -> None:
    d = load_cert_defs((DATA / "esp_cert_def_2_device.c").read_text(), "x.c")["g_cert_def_2_device"]
    ours = cert_def_from_cert(
        _der("esp_device.der"),
        template_id=2,
        chain_id=0,
        sn_source=SnSource.PUB_KEY_HASH,
        private_key_slot=0,
        public_key_dev_loc=DeviceLoc(DevZone.DATA, 0, True, 0, 64),
        comp_cert_dev_loc=DeviceLoc(DevZone.DATA, 10, False, 0, 72),
    )
    assert ours == d


def _esp_module() -> ModuleType:
    try:
        import importlib.metadata

        dist = importlib.metadata.distribution("esp-cryptoauth-utility")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("esp-cryptoauth-utility is not installed (test extra)")
    spec = importlib.util.spec_from_file_location(
        "make_esp_fixtures", DATA / "make_esp_fixtures.py"
    )
    assert dist is not None and spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@ESP_WARNINGS
def test_generator_still_writes_the_committed_fixtures() -> None:
    mod = _esp_module()
    esp = mod.load_esp_cert2certdef()
    assert (
        esp.gen_cert_def_c_device(_der("esp_device.der"))
        == (DATA / "esp_cert_def_2_device.c").read_text()
    )
    assert (
        esp.gen_cert_def_c_signer(_der("esp_signer.der"))
        == (DATA / "esp_cert_def_1_signer.c").read_text()
    )


@ESP_WARNINGS
def test_generator_live_on_a_new_template() -> None:
    """Drive the esp generator on a template we made; its def builds certs that verify."""
    mod = _esp_module()
    esp = mod.load_esp_cert2certdef()
    p = standard_pki()
    # the esp generator looks for the placeholder FFFF: make a signer whose id is FFFF
    from atcaprov.atcacert import make_signer_cert

    signer = make_signer_cert(
        p.root_cert,
        p.root_key,
        pub(p.signer_key),
        signer_id=b"\xff\xff",
        now=NOW,
        common_name="Test Signer",
        expire_years=28,
    )
    template = make_device_template_cert(signer, now=NOW, expire_years=12)
    text = esp.gen_cert_def_c_device(template)
    d = load_cert_defs(text, "live.c")["g_cert_def_2_device"]
    built = build_cert(
        d,
        public_key=pub(key(4242)),
        issue_date=NOW.replace(minute=0, second=0),
        signer_id=b"\xff\xff",
        sign=signer_fn(p.signer_key),
        ca_public_key=pub(p.signer_key),
    )
    x509.load_der_x509_certificate(built.cert_der).verify_directly_issued_by(
        x509.load_der_x509_certificate(signer)
    )
    assert (
        rebuild(d, built.comp_cert, pub(key(4242)), ca_public_key=pub(p.signer_key))
        == built.cert_der
    )
    assert importlib.util.find_spec("atcaprov") is not None
