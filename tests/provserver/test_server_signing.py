"""Request checks (config zone, serial number, public key) and signer profiles."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from atcaprov.atcacert import cert_def_to_c
from atcaprov.atcacert.certdef import CertElement, CertLoc, DeviceLoc, DevZone
from atcaprov.return_codes import ReturnCode
from provserver.profile import (
    ProfileError,
    ProfileStore,
    SignerProfile,
    cert_def_from_json,
    cert_def_to_json,
    load_profile,
    write_profile,
)
from provserver.signing import RequestRefused, check_config_zone, check_public_key, check_request
from tests.support.config import config_zone
from tests.support.server import make_chain
from tests.support.station import device_key

CHAIN = make_chain()


def refused(fn: object, *args: object) -> RequestRefused:
    with pytest.raises(RequestRefused) as err:
        fn(*args)  # type: ignore[operator]
    return err.value


def test_good_request_passes_and_gives_serial_number() -> None:
    _, pub = device_key()
    checked = check_request(config_zone(0x1234), pub)
    assert checked.serial_number == bytes.fromhex("01231E6CD82C1234EE")
    assert not checked.data_zone_locked


@pytest.mark.parametrize(
    ("change", "code", "text"),
    [
        (lambda c: c[:127], ReturnCode.BAD_CONFIG_ZONE, "127 bytes, expected 128"),
        (lambda c: bytes(13) + c[13:], ReturnCode.MISSING_SERIAL_NUMBER, "no serial number"),
        (lambda c: b"\x01\x24" + c[2:], ReturnCode.BAD_CONFIG_ZONE, "SN[0:2]=0124"),
        (lambda c: c[:12] + b"\xed" + c[13:], ReturnCode.BAD_CONFIG_ZONE, "SN[8]=ED"),
        (lambda c: c[:87] + b"\x55" + c[88:], ReturnCode.BAD_CONFIG_ZONE, "LockConfig) is 0x55"),
        (lambda c: c[:87] + b"\x12" + c[88:], ReturnCode.BAD_CONFIG_ZONE, "(invalid)"),
        (lambda c: c[:86] + b"\x99" + c[87:], ReturnCode.BAD_CONFIG_ZONE, "LockValue) is 0x99"),
        (lambda c: c[:90] + b"\x01\x00" + c[92:], ReturnCode.BAD_CONFIG_ZONE, "RFU"),
    ],
)
def test_config_zone_refusals(change: object, code: ReturnCode, text: str) -> None:
    err = refused(check_config_zone, change(config_zone()))  # type: ignore[operator]
    assert err.code is code
    assert text in err.message


def test_public_key_refusals() -> None:
    _, pub = device_key()
    err = refused(check_public_key, pub[:63])
    assert err.code is ReturnCode.BAD_PUBLIC_KEY and "63 bytes" in err.message
    off_curve = pub[:32] + bytes((pub[32] ^ 1,)) + pub[33:]
    err = refused(check_public_key, off_curve)
    assert err.code is ReturnCode.BAD_PUBLIC_KEY and "not a point on P-256" in err.message


def test_data_zone_locked_is_reported() -> None:
    _, pub = device_key()
    cfg = config_zone()
    assert check_request(cfg[:86] + b"\x00" + cfg[87:], pub).data_zone_locked


def test_cert_def_json_round_trip() -> None:
    d = CHAIN.profile.device_cert_def
    again = cert_def_from_json(json.loads(json.dumps(cert_def_to_json(d))))
    assert again == d
    broken = cert_def_to_json(d)
    broken["sn_source"] = "NOPE"
    with pytest.raises(ProfileError, match="NOPE"):
        cert_def_from_json(broken)


def test_profile_files_store_and_validity_override(tmp_path: Path) -> None:
    name = f"{CHAIN.key_id.hex().upper()}.json"
    write_profile(tmp_path / name, CHAIN.profile)
    loaded = load_profile(tmp_path / name)
    assert loaded == CHAIN.profile and loaded.root_cert == CHAIN.root_cert
    obj = json.loads((tmp_path / name).read_text())
    obj["validity_years"] = 3
    del obj["signer_key_id"]  # the file name carries it
    (tmp_path / name).write_text(json.dumps(obj))
    store = ProfileStore([tmp_path])
    assert store.get(CHAIN.key_id).validity_years == 3
    with pytest.raises(ProfileError, match="no signer profile for key id 0101"):
        store.get(b"\x01" * 20)
    obj["validity_years"] = 128
    (tmp_path / name).write_text(json.dumps(obj))
    (tmp_path / name).touch()
    fresh = ProfileStore([tmp_path])
    with pytest.raises(ProfileError, match=r"validity_years must be 0\.\.127"):
        fresh.get(CHAIN.key_id)


def test_profile_from_c_file(tmp_path: Path) -> None:
    c_text = cert_def_to_c(CHAIN.profile.device_cert_def, "2_device")
    (tmp_path / "cert_def_2_device.c").write_text(c_text)
    (tmp_path / "p.json").write_text(
        json.dumps(
            {
                "signer_key_id": CHAIN.key_id.hex(),
                "device_cert_def_file": "cert_def_2_device.c",
            }
        )
    )
    profile = load_profile(tmp_path / "p.json")
    assert profile.device_cert_def == CHAIN.profile.device_cert_def


def test_custom_element_patterns() -> None:
    d = CHAIN.profile.device_cert_def
    el = CertElement("SN", DeviceLoc(DevZone.DATA, 8, False, 0, 18), CertLoc(20, 18))
    with_el = dataclasses.replace(d, cert_elements=(el,))
    with pytest.raises(ProfileError, match="needs values"):
        SignerProfile(CHAIN.key_id, with_el)
    profile = SignerProfile(CHAIN.key_id, with_el, elements={"SN": "{sn}"})
    sn = bytes.fromhex("01231E6CD82C1234EE")
    assert profile.element_data(sn) == {"SN": b"01231E6CD82C1234EE"}
    bad = SignerProfile(CHAIN.key_id, with_el, elements={"SN": "x{sn}"})
    with pytest.raises(ProfileError, match="19 bytes"):
        bad.element_data(sn)
    with pytest.raises(ProfileError, match="not custom elements"):
        SignerProfile(CHAIN.key_id, d, elements={"Other": "x"})
