"""A device certificate valid for 40 years, provisioned end to end and validated after the lock.

The library's ten-stage flow runs against the in-process emulator and the in-memory certificate
server (``tests.support.cert_server``) with a PKI whose device definition has expire years 40:
the record the flow writes to slot 10 is format 1, and the VALIDATE_CERTS stage, after the data
lock, rebuilds the certificate from the chip and checks it; ``verify`` does it again.
"""

from __future__ import annotations

from datetime import datetime, timezone

from cryptography import x509

from atcaprov import provision, verify
from atcaprov.atcacert import rebuild
from atcaprov.config import DEFAULT_CONFIG
from atcaprov.device import Device
from atcaprov.emulator import Atecc508a
from atcaprov.hal import open_hal
from atcaprov.stages import ProvStage, ProvStatus
from tests.support.cert_server import InMemoryServer
from tests.support.hooks import RecordingHooks
from tests.support.pki import NOW, make_pki

DATA_ZONE = 2


def test_forty_year_device_certificate_is_provisioned_and_validated_after_the_lock() -> None:
    pki = make_pki(device_expire_years=40)
    assert pki.cert_info.device_cert_def.expire_years == 40
    chip = Atecc508a()
    device = Device(open_hal("emulator", chip=chip))
    server = InMemoryServer(pki)
    hooks = RecordingHooks(server)

    result = provision(device, hooks, pki.cert_info)

    assert chip.config_locked and chip.data_locked
    done = [e for e in hooks.events if e[1] == ProvStatus.DONE]
    assert done.index((ProvStage.DATA_LOCK, ProvStatus.DONE)) < done.index(
        (ProvStage.VALIDATE_CERTS, ProvStatus.DONE)
    )
    cert = x509.load_der_x509_certificate(result.device_cert)
    issue = NOW.replace(minute=0, second=0)
    assert cert.not_valid_before_utc == issue
    assert cert.not_valid_after_utc == datetime(
        issue.year + 40, issue.month, issue.day, issue.hour, tzinfo=timezone.utc
    )

    # the record on the chip is format 1: 40 years = 01|01000, so byte 71 = 0x10
    record = device.read_bytes_zone(DATA_ZONE, 10, 0, 72)
    assert record[70] & 0x0F == 1 and record[71] == 0x10 and record[66] & 0x1F == 8
    assert (
        rebuild(
            pki.cert_info.device_cert_def,
            record,
            result.public_key,
            chip.serial_number,
            ca_public_key=pki.cert_info.signer_public_key,
        )
        == result.device_cert
    )

    report = verify(device, pki.cert_info, expected_config=DEFAULT_CONFIG)
    assert report.ok, report.lines()
    assert report.device_cert == result.device_cert
