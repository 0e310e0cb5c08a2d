"""The layer rules hold: the import-linter contracts of pyproject.toml (``[tool.importlinter]``)
checked on this source tree.

The library never imports the server or the client; the flow and ``device`` never import the
emulator; the HAL never imports the emulator except its ``emulator`` driver; the signing
service never imports its transport; no import cycles inside atcaprov's packages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from importlinter import api as importlinter_api

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"


def _contract_ids() -> list[str]:
    config = importlinter_api.read_configuration(str(PYPROJECT))
    return [str(contract["id"]) for contract in config["contracts_options"]]


def _lint(*contract_ids: str) -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe is not None, "lint-imports (import-linter, a test dependency) is not installed"
    paths = [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    args = [exe, "--no-cache", "--no-logo", str(PYPROJECT)]
    for contract_id in contract_ids:
        args += ["--contract", contract_id]
    result = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_layer_rules() -> None:
    contract_ids = _contract_ids()
    assert len(contract_ids) >= 5
    _lint(*contract_ids)
