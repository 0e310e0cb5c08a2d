"""``atcaprov cert``: certificate tools over :mod:`atcaprov.atcacert` and :mod:`atcaprov.certinfo`.

* ``def-from-cert``: write a cert-definition ``.c`` file from a real certificate (your template),
  with the standard device or signer layout or slots of your own;
* ``compress``: the 72-byte compressed record of a certificate, for a given definition;
* ``rebuild``: the full certificate from a record, the public key and the device serial number;
* ``info``: what an ``atcaprov_cert_info_N.c`` file says (signer, key id, slots, root).

The commands only read and write files; the work is in the library.
"""

from __future__ import annotations

from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .. import atcacert
from ..atcacert import CertDef, load_cert_defs
from ..errors import AtcaprovError
from ..pemder import certificate_der

_IN = click.Path(exists=True, dir_okay=False, path_type=Path)


def _read_cert(path: Path) -> bytes:
    data = path.read_bytes()
    try:
        return certificate_der(data)
    except ValueError as exc:
        raise click.ClickException(f"{path}: not a PEM or DER certificate ({exc})") from exc


def _hex(text: str, size: int, what: str) -> bytes:
    try:
        value = bytes.fromhex(text.replace(":", "").replace(" ", ""))
    except ValueError:
        raise click.BadParameter(f"{what}: not hex: {text!r}") from None
    if len(value) not in (size, 72 if size == 64 else size):
        raise click.BadParameter(f"{what}: {len(value)} bytes, expected {size}")
    return value


def _load_def(path: Path, name: str | None) -> CertDef:
    try:
        defs = load_cert_defs(path.read_text(encoding="utf-8"), filename=str(path))
    except AtcaprovError as exc:
        raise click.ClickException(str(exc)) from exc
    if not defs:
        raise click.ClickException(f"{path}: no atcacert_def_t definition found")
    if name is None:
        if len(defs) > 1:
            raise click.ClickException(
                f"{path} defines {', '.join(sorted(defs))}: choose one with --name"
            )
        return next(iter(defs.values()))
    if name not in defs:
        raise click.ClickException(
            f"{path}: no definition {name!r} (it defines {', '.join(sorted(defs))})"
        )
    return defs[name]


@click.group()
def cert() -> None:
    """Certificate tools: cert definitions, compressed records, cert info files."""


@cert.command("def-from-cert")
@click.argument("certificate", type=_IN)
@click.option(
    "--kind",
    type=click.Choice(["device", "signer"]),
    required=True,
    help="device: key by GenKey in the key slot, SNSRC_PUB_KEY_HASH; signer: public "
    "key stored padded (72 bytes) in --pubkey-slot, SNSRC_SIGNER_ID.",
)
@click.option(
    "--name", default=None, help="C name suffix (g_cert_def_<name>); default 2_device / 1_signer."
)
@click.option(
    "--template-id",
    type=click.IntRange(0, 15),
    default=None,
    help="Template id (default 2 for device, 1 for signer).",
)
@click.option("--chain-id", type=click.IntRange(0, 15), default=0, show_default=True)
@click.option(
    "--key-slot",
    type=click.IntRange(0, 15),
    default=0,
    show_default=True,
    help="device: private key slot.",
)
@click.option(
    "--cert-slot",
    type=click.IntRange(0, 15),
    default=None,
    help="Slot of the 72-byte compressed record (default 10 device, 12 signer).",
)
@click.option(
    "--pubkey-slot",
    type=click.IntRange(8, 15),
    default=11,
    show_default=True,
    help="signer: slot of the padded public key.",
)
@click.option(
    "--signer-id",
    default=None,
    metavar="HEX4",
    help="Signer id as written in the certificate (default: look for FFFF).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the .c here (default: standard output).",
)
def def_from_cert(
    certificate: Path,
    kind: str,
    name: str | None,
    template_id: int | None,
    chain_id: int,
    key_slot: int,
    cert_slot: int | None,
    pubkey_slot: int,
    signer_id: str | None,
    output: Path | None,
) -> None:
    """Write a cert definition (.c) whose template is CERTIFICATE."""
    from ..atcacert import DeviceLoc, DevZone, SnSource, cert_def_from_cert

    der = _read_cert(certificate)
    device = kind == "device"
    try:
        cert_def = cert_def_from_cert(
            der,
            template_id=template_id if template_id is not None else (2 if device else 1),
            chain_id=chain_id,
            sn_source=SnSource.PUB_KEY_HASH if device else SnSource.SIGNER_ID,
            private_key_slot=key_slot if device else 0,
            public_key_dev_loc=(
                DeviceLoc(DevZone.DATA, key_slot, True, 0, 64)
                if device
                else DeviceLoc(DevZone.DATA, pubkey_slot, False, 0, 72)
            ),
            comp_cert_dev_loc=DeviceLoc(
                DevZone.DATA,
                cert_slot if cert_slot is not None else (10 if device else 12),
                False,
                0,
                72,
            ),
            signer_id=signer_id,
        )
        text = atcacert.cert_def_to_c(cert_def, name or ("2_device" if device else "1_signer"))
    except AtcaprovError as exc:
        raise click.ClickException(f"{certificate}: {exc}") from exc
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"Wrote {output}", err=True)


@cert.command()
@click.argument("certificate", type=_IN)
@click.option("--def", "def_file", type=_IN, required=True, help="Cert definition .c file.")
@click.option("--name", default=None, help="Definition name if the file holds several.")
def compress(certificate: Path, def_file: Path, name: str | None) -> None:
    """Print the 72-byte compressed record of CERTIFICATE (hex)."""
    cert_def = _load_def(def_file, name)
    try:
        click.echo(atcacert.compress(cert_def, _read_cert(certificate)).hex().upper())
    except AtcaprovError as exc:
        raise click.ClickException(f"{certificate}: {exc}") from exc


@cert.command()
@click.option("--def", "def_file", type=_IN, required=True, help="Cert definition .c file.")
@click.option("--name", default=None, help="Definition name if the file holds several.")
@click.option("--record", required=True, metavar="HEX", help="The 72-byte record.")
@click.option(
    "--public-key",
    required=True,
    metavar="HEX",
    help="The certificate's public key, X||Y (64 bytes) or padded (72).",
)
@click.option("--device-sn", default=None, metavar="HEX", help="9-byte device serial number.")
@click.option(
    "--ca-public-key",
    default=None,
    metavar="HEX",
    help="Issuer public key X||Y, for the authority key id.",
)
def rebuild(
    def_file: Path,
    name: str | None,
    record: str,
    public_key: str,
    device_sn: str | None,
    ca_public_key: str | None,
) -> None:
    """Print the full certificate (PEM) rebuilt from a compressed record."""
    cert_def = _load_def(def_file, name)
    try:
        der = atcacert.rebuild(
            cert_def,
            _hex(record, 72, "--record"),
            _hex(public_key, 64, "--public-key"),
            _hex(device_sn, 9, "--device-sn") if device_sn else None,
            ca_public_key=_hex(ca_public_key, 64, "--ca-public-key") if ca_public_key else None,
        )
    except AtcaprovError as exc:
        raise click.ClickException(str(exc)) from exc
    pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
    click.echo(pem.decode("ascii"), nl=False)


@cert.command()
@click.argument("certinfo", type=_IN)
def info(certinfo: Path) -> None:
    """Show what an atcaprov_cert_info_N.c file says."""
    from ..certinfo import load_cert_info

    try:
        ci = load_cert_info(certinfo)
    except AtcaprovError as exc:
        raise click.ClickException(str(exc)) from exc
    root = x509.load_der_x509_certificate(ci.root_cert_der)
    slots = ci.slots
    for label, value in (
        ("signer", ci.signer_name),
        ("signer id", ci.signer_id.hex().upper()),
        ("signer key id", ci.signer_key_id.hex().upper()),
        ("root", root.subject.rfc4514_string()),
        ("device key slot", slots.device_private_key),
        ("device cert slot", slots.device_cert),
        ("signer key slot", slots.signer_public_key),
        ("signer cert slot", slots.signer_cert),
        (
            "templates",
            f"device {ci.device_cert_def.template_id},"
            f" signer {ci.signer_cert_def.template_id},"
            f" chain {ci.device_cert_def.chain_id}",
        ),
    ):
        click.echo(f"{label + ':':18}{value}")
