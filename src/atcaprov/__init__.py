"""atcaprov: production provisioning of ATECC508A secure elements.

Layers (each imports only those below it): ``packet`` (CRC, framing, status codes), ``hal``
(transport drivers picked by name), ``device`` (CryptoAuthLib-style basic API), ``atcacert``
(compressed certificates), ``certinfo``, ``config``, ``protocol`` (client/server messages),
``provisioning`` (the ten-stage flow) and ``validation``. ``emulator`` answers packets like
the real chips; ``terminal`` reads keys for the console programs.

The integrator's entry points are importable from here::

    import atcaprov
    result = atcaprov.provision(device, hooks, cert_info)
    report = atcaprov.verify(device, cert_info)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .certinfo import CertInfo as CertInfo
    from .certinfo import load_cert_info as load_cert_info
    from .device import Device as Device
    from .hooks import BaseHooks as BaseHooks
    from .hooks import ProvisioningHooks as ProvisioningHooks
    from .provisioning import ProvisioningError as ProvisioningError
    from .provisioning import ProvisionResult as ProvisionResult
    from .provisioning import provision as provision
    from .stages import ProvStage as ProvStage
    from .stages import ProvStatus as ProvStatus
    from .validation import VerifyReport as VerifyReport
    from .validation import verify as verify

_LAZY = {
    "provision": "provisioning",
    "ProvisioningError": "provisioning",
    "ProvisionResult": "provisioning",
    "verify": "validation",
    "VerifyReport": "validation",
    "BaseHooks": "hooks",
    "ProvisioningHooks": "hooks",
    "ProvStage": "stages",
    "ProvStatus": "stages",
    "Device": "device",
    "CertInfo": "certinfo",
    "load_cert_info": "certinfo",
}

__all__ = [
    "BaseHooks",
    "CertInfo",
    "Device",
    "ProvStage",
    "ProvStatus",
    "ProvisionResult",
    "ProvisioningError",
    "ProvisioningHooks",
    "VerifyReport",
    "load_cert_info",
    "provision",
    "verify",
]


def __getattr__(name: str) -> Any:
    # Loaded on first use, so that e.g. the emulator does not pull in the host stack.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'atcaprov' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)
