"""Certificates from the server that are DER but not X.509: a validation failure of the
CERTS_WRITE stage (with a clear message), never an internal error with a parser message."""

from __future__ import annotations

from dataclasses import replace

import pytest

from atcaprov import provision
from atcaprov.device import Device
from atcaprov.emulator import Atecc508a
from atcaprov.hal import open_hal
from atcaprov.protocol import CertReply
from atcaprov.provisioning import PartState, ProvisioningError
from atcaprov.return_codes import ReturnCode
from atcaprov.stages import ProvStage
from atcaprov.validation import ValidationError, cert_public_key
from tests.support.cert_server import InMemoryServer
from tests.support.hooks import RecordingHooks
from tests.support.pki import Pki

NOT_X509 = [
    bytes.fromhex("3003020101"),  # a SEQUENCE holding an INTEGER
    bytes.fromhex("3006300402020101"),  # nested, still not X.509
    b"\x30\x10" + bytes(16),
]


@pytest.mark.parametrize("der", NOT_X509)
def test_cert_public_key_of_non_x509_der(der: bytes) -> None:
    with pytest.raises(ValidationError) as info:
        cert_public_key(der, "the server's device certificate")
    assert info.value.code is ReturnCode.VALIDATION_FAILED
    assert info.value.message == (
        f"the server's device certificate ({len(der)} bytes) is not an"
        " X.509 certificate: it does not parse"
    )


@pytest.mark.parametrize("which", ["device_cert", "signer_cert"])
def test_flow_reports_validation_failure(pki: Pki, which: str) -> None:
    chip = Atecc508a()
    device = Device(open_hal("emulator", chip=chip))
    server = InMemoryServer(pki)

    def tamper(reply: CertReply) -> CertReply:
        return replace(reply, **{which: NOT_X509[0]})

    server.tamper = tamper
    with pytest.raises(ProvisioningError) as info:
        provision(device, RecordingHooks(server), pki.cert_info)
    exc = info.value
    assert exc.code is ReturnCode.VALIDATION_FAILED
    assert exc.stage is ProvStage.CERTS_WRITE
    assert exc.part_state is PartState.CONFIG_LOCKED and not chip.data_locked
    what = "device" if which == "device_cert" else "signer"
    assert exc.message == (
        f"the server's {what} certificate (5 bytes) is not an X.509 certificate: it does not parse"
    )
