"""A private SoftHSM2 store for the pkcs11 tests: its config file and tokens made by the test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from provserver.signers.pkcs11 import find_softhsm2

SOFTHSM_LIB = find_softhsm2()
needs_softhsm = pytest.mark.skipif(
    SOFTHSM_LIB is None or shutil.which("softhsm2-util") is None,
    reason="SoftHSM2 not installed (Debian package softhsm2; `make test` installs it through "
    "scripts/ensure-test-tools)",
)


def write_softhsm_conf(folder: Path) -> Path:
    """A token folder under ``folder`` and the softhsm2.conf naming it; returns the conf."""
    (folder / "tokens").mkdir(parents=True)
    conf = folder / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\n"
        "log.level = ERROR\nslots.removable = false\n"
    )
    return conf


def init_token(label: str, pin: str, so_pin: str) -> None:
    """A new token in the store SOFTHSM2_CONF names."""
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin,
         "--so-pin", so_pin],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip


def reinitialize_softhsm() -> None:
    """Make the loaded SoftHSM2 library re-read SOFTHSM2_CONF."""
    import pkcs11

    assert SOFTHSM_LIB is not None
    pkcs11.lib(SOFTHSM_LIB).reinitialize()
