"""Where the ledger store's copies of a device are: ``certs/<day>/<SN>-<time>-<kind>.pem``."""

from __future__ import annotations

from pathlib import Path


def cert_files(certs: Path, sn: str, kind: str = "*") -> list[Path]:
    """The ``kind`` ("device", "signer" or every) certificate files of device ``sn``."""
    return sorted(certs.glob(f"*/{sn.upper()}-*-{kind}.pem"))


def devices_with_files(certs: Path) -> set[str]:
    """The serial numbers that have a device certificate file."""
    return {p.name.split("-", 1)[0] for p in certs.glob("*/*-device.pem")}
