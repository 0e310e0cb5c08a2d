"""atcacert throughput: rebuilds per second and compress+sign per second.

Figures, one line each:

* ``raw ECDSA P-256 sign``: ``cryptography`` signing a 32-byte digest (the reference);
* ``build (fill + sign + compress)``: ``CertDef.build`` of a device certificate with the same
  signer, i.e. what the server does per device (ratio to the raw sign shows our overhead);
* ``rebuild``: ``CertDef.rebuild`` from the 72-byte record (what a client does to validate);
* ``compress``: ``CertDef.compress`` of a finished certificate;
* ``rebuild`` / ``compress (format 1)``: the same for a 40-year certificate (compressed format
  1, byte 71 carrying the extended date bits).

Every loop is bounded by a count and a time budget. Usage:
``python bench/bench_atcacert.py [--seconds S] [--max-count N]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from datetime import datetime, timezone

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

from atcaprov import atcacert
from atcaprov.atcacert import (
    make_root_cert,
    make_signer_cert,
    make_standard_cert_defs,
    public_key_bytes,
)


def rate(step: Callable[[], object], seconds: float, max_count: int) -> tuple[float, int]:
    """Calls per second of ``step`` within ``seconds`` and at most ``max_count`` calls."""
    step()
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while count < max_count:
        step()
        count += 1
        if time.perf_counter() >= deadline:
            break
    return count / (time.perf_counter() - start), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per figure")
    parser.add_argument("--max-count", type=int, default=100_000, help="call budget per figure")
    args = parser.parse_args()

    now = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    root_key = ec.generate_private_key(ec.SECP256R1())
    signer_key = ec.generate_private_key(ec.SECP256R1())
    signer_pub = public_key_bytes(signer_key.public_key())
    root = make_root_cert(root_key, common_name="Bench Root", now=now)
    signer = make_signer_cert(root, root_key, signer_pub, signer_id=b"\xc4\x8b", now=now)
    device_def = make_standard_cert_defs(root, signer, now=now).device
    device_pub = public_key_bytes(ec.generate_private_key(ec.SECP256R1()).public_key())
    algorithm = ec.ECDSA(Prehashed(hashes.SHA256()))
    digest = bytes(range(32))

    def raw_sign() -> bytes:
        return signer_key.sign(digest, algorithm)

    def sign(d: bytes) -> bytes:
        r, s = decode_dss_signature(signer_key.sign(d, algorithm))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def build() -> bytes:
        return atcacert.build_cert(
            device_def,
            public_key=device_pub,
            issue_date=now,
            signer_id=b"\xc4\x8b",
            sign=sign,
            ca_public_key=signer_pub,
        ).comp_cert

    built = atcacert.build_cert(
        device_def,
        public_key=device_pub,
        issue_date=now,
        signer_id=b"\xc4\x8b",
        sign=sign,
        ca_public_key=signer_pub,
    )

    def rebuild() -> bytes:
        return atcacert.rebuild(device_def, built.comp_cert, device_pub, ca_public_key=signer_pub)

    def compress() -> bytes:
        return atcacert.compress(device_def, built.cert_der)

    def40 = dataclasses.replace(device_def, expire_years=40)
    built40 = atcacert.build_cert(
        def40,
        public_key=device_pub,
        issue_date=now,
        signer_id=b"\xc4\x8b",
        sign=sign,
        ca_public_key=signer_pub,
    )
    assert built40.comp_cert[70] & 0x0F == 1

    def rebuild40() -> bytes:
        return atcacert.rebuild(def40, built40.comp_cert, device_pub, ca_public_key=signer_pub)

    def compress40() -> bytes:
        return atcacert.compress(def40, built40.cert_der)

    assert rebuild() == built.cert_der and rebuild40() == built40.cert_der
    raw, n_raw = rate(raw_sign, args.seconds, args.max_count)
    figures = [("raw ECDSA P-256 sign", raw, n_raw)]
    for name, step in (
        ("build (fill + sign + compress)", build),
        ("rebuild", rebuild),
        ("compress", compress),
        ("rebuild (format 1)", rebuild40),
        ("compress (format 1)", compress40),
    ):
        per_s, n = rate(step, args.seconds, args.max_count)
        figures.append((name, per_s, n))
    for name, per_s, n in figures:
        print(f"{name:32s} {per_s:10.0f}/s  ({n} calls, {per_s / raw:6.2f}x raw sign)")


if __name__ == "__main__":
    main()
