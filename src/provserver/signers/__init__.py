"""Signer back-ends of the provisioning server (CA keys in secure hardware), chosen by name.

See :mod:`provserver.signers.base` for the interface and docs/signers.md for each back-end.
"""

from .base import (
    SignerBackend,
    SignerConfigError,
    SignerError,
    SignerFormatError,
    SignerIdentity,
    SignerIdentityError,
    SignerLockedError,
    SignerModule,
    SignerUnavailableError,
    UnknownBackendError,
    WrongPasswordError,
    available_backends,
    backend_class,
    open_backend,
    register_backend,
)

__all__ = [
    "SignerBackend",
    "SignerConfigError",
    "SignerError",
    "SignerFormatError",
    "SignerIdentity",
    "SignerIdentityError",
    "SignerLockedError",
    "SignerModule",
    "SignerUnavailableError",
    "UnknownBackendError",
    "WrongPasswordError",
    "available_backends",
    "backend_class",
    "open_backend",
    "register_backend",
]
