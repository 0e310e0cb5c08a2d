"""Certificates given as PEM or DER: one loader for every place that reads them from a file.

The form is told by the PEM armour (``-----BEGIN``); anything else is read as DER. Errors are
cryptography's ``ValueError``, so each caller words its own message (file, role, what to do).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization

PEM_MARKER = b"-----BEGIN"


def load_certificate(data: bytes) -> x509.Certificate:
    """The certificate in ``data`` (PEM or DER). Raises ValueError if it is neither."""
    if PEM_MARKER in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def certificate_der(data: bytes) -> bytes:
    """The DER bytes of the certificate in ``data`` (PEM or DER). Raises ValueError."""
    return load_certificate(data).public_bytes(serialization.Encoding.DER)
