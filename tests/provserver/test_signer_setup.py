"""``provserver signer create`` / ``list`` (provserver.signer_create, signer_list, root_ca, the
back-ends' module creators and provserver.signer_cli)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from atcaprov.atcacert import build_cert, compress, rebuild
from atcaprov.certinfo import load_cert_info
from atcaprov.device import Device
from atcaprov.emulator import Atecc508a
from atcaprov.emulator.kit_hid_device import EmulatedKitHidDevice
from atcaprov.hal.emulator import EmulatorHal
from provserver.profile import ProfileStore, load_profile
from provserver.root_ca import RootCaError, load_root_ca, make_root_ca, write_root_ca
from provserver.signer_cli import signer
from provserver.signer_create import CreateRequest, DeviceSpec, create_signer
from provserver.signers import WrongPasswordError, open_backend
from provserver.signers.base import SignerModule
from provserver.signers.create import (
    OutputExistsError,
    SignerSetupError,
    SignerSpec,
    parse_signer_id,
)
from provserver.signers.module_layout import CERT_MAX, create_module
from provserver.signers.pkcs11 import find_softhsm2

NAME = "Example ATECC508A Signer"
NOW = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.timezone.utc)
ISSUE = NOW.replace(minute=0, second=0)  # compressed certificates keep whole hours


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(signer, list(args), input=input, env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def root_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("rootca") / "root"
    root = make_root_ca(common_name="Test Root", now=NOW)
    return write_root_ca(root, folder)


def sim_args(tmp: Path, *extra: str) -> list[str]:
    return [
        "create", "--backend", "sim", "--modules", str(tmp / "mods"), "--name", NAME,
        "--data-dir", str(tmp / "data"), "--certinfo-out", str(tmp / "atcaprov_cert_info_0.c"),
        *extra,
    ]  # fmt: skip


def only_module(tmp: Path) -> Path:
    (path,) = sorted((tmp / "mods").glob("*.json"))
    return path


def open_sim(path: Path) -> SignerModule:
    backend = open_backend("sim", modules=path.parent, transport="emulator")
    return backend.open(str(path))


def verify_chain(device_der: bytes, signer_der: bytes, root_der: bytes) -> None:
    device = x509.load_der_x509_certificate(device_der)
    signer_cert = x509.load_der_x509_certificate(signer_der)
    root = x509.load_der_x509_certificate(root_der)
    device.verify_directly_issued_by(signer_cert)  # raises on a bad signature / names
    signer_cert.verify_directly_issued_by(root)


# --------------------------------------------------------------------------------------------
# sim
# --------------------------------------------------------------------------------------------
def test_create_sim_new_root_then_end_to_end(tmp_path: Path) -> None:
    result = run(
        *sim_args(
            tmp_path,
            "--root-dir",
            str(tmp_path / "root"),
            "--device-cn",
            "Example Device",
            "--device-validity-years",
            "10",
        )
    )
    assert result.exit_code == 0, result.output
    out = result.output
    key_path, cert_path = tmp_path / "root" / "root-ca.key", tmp_path / "root" / "root-ca.crt"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert f"WARNING: {key_path} is the root CA private key" in out and "offline" in out
    assert "Password:        none" in out and "No password:" in out
    module_path = only_module(tmp_path)
    assert module_path.name.startswith("signer-0123") and module_path.name.endswith("EE.json")

    root = load_root_ca(key_path, cert_path)
    info = load_cert_info(tmp_path / "atcaprov_cert_info_0.c")
    module = open_sim(module_path)
    with module:
        ident = module.identity
        assert f"Module SN:       {ident.module_sn}" in out
        assert f"Key id:          {ident.key_id.hex().upper()}" in out
        assert f"Signer name:     {NAME}" in out
        assert info.signer_public_key == ident.public_key
        assert info.signer_key_id == ident.key_id
        assert info.signer_id == ident.signer_id
        assert info.signer_name == NAME
        assert info.root_cert_der == root.cert_der

        profile_file = tmp_path / "data" / "signers" / f"{ident.key_id.hex().upper()}.json"
        assert f"Wrote profile:   {profile_file}" in out
        profile = load_profile(profile_file)
        assert ProfileStore([tmp_path / "data" / "signers"]).get(ident.key_id) == profile
        assert profile.root_cert == root.cert_der
        assert profile.validity_years == 10
        assert profile.device_cert_def.cert_template == info.device_cert_def.cert_template
        assert profile.device_cert_def.template_id == info.device_cert_def.template_id

        # A device certificate as the server makes it: profile def, signed by the module.
        device_key = ec.generate_private_key(ec.SECP256R1())
        numbers = device_key.public_key().public_numbers()
        device_pub = numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")
        device_sn = bytes.fromhex("0123A1B2C3D4E5F6EE")
        built = build_cert(
            profile.device_cert_def,
            public_key=device_pub,
            issue_date=ISSUE,
            signer_id=ident.signer_id,
            sign=module.sign_digest,
            device_sn=device_sn,
            ca_public_key=ident.public_key,
            element_data=profile.element_data(device_sn),
        )
        verify_chain(built.cert_der, ident.signer_cert_der, root.cert_der)
        device = x509.load_der_x509_certificate(built.cert_der)
        assert device.subject.rfc4514_string() == "CN=Example Device"
        aki = device.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        assert aki.key_identifier == ident.key_id
        # The station side rebuilds the same certificate from the compressed record.
        comp = compress(info.device_cert_def, built.cert_der)
        rebuilt = rebuild(
            info.device_cert_def, comp, device_pub, device_sn, ca_public_key=info.signer_public_key
        )
        assert rebuilt == built.cert_der
        # ... and the signer certificate from the signer def.
        signer_comp = compress(info.signer_cert_def, ident.signer_cert_der)
        assert (
            rebuild(
                info.signer_cert_def,
                signer_comp,
                info.signer_public_key,
                None,
                ca_public_key=info.root_public_key,
            )
            == ident.signer_cert_der
        )


def test_create_sim_with_password_prompt_and_existing_root(
    tmp_path: Path, root_files: tuple[Path, Path]
) -> None:
    key, cert = root_files
    result = run(
        *sim_args(
            tmp_path,
            "--root-key",
            str(key),
            "--root-cert",
            str(cert),
            "--password",
            "--signer-id",
            "C48B",
        ),
        input="s3cret\ns3cret\n",
    )
    assert result.exit_code == 0, result.output
    assert "Password:        required" in result.output
    assert "s3cret" not in result.output  # not echoed
    assert "Signer id:       C48B" in result.output
    assert "Root CA used:" in result.output and "WARNING" not in result.output
    path = only_module(tmp_path)
    assert (
        f"NOTE: {path} is an emulated (sim) module: the file holds the signer key in clear. "
        "A password gates only the emulated Sign" in result.output.replace("\n", " ")
    )
    # ... and that is true: slot 0 of the saved chip is the key of the signer certificate
    slot0 = bytes.fromhex(json.loads(path.read_text())["slots"][0])
    clear = ec.derive_private_key(int.from_bytes(slot0[4:36], "big"), ec.SECP256R1())
    with open_sim(path) as module:
        cert_key = module.identity.certificate.public_key()
        assert isinstance(cert_key, ec.EllipticCurvePublicKey)
        assert clear.public_key().public_numbers() == cert_key.public_numbers()
        assert module.needs_password
        assert module.identity.signer_id == bytes.fromhex("C48B")
        with pytest.raises(WrongPasswordError):
            module.unlock("wrong")
        module.unlock("s3cret")
        assert len(module.sign_digest(bytes(32))) == 64


def test_password_prompt_mismatch_is_asked_again(
    tmp_path: Path, root_files: tuple[Path, Path]
) -> None:
    key, cert = root_files
    result = run(
        *sim_args(tmp_path, "--root-key", str(key), "--root-cert", str(cert), "--password"),
        input="one\ntwo\nabc\nabc\n",
    )
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output.lower() or "must match" in result.output.lower()


def test_create_sim_password_env(tmp_path: Path, root_files: tuple[Path, Path]) -> None:
    key, cert = root_files
    args = sim_args(
        tmp_path, "--root-key", str(key), "--root-cert", str(cert), "--password-env", "SETUP_PW"
    )
    result = run(*args, env={"SETUP_PW": "from-env"})
    assert result.exit_code == 0, result.output
    with open_sim(only_module(tmp_path)) as module:
        module.unlock("from-env")
    missing = run(
        *sim_args(
            tmp_path / "b",
            "--root-key",
            str(key),
            "--root-cert",
            str(cert),
            "--password-env",
            "SETUP_PW_UNSET",
        ),
        env={"SETUP_PW_UNSET": ""},
    )
    assert missing.exit_code == 2 and "SETUP_PW_UNSET is not set" in missing.output


def test_list_shows_module_and_profile(tmp_path: Path, root_files: tuple[Path, Path]) -> None:
    key, cert = root_files
    assert run(*sim_args(tmp_path, "--root-key", str(key), "--root-cert", str(cert))).exit_code == 0
    module_path = only_module(tmp_path)
    with open_sim(module_path) as module:
        ident = module.identity
    args = [
        "list",
        "--backend",
        "sim",
        "--modules",
        str(tmp_path / "mods"),
        "--data-dir",
        str(tmp_path / "data"),
    ]
    result = run(*args)
    assert result.exit_code == 0, result.output
    profile_file = tmp_path / "data" / "signers" / f"{ident.key_id.hex().upper()}.json"
    lines = result.output.splitlines()
    assert f"sim: {module_path}" in lines
    assert f"  module SN:  {ident.module_sn}" in lines
    assert f"  name:       {NAME}" in lines
    assert f"  signer id:  {ident.signer_id.hex().upper()}" in lines
    assert f"  key id:     {ident.key_id.hex().upper()}" in lines
    assert "  password:   none" in lines
    assert f"  profile:    {profile_file}" in lines
    assert "1 module(s) found." in lines
    profile_file.unlink()
    result = run(*args)
    assert result.exit_code == 0
    assert "  profile:    missing (no signer profile for key id" in result.output
    # A file that is not a module is reported, the others still listed.
    (tmp_path / "mods" / "junk.json").write_text("{}")
    result = run(*args)
    assert f"sim: {tmp_path / 'mods' / 'junk.json'}" in result.output
    assert "  error:      " in result.output and "2 module(s) found." in result.output


def test_list_backend_options_and_unavailable(tmp_path: Path) -> None:
    result = run("list", "--backend", "sim", "--data-dir", str(tmp_path))
    assert result.exit_code == 1
    assert f"modules folder {tmp_path / 'modules'} does not exist" in result.output
    result = run(
        "list", "--backend", "sim", "--modules", str(tmp_path / "nope"), "--data-dir", str(tmp_path)
    )
    assert result.exit_code == 1
    assert "sim: not available: sim back-end: modules folder" in result.output
    assert "Error: back-end(s) not available: sim" in result.output


# --------------------------------------------------------------------------------------------
# pem
# --------------------------------------------------------------------------------------------
def test_create_pem(tmp_path: Path, root_files: tuple[Path, Path]) -> None:
    key, cert = root_files
    pem = tmp_path / "keys" / "dev-signer.pem"
    result = run(
        "create",
        "--backend",
        "pem",
        "--pem-key",
        str(pem),
        "--name",
        "Dev Signer",
        "--root-key",
        str(key),
        "--root-cert",
        str(cert),
        "--data-dir",
        str(tmp_path / "data"),
        "--certinfo-out",
        str(tmp_path / "atcaprov_cert_info_5.c"),
    )
    assert result.exit_code == 0, result.output
    assert "development only" in result.output and "No password:" in result.output
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert b"BEGIN CERTIFICATE" in pem.read_bytes()
    backend = open_backend("pem", path=pem.parent)
    (location,) = backend.scan()
    with backend.open(location) as module:
        assert module.identity.name == "Dev Signer"
        assert not module.password_protected
        info = load_cert_info(tmp_path / "atcaprov_cert_info_5.c")
        assert info.signer_public_key == module.identity.public_key
        assert "atcaprov_cert_info_5.c" in (tmp_path / "atcaprov_cert_info_5.c").read_text()
        profile = load_profile(
            tmp_path / "data" / "signers" / f"{module.identity.key_id.hex().upper()}.json"
        )
        sn = bytes.fromhex("0123000000000001EE")
        device_pub = bytes.fromhex(
            "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
            "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
        )  # the P-256 generator: any valid point will do
        built = build_cert(
            profile.device_cert_def,
            public_key=device_pub,
            issue_date=ISSUE,
            signer_id=module.identity.signer_id,
            sign=module.sign_digest,
            device_sn=sn,
            ca_public_key=module.identity.public_key,
        )
        verify_chain(built.cert_der, module.identity.signer_cert_der, info.root_cert_der)


def test_create_accepts_validities_up_to_127_years(
    tmp_path: Path, root_files: tuple[Path, Path]
) -> None:
    """Over 31 years the signer and device records are compressed format 1."""
    key, cert = root_files
    args = [
        "create", "--backend", "pem", "--pem-key", str(tmp_path / "keys" / "long.pem"),
        "--name", "Long Signer", "--root-key", str(key), "--root-cert", str(cert),
        "--data-dir", str(tmp_path / "data"), "--certinfo-out", str(tmp_path / "ci.c"),
    ]  # fmt: skip
    for option in ("--validity-years", "--device-validity-years"):
        refused = run(*args, option, "128")
        assert refused.exit_code == 2 and "0<=x<=127" in refused.output, refused.output
    result = run(*args, "--validity-years", "127", "--device-validity-years", "40")
    assert result.exit_code == 0, result.output
    info = load_cert_info(tmp_path / "ci.c")
    assert info.signer_cert_def.expire_years == 127 and info.device_cert_def.expire_years == 40
    backend = open_backend("pem", path=tmp_path / "keys")
    (location,) = backend.scan()
    with backend.open(location) as module:
        ident = module.identity
        signer_cert = x509.load_der_x509_certificate(ident.signer_cert_der)
        assert signer_cert.not_valid_after_utc.year - signer_cert.not_valid_before_utc.year == 127
        signer_comp = compress(info.signer_cert_def, ident.signer_cert_der)
        assert signer_comp[70] & 0x0F == 1
        assert (
            rebuild(
                info.signer_cert_def,
                signer_comp,
                info.signer_public_key,
                None,
                ca_public_key=info.root_public_key,
            )
            == ident.signer_cert_der
        )
        profile = load_profile(tmp_path / "data" / "signers" / f"{ident.key_id.hex().upper()}.json")
        assert profile.validity_years == 40
        device_pub = bytes.fromhex(
            "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
            "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
        )
        sn = bytes.fromhex("0123000000000002EE")
        built = build_cert(
            profile.device_cert_def,
            public_key=device_pub,
            issue_date=ISSUE,
            signer_id=ident.signer_id,
            sign=module.sign_digest,
            device_sn=sn,
            ca_public_key=ident.public_key,
        )
        verify_chain(built.cert_der, ident.signer_cert_der, info.root_cert_der)
        device = x509.load_der_x509_certificate(built.cert_der)
        assert device.not_valid_after_utc == ISSUE.replace(year=ISSUE.year + 40)
        assert built.comp_cert[70] & 0x0F == 1
        assert (
            rebuild(
                info.device_cert_def,
                built.comp_cert,
                device_pub,
                sn,
                ca_public_key=info.signer_public_key,
            )
            == built.cert_der
        )


def test_create_pem_with_password_is_encrypted(
    tmp_path: Path, root_files: tuple[Path, Path]
) -> None:
    key, cert = root_files
    pem = tmp_path / "s.key"
    result = run(
        "create",
        "--backend",
        "pem",
        "--pem-key",
        str(pem),
        "--name",
        "Dev Signer",
        "--root-key",
        str(key),
        "--root-cert",
        str(cert),
        "--password-env",
        "PW",
        "--data-dir",
        str(tmp_path / "data"),
        "--certinfo-out",
        str(tmp_path / "ci.c"),
        env={"PW": "pem-pass"},
    )
    assert result.exit_code == 0, result.output
    assert b"ENCRYPTED PRIVATE KEY" in pem.read_bytes()
    with open_backend("pem", path=pem).open(str(pem)) as module:
        assert module.needs_password
        with pytest.raises(WrongPasswordError):
            module.unlock("nope")
        module.unlock("pem-pass")
        assert len(module.sign_digest(bytes(32))) == 64


# --------------------------------------------------------------------------------------------
# hid (fake hidapi whose devices are emulated kits)
# --------------------------------------------------------------------------------------------
class FakeHid:
    def __init__(self, chips: dict[bytes, Atecc508a]) -> None:
        self.chips = chips

    def enumerate(self, vid: int = 0, pid: int = 0) -> list[dict[str, Any]]:
        return [{"path": p, "vendor_id": vid, "product_id": pid} for p in self.chips]

    def device(self) -> EmulatedKitHidDevice:
        return EmulatedKitHidDevice(self.chips.__getitem__, present=self.chips.__contains__)


def test_create_hid_picks_first_blank_chip(tmp_path: Path) -> None:
    root = make_root_ca(now=NOW)
    used = Atecc508a()
    with Device(EmulatorHal(used)) as device:
        create_module(device, name="Old", issuer=(root.key, root.cert), kdf_iterations=10)
    blank = Atecc508a()
    fake = FakeHid({b"/dev/hidraw1": used, b"/dev/hidraw2": blank})
    key_path, cert_path = write_root_ca(root, tmp_path / "root")
    report = create_signer(CreateRequest(
        backend="hid", spec=SignerSpec(name=NAME, password="pin", kdf_iterations=100),
        data_dir=tmp_path / "data", certinfo_out=tmp_path / "ci.c", root_key=key_path,
        root_cert=cert_path, backend_options={"hid_module": fake}, now=NOW))  # fmt: skip
    assert report.module.location == "/dev/hidraw2"
    assert report.module.password_protected
    assert report.module.identity.module_sn == blank.serial_number.hex().upper()
    backend = open_backend("hid", hid_module=fake, timeout=1.0)
    listing = {loc: backend.open(loc) for loc in sorted(backend.scan())}
    assert listing["/dev/hidraw2"].identity == report.module.identity
    for module in listing.values():
        module.close()
    with pytest.raises(OutputExistsError, match=r"ci\.c exists"):
        create_signer(CreateRequest(
            backend="hid", spec=SignerSpec(name=NAME), data_dir=tmp_path / "data",
            certinfo_out=tmp_path / "ci.c", root_key=key_path, root_cert=cert_path,
            backend_options={"hid_module": fake}, now=NOW))  # fmt: skip
    with pytest.raises(SignerSetupError, match="no blank chip"):
        create_signer(CreateRequest(
            backend="hid", spec=SignerSpec(name=NAME), data_dir=tmp_path / "data",
            certinfo_out=tmp_path / "ci2.c", root_key=key_path, root_cert=cert_path,
            backend_options={"hid_module": fake}, now=NOW))  # fmt: skip


# --------------------------------------------------------------------------------------------
# pkcs11 (SoftHSM2 token made by the test)
# --------------------------------------------------------------------------------------------
SOFTHSM_LIB = find_softhsm2()


@pytest.fixture
def softhsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if SOFTHSM_LIB is None or shutil.which("softhsm2-util") is None:
        pytest.skip("SoftHSM2 not installed (Debian package softhsm2)")
    folder = tmp_path / "softhsm"
    (folder / "tokens").mkdir(parents=True)
    conf = folder / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\n"
        "log.level = ERROR\nslots.removable = false\n"
    )
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "HSM Signer",
                    "--pin", "4711", "--so-pin", "999999"],
                   check=True, capture_output=True, timeout=30)  # fmt: skip
    import pkcs11

    pkcs11.lib(SOFTHSM_LIB).reinitialize()  # re-read SOFTHSM2_CONF if loaded before
    yield SOFTHSM_LIB
    monkeypatch.undo()
    pkcs11.lib(SOFTHSM_LIB).reinitialize()


def test_create_pkcs11_softhsm(softhsm: str, tmp_path: Path, root_files: tuple[Path, Path]) -> None:
    key, cert = root_files
    args = [
        "create",
        "--backend",
        "pkcs11",
        "--pkcs11-lib",
        softhsm,
        "--pkcs11-token",
        "HSM Signer",
        "--pkcs11-pin-env",
        "TEST_PIN",
        "--name",
        NAME,
        "--root-key",
        str(key),
        "--root-cert",
        str(cert),
        "--data-dir",
        str(tmp_path / "data"),
        "--certinfo-out",
        str(tmp_path / "atcaprov_cert_info_1.c"),
    ]
    result = run(*args, env={"TEST_PIN": "4711"})
    assert result.exit_code == 0, result.output
    assert "Password:        required" in result.output
    assert "names a signer after its token label ('HSM Signer')" in result.output
    backend = open_backend("pkcs11", library=softhsm, token_label="HSM Signer")
    (location,) = backend.scan()
    with backend.open(location) as module:
        assert module.needs_password
        module.unlock("4711")
        info = load_cert_info(tmp_path / "atcaprov_cert_info_1.c")
        assert info.signer_public_key == module.identity.public_key
        assert info.signer_name == NAME
        profile = load_profile(
            tmp_path / "data" / "signers" / f"{module.identity.key_id.hex().upper()}.json"
        )
        device_key = ec.generate_private_key(ec.SECP256R1()).public_key()
        device_pub = device_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )[1:]
        built = build_cert(
            profile.device_cert_def,
            public_key=device_pub,
            issue_date=ISSUE,
            signer_id=module.identity.signer_id,
            sign=module.sign_digest,
            device_sn=bytes.fromhex("0123000000000002EE"),
            ca_public_key=module.identity.public_key,
        )
        verify_chain(built.cert_der, module.identity.signer_cert_der, info.root_cert_der)
    backend.close()
    # The token's private key cannot be read out.
    import pkcs11
    from pkcs11 import Attribute, ObjectClass

    token = pkcs11.lib(softhsm).get_token(token_label="HSM Signer")
    with token.open(user_pin="4711") as session:
        (private,) = session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})
        assert private[Attribute.SENSITIVE] and not private[Attribute.EXTRACTABLE]
    # A second signer key on the same token is refused; a wrong PIN is reported.
    again = run(*args[:-2], "--certinfo-out", str(tmp_path / "other.c"), env={"TEST_PIN": "4711"})
    assert again.exit_code == 1 and "already holds" in again.output
    wrong = run(*args[:-2], "--certinfo-out", str(tmp_path / "other.c"), env={"TEST_PIN": "0000"})
    assert wrong.exit_code == 1 and "refused the PIN" in wrong.output
    listed = run(
        "list", "--backend", "pkcs11", "--pkcs11-lib", softhsm, "--data-dir", str(tmp_path / "data")
    )
    assert listed.exit_code == 0, listed.output
    assert "  password:   required" in listed.output
    assert f"  profile:    {tmp_path / 'data' / 'signers'}" in listed.output


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------
def test_missing_root_file(tmp_path: Path, root_files: tuple[Path, Path]) -> None:
    key, _cert = root_files
    result = run(
        *sim_args(tmp_path, "--root-key", str(key), "--root-cert", str(tmp_path / "none.crt"))
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("Error: root certificate")
    assert "does not exist" in result.output
    assert not (tmp_path / "mods").exists()


def test_root_key_not_matching_cert(tmp_path: Path, root_files: tuple[Path, Path]) -> None:
    _key, cert = root_files
    other = make_root_ca(now=NOW)
    other_key, _ = write_root_ca(other, tmp_path / "other")
    result = run(*sim_args(tmp_path, "--root-key", str(other_key), "--root-cert", str(cert)))
    assert result.exit_code == 1 and "does not match root certificate" in result.output
    with pytest.raises(RootCaError, match="does not match"):
        load_root_ca(other_key, cert)


def test_unreadable_root_key_and_non_ca_cert(tmp_path: Path, root_files: tuple[Path, Path]) -> None:
    key, cert = root_files
    garbage = tmp_path / "garbage.key"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    result = run(*sim_args(tmp_path, "--root-key", str(garbage), "--root-cert", str(cert)))
    assert result.exit_code == 1 and "is not a readable private key" in result.output
    # A leaf certificate (no CA flag) for the right key is refused too.
    root = load_root_ca(key, cert)
    leaf = (x509.CertificateBuilder().subject_name(root.cert.subject)
            .issuer_name(root.cert.subject).public_key(root.key.public_key())
            .serial_number(5).not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=9))
            .sign(root.key, hashes_sha256()))  # fmt: skip
    leaf_path = tmp_path / "leaf.crt"
    leaf_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    result = run(*sim_args(tmp_path, "--root-key", str(key), "--root-cert", str(leaf_path)))
    assert result.exit_code == 1 and "is not a CA certificate" in result.output


def hashes_sha256() -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def test_encrypted_root_key(tmp_path: Path, root_files: tuple[Path, Path]) -> None:
    key, cert = root_files
    root = load_root_ca(key, cert)
    enc = tmp_path / "enc.key"
    enc.write_bytes(root.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"rootpw")))  # fmt: skip
    ok = run(
        *sim_args(
            tmp_path,
            "--root-key",
            str(enc),
            "--root-cert",
            str(cert),
            "--root-key-password-env",
            "RPW",
        ),
        env={"RPW": "rootpw"},
    )
    assert ok.exit_code == 0, ok.output
    bad = run(
        *sim_args(tmp_path / "b", "--root-key", str(enc), "--root-cert", str(cert)), input="wrong\n"
    )
    assert bad.exit_code == 1 and "or the password is wrong" in bad.output


def test_existing_outputs_refused_without_force(
    tmp_path: Path, root_files: tuple[Path, Path]
) -> None:
    key, cert = root_files
    out = tmp_path / "atcaprov_cert_info_0.c"
    out.write_text("old")
    args = sim_args(tmp_path, "--root-key", str(key), "--root-cert", str(cert))
    result = run(*args)
    assert result.exit_code == 1
    assert f"Error: {out} exists: will not overwrite it without --force" in result.output
    assert out.read_text() == "old" and not (tmp_path / "mods").exists()
    result = run(*args, "--force")
    assert result.exit_code == 0, result.output
    assert load_cert_info(out).signer_name == NAME
    # A root folder that already holds a root CA is never overwritten.
    again = run(*sim_args(tmp_path / "x", "--root-dir", str(key.parent)))
    assert again.exit_code == 1 and "a root key is never overwritten" in again.output


def test_bad_signer_id_and_unknown_backend(tmp_path: Path) -> None:
    result = run(*sim_args(tmp_path, "--root-dir", str(tmp_path / "r"), "--signer-id", "XYZ1"))
    assert result.exit_code == 2
    assert "--signer-id: signer id 'XYZ1' is not 4 hex digits" in result.output
    result = run("create", "--backend", "tpm", "--name", NAME, "--root-dir", str(tmp_path / "r"))
    assert result.exit_code == 2 and "'tpm' is not one of" in result.output
    assert not (tmp_path / "r").exists()
    assert parse_signer_id("0xc48b") == b"\xc4\x8b"
    with pytest.raises(SignerSetupError):
        parse_signer_id("C48")


def test_usage_errors(tmp_path: Path, root_files: tuple[Path, Path]) -> None:
    key, _cert = root_files
    cases = [
        (["create", "--backend", "pem", "--modules", "m", "--name", "N",
          "--root-dir", "r"], "--modules applies to --backend sim only"),
        (sim_args(tmp_path, "--root-key", str(key)), "give both --root-key and --root-cert"),
        (sim_args(tmp_path), "no root CA"),
        (sim_args(tmp_path, "--root-dir", "r", "--password", "--no-password"),
         "--password and --no-password exclude each other"),
        (["create", "--backend", "pkcs11", "--name", "N", "--root-dir", "r", "--password"],
         "--password/--password-env do not apply"),
    ]  # fmt: skip
    for args, message in cases:
        result = run(*args)
        assert result.exit_code in (1, 2), (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_certificate_too_big_for_chip_is_refused_before_the_chip(tmp_path: Path) -> None:
    long_name = "A Very Long Signer Name For The Example Production Line Nr 1"
    huge_org = "Example Organisation for Secure Provisioning " * 7  # 315 bytes
    result = run(
        *sim_args(
            tmp_path,
            "--root-dir",
            str(tmp_path / "root"),
            "--root-cn",
            "Example Root Certificate Authority",
        ),
        "--name",
        long_name,
        "--signer-org",
        huge_org,
    )
    assert result.exit_code == 1
    assert f"a signer module chip stores at most {CERT_MAX}" in result.output
    assert not (tmp_path / "mods").exists() and not (tmp_path / "root").exists()
    # The same names fit a pem key (no slot size limit there).
    ok = run(
        "create",
        "--backend",
        "pem",
        "--pem-key",
        str(tmp_path / "k.pem"),
        "--name",
        long_name,
        "--signer-org",
        huge_org,
        "--root-dir",
        str(tmp_path / "root"),
        "--root-cn",
        "Example Root Certificate Authority",
        "--data-dir",
        str(tmp_path / "data"),
        "--certinfo-out",
        str(tmp_path / "ci.c"),
    )
    assert ok.exit_code == 0, ok.output


def test_bad_names_and_years() -> None:
    with pytest.raises(SignerSetupError, match="at most 63"):
        SignerSpec(name="x" * 64)
    with pytest.raises(SignerSetupError, match="printable"):
        SignerSpec(name="tab\there")
    with pytest.raises(SignerSetupError, match=r"0\.\.127"):
        SignerSpec(name="ok", validity_years=128)
    with pytest.raises(SignerSetupError, match=r"0\.\.127"):
        DeviceSpec(validity_years=128)
    assert SignerSpec(name="ok", validity_years=127).validity_years == 127
    assert DeviceSpec(validity_years=40).validity_years == 40


def test_profile_is_what_the_server_reads(tmp_path: Path, root_files: tuple[Path, Path]) -> None:
    """The server's ProfileStore finds the profile by key id (ignoring the root .der file)."""
    key, cert = root_files
    assert (
        run(
            *sim_args(
                tmp_path,
                "--root-key",
                str(key),
                "--root-cert",
                str(cert),
                "--device-validity-years",
                "0",
            )
        ).exit_code
        == 0
    )
    with open_sim(only_module(tmp_path)) as module:
        key_id = module.identity.key_id
    folder = tmp_path / "data" / "signers"
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"{key_id.hex().upper()}.json", f"{key_id.hex().upper()}.root.der"]
    profile = ProfileStore([folder]).get(key_id)
    assert profile.validity_years == 0
    assert (
        hashlib.sha1(
            b"\x04" + load_cert_info(tmp_path / "atcaprov_cert_info_0.c").signer_public_key
        ).digest()
        == key_id
    )
    assert os.access(folder / f"{key_id.hex().upper()}.json", os.R_OK)


# --------------------------------------------------------------------------------------------
# The server itself signs for a signer made here
# --------------------------------------------------------------------------------------------
async def test_server_signs_for_created_sim_signer(
    tmp_path: Path, root_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import io

    from atcaprov.protocol import CertReply, CertRequest, ErrorReply
    from atcaprov.return_codes import ReturnCode
    from provserver.cli import Settings
    from provserver.cli import run as run_server
    from provserver.console import Console
    from provserver.records import MemoryRecordStore
    from tests.support.config import config_zone
    from tests.support.station import Station

    key, cert = root_files
    monkeypatch.setenv("SRV_PW", "server-pw")
    result = run(
        *sim_args(
            tmp_path, "--root-key", str(key), "--root-cert", str(cert), "--password-env", "SRV_PW"
        )
    )
    assert result.exit_code == 0, result.output
    info = load_cert_info(tmp_path / "atcaprov_cert_info_0.c")
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path / "data",
        signers=["sim"],
        modules=tmp_path / "mods",
        rescan_interval=0.2,
        password_env="SRV_PW",
    )
    stop = asyncio.Event()
    ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run_server(
            settings,
            console=Console(io.StringIO()),
            stop=stop,
            on_ready=ready.set_result,
            records=MemoryRecordStore(),
        )
    )
    try:
        server = await asyncio.wait_for(ready, 20)
        device_pub = (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )[1:]
        )
        request = CertRequest(
            signer_id=info.signer_id, signer_key_id=info.signer_key_id,
            device_template_id=info.device_cert_def.template_id,
            signer_template_id=info.signer_cert_def.template_id,
            chain_id=info.device_cert_def.chain_id, config_zone=config_zone(7),
            device_public_key=device_pub, station_id="t")  # fmt: skip
        station = await Station.connect(server.port)
        # The server unlocks the module with the password in the background: while it does,
        # it answers SIGNER_LOCKED (bounded wait).
        reply = await station.request(request)
        for _ in range(100):
            if not (isinstance(reply, ErrorReply) and reply.code is ReturnCode.SIGNER_LOCKED):
                break
            await asyncio.sleep(0.1)
            reply = await station.request(request)
        await station.close()
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
    assert isinstance(reply, CertReply), reply
    assert reply.root_cert == info.root_cert_der
    verify_chain(reply.device_cert, reply.signer_cert, info.root_cert_der)
    # The station can store it compressed and rebuild it byte for byte.
    comp = compress(info.device_cert_def, reply.device_cert)
    sn = config_zone(7)[0:4] + config_zone(7)[8:13]
    assert (
        rebuild(info.device_cert_def, comp, device_pub, sn, ca_public_key=info.signer_public_key)
        == reply.device_cert
    )


def test_sim_modules_default_to_the_servers_folder(
    tmp_path: Path, root_files: tuple[Path, Path]
) -> None:
    key, cert = root_files
    data = tmp_path / "data"
    result = run("create", "--backend", "sim", "--name", NAME, "--root-key", str(key),
                 "--root-cert", str(cert), "--data-dir", str(data),
                 "--certinfo-out", str(tmp_path / "ci.c"))  # fmt: skip
    assert result.exit_code == 0, result.output
    (module,) = (data / "modules").glob("signer-*.json")
    assert f"Module location: {module}" in result.output
    listed = run("list", "--backend", "sim", "--data-dir", str(data))
    assert listed.exit_code == 0, listed.output
    assert f"sim: {module}" in listed.output and "1 module(s) found." in listed.output
