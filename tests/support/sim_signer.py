"""Signers made by `provserver signer create` for the whole-server tests, and what they log.

:func:`make_sim_signer` runs the real set-up command (sim back-end, a new root CA);
:func:`read_signing_log` reads the server's signing log back, :func:`serial_hex` gives a
certificate's serial number as the log writes it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner
from cryptography import x509

from atcaprov.certinfo import CertInfo, load_cert_info
from provserver.cli import main

NAME = "Example ATECC508A Signer"


@dataclass
class SimSigner:
    """What `provserver signer create --backend sim` produced."""

    modules: Path
    data: Path
    module: Path
    info: CertInfo


def make_sim_signer(tmp: Path, *extra: str, env: dict[str, str] | None = None) -> SimSigner:
    """Run `provserver signer create --backend sim` (new root CA) into ``tmp``."""
    modules, data, certinfo = tmp / "modules", tmp / "data", tmp / "atcaprov_cert_info_0.c"
    result = CliRunner().invoke(
        main,
        ["signer", "create", "--backend", "sim", "--modules", str(modules), "--name", NAME,
         "--root-dir", str(tmp / "root"), "--data-dir", str(data),
         "--certinfo-out", str(certinfo), "--device-cn", "Load Device", *extra],
        env=env,
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (module,) = sorted(modules.glob("signer-*.json"))
    return SimSigner(modules, data, module, load_cert_info(certinfo))


def serial_hex(cert: x509.Certificate) -> str:
    n = cert.serial_number
    return n.to_bytes((n.bit_length() + 7) // 8 or 1, "big").hex().upper()


def read_signing_log(data: Path) -> list[dict[str, str]]:
    """Rows of the (single) signing log of ``data``."""
    (tsv,) = sorted((data / "logs").glob("signing-*.tsv"))
    with tsv.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, dialect="excel-tab"))
