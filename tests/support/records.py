"""Signing records and certificate PEMs for the record store tests."""

from __future__ import annotations

from provserver.records import SigningRecord
from tests.support.certs import pem, self_signed


def cert_pem_text(cn: str) -> str:
    """A small self-signed certificate (PEM text) standing in for a device or signer one."""
    return pem(self_signed(cn, serial=7)).decode("ascii")


def signed(i: int, station: str = "line-1") -> SigningRecord:
    """The record of device number ``i`` signed at ``station``."""
    return SigningRecord.create(
        station=station,
        device_sn=bytes.fromhex("0123") + i.to_bytes(2, "big") + bytes.fromhex("D92CA571EE"),
        signer="Example ATECC508A Signer (01231E6CD82CA571EE)",
        result="signed",
        cert_sn=i.to_bytes(3, "big"),
        public_key=bytes(range(64)),
    )
