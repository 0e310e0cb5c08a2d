"""The back-ends' declared command-line options (provserver.backend_options) and their creators."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from provserver.backend_options import (
    MissingOptionError,
    backend_kwargs,
    builtin_backends,
    check_foreign_options,
    chosen_backends,
    click_options,
    command_options,
)
from provserver.cli import Settings, StartupError
from provserver.signer_cli import signer
from provserver.signers import SignerBackend, SignerModule, register_backend
from provserver.signers.base import BackendOption
from provserver.signers.create import SignerSetupError, SignerSpec, module_creator
from provserver.signers.hid import HidModuleCreator
from provserver.signers.module_layout import CERT_MAX
from provserver.signers.pem import PemModuleCreator
from provserver.signers.pkcs11 import DEFAULT_PIN_ENV, Pkcs11ModuleCreator
from provserver.signers.sim import SimModuleCreator

SRC = Path(__file__).resolve().parents[2] / "src"


def flags(command: Any) -> list[tuple[str, str]]:
    return [(name, option.flag) for name, option in command_options(command)]


def test_each_command_offers_the_back_ends_options_in_order() -> None:
    assert builtin_backends() == ["sim", "hid", "pkcs11", "pem"]
    assert flags("serve") == [
        ("sim", "--modules"), ("hid", "--hidapi"), ("pkcs11", "--pkcs11-lib"),
        ("pkcs11", "--pkcs11-token"), ("pem", "--pem-key"), ("pem", "--pem-cert"),
    ]  # fmt: skip
    assert flags("create") == [
        ("sim", "--modules"), ("hid", "--hid-path"), ("hid", "--hidapi"),
        ("pkcs11", "--pkcs11-lib"), ("pkcs11", "--pkcs11-token"), ("pkcs11", "--pkcs11-pin-env"),
        ("pem", "--pem-key"),
    ]  # fmt: skip
    assert flags("list") == [
        ("sim", "--modules"), ("hid", "--hidapi"), ("pkcs11", "--pkcs11-lib"),
        ("pkcs11", "--pkcs11-token"), ("pkcs11", "--pkcs11-pin-env"), ("pem", "--pem-key"),
    ]  # fmt: skip


def test_every_server_option_is_a_settings_field() -> None:
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert {option.dest for _, option in command_options("serve")} <= fields


def test_click_options_carry_the_declaration() -> None:
    @click.command()
    @click_options("list")
    def command(**values: Any) -> None:
        pass

    by_name = {param.name: param for param in command.params}
    pin_env = by_name["pkcs11_pin_env"]
    assert isinstance(pin_env, click.Option)
    assert pin_env.default == DEFAULT_PIN_ENV and pin_env.show_default and pin_env.metavar == "VAR"
    assert pin_env.help == "pkcs11: environment variable with the user PIN (optional for listing)."
    assert isinstance(by_name["pem_key"].type, click.Path)


def test_chosen_backends_and_foreign_options(tmp_path: Path) -> None:
    assert chosen_backends("list", {}) == ["hid"]
    given = {"pem_key": tmp_path, "modules": tmp_path, "pkcs11_pin_env": "X"}
    assert chosen_backends("list", given) == ["hid", "sim", "pem"]  # a PIN variable picks none
    assert chosen_backends("serve", {"pem_cert": tmp_path}) == ["hid"]
    check_foreign_options("create", ["sim"], {"modules": tmp_path, "pkcs11_pin_env": "X"})
    with pytest.raises(click.UsageError, match=r"--hid-path applies to --backend hid only"):
        check_foreign_options("create", ["sim"], {"hid_path": "/dev/hidraw0"})


def test_backend_kwargs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert backend_kwargs("sim", "list", {}, tmp_path) == {"modules": tmp_path / "modules"}
    assert backend_kwargs("pkcs11", "serve", {"pkcs11_token": "T"}, tmp_path) == {
        "token_label": "T"
    }
    assert backend_kwargs("pem", "create", {"pem_key": tmp_path / "k.pem"}, tmp_path) == {
        "path": tmp_path / "k.pem"
    }
    with pytest.raises(MissingOptionError, match="the pem signer back-end needs --pem-key"):
        backend_kwargs("pem", "serve", {}, tmp_path)
    # create: the PIN comes from the variable the option names (else it is asked for)
    monkeypatch.setenv("TEST_OPTIONS_PIN", "4711")
    assert backend_kwargs("pkcs11", "create", {"pkcs11_pin_env": "TEST_OPTIONS_PIN"}, tmp_path) == {
        "pin": "4711"
    }


def test_missing_required_option_per_command(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match=r"^the pem signer back-end needs --pem-key FILE_OR"):
        Settings(data_dir=tmp_path, signers=["pem"]).backend_options("pem")
    result = CliRunner().invoke(signer, ["list", "--backend", "pem", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "--backend pem needs --pem-key FILE_OR_FOLDER" in result.output


def test_module_creators_of_the_back_ends(tmp_path: Path) -> None:
    sim = module_creator("sim", modules=tmp_path)
    assert isinstance(sim, SimModuleCreator) and sim.cert_max == CERT_MAX and sim.module_is_file
    hid = module_creator("hid")
    assert isinstance(hid, HidModuleCreator) and hid.asks_password and hid.cert_max == CERT_MAX
    pem = module_creator("pem")
    assert isinstance(pem, PemModuleCreator) and pem.cert_max is None
    with pytest.raises(SignerSetupError, match="needs --pem-key FILE"):
        pem.check(SignerSpec(name="Test Signer"))
    pkcs11 = module_creator("pkcs11", pin="secret-pin")
    assert isinstance(pkcs11, Pkcs11ModuleCreator) and pkcs11.no_password
    assert "secret-pin" not in repr(pkcs11)
    with pytest.raises(SignerSetupError, match="a module password does not apply"):
        pkcs11.check(SignerSpec(name="Test Signer", password="pw"))

    @register_backend("test-no-creator")
    class NoCreator(SignerBackend):
        def scan(self) -> set[str]:
            return set()

        def open(self, location: str) -> SignerModule:
            raise NotImplementedError

    with pytest.raises(SignerSetupError, match="test-no-creator back-end cannot create"):
        module_creator("test-no-creator")


def test_option_declaration_dest() -> None:
    assert BackendOption("--pkcs11-pin-env", "pin", {"create": "x"}).dest == "pkcs11_pin_env"


def test_without_python_pkcs11() -> None:
    """The command lines and the other back-ends work without python-pkcs11; the pkcs11
    back-end says which package is missing."""
    script = (
        "import sys\n"
        "sys.modules['pkcs11'] = None\n"
        "from click.testing import CliRunner\n"
        "from provserver.cli import main\n"
        "from provserver.signers import SignerConfigError, open_backend\n"
        "result = CliRunner().invoke(main, ['signer', 'create', '--help'])\n"
        "assert result.exit_code == 0 and '--pkcs11-pin-env' in result.output, result.output\n"
        "try:\n"
        "    open_backend('pkcs11')\n"
        "except SignerConfigError as exc:\n"
        "    print(exc)\n"
    )
    path = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "signer back-end 'pkcs11' cannot be loaded" in done.stdout
    assert "(install the package 'pkcs11')" in done.stdout
