"""Microchip's secure-element manifest: building signed entries from the ledger and checking them.

The manifest is the file cloud onboarding scripts (AWS IoT, Azure DPS, Microchip's
pytrustplatform) read to register devices: a JSON array with one *signed secure element* per
device, each a JWS in flattened form::

    {"payload": B64URL(JSON), "protected": B64URL(JSON),
     "header": {"uniqueId": SN}, "signature": B64URL}

* protected header ``{"typ": "JWT", "alg": "ES256", "kid": B64URL(SKI of the manifest signer
  certificate), "x5t#S256": B64URL(SHA-256 of its DER)}``;
* payload: ``version`` (1), ``model`` (the chip model the ledger stored for the issuance: the
  device type the client's request stated, e.g. ``ATECC608B``), ``partNumber`` (by default
  the model), ``manufacturer``, ``provisioner``,
  ``distributor`` (each ``{"organizationName", "organizationalUnitName"}``), ``groupId``,
  ``provisioningTimestamp`` (ISO 8601 UTC, milliseconds, ``Z``), ``uniqueId`` (the chip serial
  number, lower-case hex) and ``publicKeySet.keys`` = ``[{"kid": "0", "kty": "EC", "crv":
  "P-256", "x", "y", "x5c": [device DER, signer DER]}]`` (``x``/``y`` base64url, ``x5c``
  standard base64, RFC 7517 4.7);
* signature: ECDSA P-256 / SHA-256 over ``protected + "." + payload``, raw ``r‖s``, base64url.

B64URL is base64url without padding (RFC 7515). :class:`ManifestSigner` signs entries
(:meth:`ManifestSigner.entry`), :func:`write_manifest` streams them to a file one at a time,
:func:`iter_manifest` reads a manifest back one entry at a time and :func:`verify_entry` checks
one entry (signature, signer certificate, certificate chain, key). Memory stays flat for a
million entries both ways.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from atcaprov.crypto import (
    CryptoFormatError,
    certificate_public_key,
    der_to_rs,
    public_key_xy,
    rs_to_der,
)
from atcaprov.errors import AtcaprovError

from .ledger import Issuance

MANIFEST_VERSION = 1
DEFAULT_MODEL = "ATECC508A"
MICROCHIP = ("Microchip Technology Inc", "Secure Products Group")
_READ_CHUNK = 1 << 16
_MAX_ENTRY_SIZE = 1 << 20  # one signed secure element is ~3 kB; more is not a manifest


class ManifestError(AtcaprovError):
    """A manifest signer that cannot be used, or a file that is not a manifest."""


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """The bytes of unpadded base64url text (ValueError if it is not)."""
    if not isinstance(text, str):
        raise ValueError("not a base64url string")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def organization(text: str) -> dict[str, str]:
    """``"ORG/UNIT"`` (or ``"ORG"``) as the manifest's organization object."""
    name, _, unit = text.partition("/")
    return {"organizationName": name.strip(), "organizationalUnitName": unit.strip()}


def manifest_timestamp(ledger_time: str) -> str:
    """A ledger time (microseconds) as the manifest's ISO 8601 with milliseconds and ``Z``."""
    if len(ledger_time) != 27 or not ledger_time.endswith("Z"):
        raise ValueError(f"not a ledger time: {ledger_time!r}")
    return ledger_time[:23] + "Z"


@dataclass(frozen=True)
class ManifestFields:
    """The descriptive payload fields of one export.

    ``model`` and ``partNumber`` come from the device: an entry's model is the device type
    stored with its issuance; ``model`` here is only for issuances stored without one (requests
    from protocol v1 clients, which do not say). The part number of a model is
    ``part_numbers[model]``, else ``part_number`` if given, else the model itself.
    """

    model: str = DEFAULT_MODEL
    part_number: str | None = None
    part_numbers: Mapping[str, str] = field(default_factory=dict)
    manufacturer: dict[str, str] = field(default_factory=lambda: organization("/".join(MICROCHIP)))
    provisioner: dict[str, str] = field(default_factory=lambda: organization(""))
    distributor: dict[str, str] = field(default_factory=lambda: organization(""))
    group_id: str = ""

    def model_of(self, issuance: Issuance) -> str:
        """The model of ``issuance``'s chip: its stored device type, else :attr:`model`."""
        return issuance.device_type or self.model

    def part_number_of(self, model: str) -> str:
        """The part number entries of ``model`` carry."""
        return self.part_numbers.get(model) or self.part_number or model


def secure_element(issuance: Issuance, fields: ManifestFields) -> dict[str, Any]:
    """The manifest payload (a secure element) of one ledger issuance."""
    key = bytes.fromhex(issuance.public_key)
    if len(key) != 64:
        raise ManifestError(f"device {issuance.device_sn}: public key is not 64 bytes X||Y")
    chain = [
        base64.b64encode(issuance.device_cert).decode("ascii"),
        base64.b64encode(issuance.signer_cert).decode("ascii"),
    ]
    model = fields.model_of(issuance)
    return {
        "version": MANIFEST_VERSION,
        "model": model,
        "partNumber": fields.part_number_of(model),
        "manufacturer": fields.manufacturer,
        "provisioner": fields.provisioner,
        "distributor": fields.distributor,
        "groupId": fields.group_id,
        "provisioningTimestamp": manifest_timestamp(issuance.issued_at),
        "uniqueId": issuance.device_sn.lower(),
        "publicKeySet": {"keys": [{
            "kid": "0", "kty": "EC", "crv": "P-256",
            "x": b64url(key[:32]), "y": b64url(key[32:]), "x5c": chain,
        }]},
    }  # fmt: skip


def subject_key_id(cert: x509.Certificate) -> bytes:
    """The certificate's subject key identifier (its extension, else RFC 5280 method 1)."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


class ManifestSigner:
    """The manifest signer: a P-256 private key and its certificate."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        if public_key_xy(key) != public_key_xy(certificate_public_key(cert)):
            raise ManifestError("the manifest key does not belong to the manifest certificate")
        self._key = key
        self.cert = cert
        der = cert.public_bytes(serialization.Encoding.DER)
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "kid": b64url(subject_key_id(cert)),
            "x5t#S256": b64url(hashlib.sha256(der).digest()),
        }
        self.protected = b64url(json.dumps(header).encode("ascii"))

    @classmethod
    def load(cls, key_path: Path, cert_path: Path) -> ManifestSigner:
        """From PEM files (an unencrypted key). Raises :class:`ManifestError` saying which."""
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ManifestError(f"manifest key {key_path}: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise ManifestError(f"manifest key {key_path}: not an EC P-256 private key")
        cert = load_certificate(cert_path, "manifest certificate")
        return cls(key, cert)

    def entry(self, payload: dict[str, Any]) -> dict[str, Any]:
        """One signed secure element (flattened JWS) of a payload."""
        encoded = b64url(json.dumps(payload).encode("ascii"))
        signed = f"{self.protected}.{encoded}".encode("ascii")
        signature = der_to_rs(self._key.sign(signed, ec.ECDSA(hashes.SHA256())))
        return {
            "payload": encoded,
            "protected": self.protected,
            "header": {"uniqueId": payload["uniqueId"]},
            "signature": b64url(signature),
        }


def load_certificate(path: Path, what: str) -> x509.Certificate:
    """A PEM or DER certificate file; :class:`ManifestError` naming ``what`` if it is not."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{what} {path}: {exc.strerror or exc}") from exc
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise ManifestError(f"{what} {path}: not a certificate ({exc})") from exc


def write_manifest(out: IO[str], entries: Iterable[dict[str, Any]]) -> int:
    """Write a JSON array of ``entries`` one at a time (nothing kept); returns the count."""
    count = 0
    out.write("[")
    for entry in entries:
        out.write(",\n  " if count else "\n  ")
        out.write(json.dumps(entry))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def iter_manifest(stream: IO[str]) -> Iterator[Any]:
    """The elements of the JSON array in ``stream``, one at a time (a bounded buffer).

    Raises :class:`ManifestError` (with the character offset) if the text is not a JSON array.
    """
    decoder = json.JSONDecoder()
    buffer = ""
    offset = 0  # characters consumed before buffer[0]
    eof = False

    def fill() -> bool:
        nonlocal buffer, eof
        if eof:
            return False
        chunk = stream.read(_READ_CHUNK)
        if not chunk:
            eof = True
            return False
        buffer += chunk
        return True

    def skip_space() -> None:
        nonlocal buffer, offset
        while True:
            stripped = buffer.lstrip()
            offset += len(buffer) - len(stripped)
            buffer = stripped
            if buffer or not fill():
                return

    skip_space()
    if not buffer.startswith("["):
        raise ManifestError(f"not a manifest: a JSON array is expected at character {offset}")
    buffer, offset = buffer[1:], offset + 1
    first = True
    while True:
        skip_space()
        if buffer.startswith("]"):
            buffer, offset = buffer[1:], offset + 1
            skip_space()
            if buffer:
                raise ManifestError(f"not a manifest: text after the array at character {offset}")
            return
        if not first:
            if not buffer.startswith(","):
                raise ManifestError(f"not a manifest: ',' or ']' expected at character {offset}")
            buffer, offset = buffer[1:], offset + 1
            skip_space()
        while True:
            try:
                value, end = decoder.raw_decode(buffer)
            except json.JSONDecodeError as exc:
                if len(buffer) < _MAX_ENTRY_SIZE and fill():
                    continue
                raise ManifestError(
                    f"not a manifest: {exc.msg} at character {offset + exc.pos}"
                ) from exc
            if end == len(buffer) and fill():  # a number may go on in the next chunk
                continue
            break
        yield value
        buffer, offset = buffer[end:], offset + end
        first = False


@dataclass(frozen=True)
class EntryCheck:
    """The result of checking one manifest entry: ``problems`` empty means it verified."""

    unique_id: str
    problems: tuple[str, ...]


class ManifestVerifier:
    """Checks entries against known manifest signer certificates (and optional root CAs)."""

    def __init__(
        self, signers: Iterable[x509.Certificate], roots: Iterable[x509.Certificate] = ()
    ) -> None:
        self._signers = {
            hashlib.sha256(c.public_bytes(serialization.Encoding.DER)).digest(): c for c in signers
        }
        self._roots = list(roots)

    def check(self, entry: Any) -> EntryCheck:
        problems: list[str] = []
        unique_id = "?"
        if not isinstance(entry, dict):
            return EntryCheck(unique_id, ("not a JSON object",))
        header = entry.get("header")
        if isinstance(header, dict) and isinstance(header.get("uniqueId"), str):
            unique_id = header["uniqueId"]
        else:
            problems.append("header.uniqueId missing")
        try:
            protected_text, payload_text = entry["protected"], entry["payload"]
            protected = json.loads(b64url_decode(protected_text))
            payload = json.loads(b64url_decode(payload_text))
            signature = b64url_decode(entry["signature"])
        except (KeyError, ValueError, TypeError) as exc:
            return EntryCheck(unique_id, (*problems, f"not a signed secure element ({exc})"))
        if not isinstance(protected, dict) or not isinstance(payload, dict):
            return EntryCheck(unique_id, (*problems, "protected header or payload not an object"))
        problems.extend(self._check_signature(protected, protected_text, payload_text, signature))
        problems.extend(self._check_payload(payload, unique_id))
        return EntryCheck(unique_id, tuple(problems))

    def _check_signature(
        self, protected: dict[str, Any], protected_text: str, payload_text: str, signature: bytes
    ) -> list[str]:
        if protected.get("alg") != "ES256" or protected.get("typ") != "JWT":
            return [
                f"protected header alg/typ {protected.get('alg')}/{protected.get('typ')},"
                " expected ES256/JWT"
            ]
        try:
            thumbprint = b64url_decode(protected.get("x5t#S256", ""))
        except ValueError:
            return ["protected header x5t#S256 is not base64url"]
        cert = self._signers.get(thumbprint)
        if cert is None:
            return [
                f"manifest signer {thumbprint.hex()} (x5t#S256) unknown: give its "
                "certificate with --manifest-cert"
            ]
        problems = []
        if protected.get("kid") != b64url(subject_key_id(cert)):
            problems.append("protected header kid is not the manifest signer's key id")
        try:
            certificate_public_key(cert).verify(
                rs_to_der(signature),
                f"{protected_text}.{payload_text}".encode("ascii"),
                ec.ECDSA(hashes.SHA256()),
            )
        except (InvalidSignature, CryptoFormatError):
            problems.append("signature does not verify")
        return problems

    def _check_payload(self, payload: dict[str, Any], unique_id: str) -> list[str]:
        problems = []
        if payload.get("uniqueId") != unique_id:
            problems.append("payload uniqueId differs from header.uniqueId")
        try:
            (jwk,) = [k for k in payload["publicKeySet"]["keys"] if k.get("kid") == "0"]
            x, y = b64url_decode(jwk["x"]), b64url_decode(jwk["y"])
            device_der, signer_der = (base64.b64decode(c, validate=True) for c in jwk["x5c"][:2])
            device = x509.load_der_x509_certificate(device_der)
            signer = x509.load_der_x509_certificate(signer_der)
        except (KeyError, ValueError, TypeError) as exc:
            return [
                *problems,
                f"publicKeySet key 0 with x, y and a 2-certificate x5c expected ({exc})",
            ]
        if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
            problems.append("key 0 is not kty EC / crv P-256")
        try:
            if public_key_xy(certificate_public_key(device)) != x + y:
                problems.append("x/y differ from the device certificate's public key")
        except CryptoFormatError as exc:
            problems.append(f"device certificate: {exc}")
        if not _signed_by(device, signer):
            problems.append("device certificate not signed by the signer certificate (x5c)")
        if self._roots and not any(_signed_by(signer, root) for root in self._roots):
            problems.append("signer certificate not signed by any root CA given")
        return problems


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
