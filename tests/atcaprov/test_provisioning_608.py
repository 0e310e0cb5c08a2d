"""The flow on the ATECC608A/B emulators: model detection, the per-model default config, the
refusal of a config for the other model before any write, and the device type in the request."""

from __future__ import annotations

import pytest

from atcaprov import provision, verify
from atcaprov.config import DEFAULT_CONFIG, ConfigError, parse_config_text
from atcaprov.config_models import (
    DEFAULT_CONFIG_608,
    DEFAULT_CONFIG_608_TEXT,
    ConfigModelError,
    check_config_model,
    config_model,
    default_config,
)
from atcaprov.datasheet import ATECC508A, ATECC608A, ATECC608B, ChipModel, fields_differing
from atcaprov.device import Device
from atcaprov.emulator import Atecc508a, Atecc608a, Atecc608b
from atcaprov.hal import open_hal
from atcaprov.packet import Opcode, exec_time_ms
from atcaprov.protocol import CertRequest2, DeviceType
from atcaprov.stages import ProvStage, ProvStatus
from atcaprov.validation import first_config_difference
from tests.support.cert_server import InMemoryServer
from tests.support.hooks import RecordingHooks
from tests.support.pki import Pki

S, D, K = ProvStatus.START, ProvStatus.DONE, ProvStatus.SKIPPED


def _device(chip: Atecc508a) -> Device:
    return Device(open_hal("emulator", chip=chip))


# ---- the per-model configs ------------------------------------------------------------------
def test_608_default_keeps_the_508a_slot_layout() -> None:
    assert config_model(DEFAULT_CONFIG) is ATECC508A
    assert config_model(DEFAULT_CONFIG_608) is ATECC608B
    assert parse_config_text(DEFAULT_CONFIG_608_TEXT) == DEFAULT_CONFIG_608
    assert default_config(ATECC508A) == DEFAULT_CONFIG
    assert default_config(ATECC608A) == default_config(ATECC608B) == DEFAULT_CONFIG_608
    # SlotConfig, counters, X509format and KeyConfig as the 508A default
    for start, stop in ((20, 68), (88, 90), (92, 128)):
        assert DEFAULT_CONFIG_608[start:stop] == DEFAULT_CONFIG[start:stop]
    # the 608's own bytes: CountMatch, ChipMode, UseLock..reserved, ChipOptions all off
    for offset in (18, 19, *range(68, 84), 90, 91):
        assert DEFAULT_CONFIG_608[offset] == 0x00
    assert DEFAULT_CONFIG[18] == 0xAA and DEFAULT_CONFIG[68:84] == b"\xff" * 16


@pytest.mark.parametrize(
    "config,model",
    [(DEFAULT_CONFIG, ATECC608B), (DEFAULT_CONFIG, ATECC608A), (DEFAULT_CONFIG_608, ATECC508A)],
)
def test_config_for_another_map_names_the_bytes(config: bytes, model: ChipModel) -> None:
    with pytest.raises(ConfigModelError) as info:
        check_config_model(config, model)
    text = str(info.value)
    for difference in fields_differing(config_model(config), model):
        if difference.span.offset >= 16 and difference.span.offset != 85:  # written bytes
            assert difference.describe() in text
    assert "byte 85" not in text and "byte 13" not in text  # never written: not named
    assert info.value.offset == 18


def test_same_map_configs_fit_both_608s() -> None:
    check_config_model(DEFAULT_CONFIG_608, ATECC608A)
    check_config_model(DEFAULT_CONFIG_608, ATECC608B)
    a_config = bytearray(DEFAULT_CONFIG_608)
    a_config[4:8] = ATECC608A.revision
    check_config_model(bytes(a_config), ATECC608B)
    dump_508a = bytearray(DEFAULT_CONFIG)
    dump_508a[4:8] = ATECC508A.revision  # a config zone read from a 508A
    check_config_model(bytes(dump_508a), ATECC508A)


def test_unknown_revision_bytes_refused() -> None:
    config = bytearray(DEFAULT_CONFIG)
    config[4:8] = b"\x00\x00\x70\x01"
    with pytest.raises(ConfigError, match=r"bytes 4-7 \(00 00 70 01\) name no supported"):
        config_model(bytes(config))


# ---- model detection -----------------------------------------------------------------------
@pytest.mark.parametrize("cls", [Atecc508a, Atecc608a, Atecc608b])
def test_detect_model_sets_the_execution_times(cls: type[Atecc508a]) -> None:
    device = _device(cls())
    assert device.model is ATECC508A and not device.model_detected
    assert device.detect_model() is cls.MODEL
    assert device.model_detected and device.chip_mode == 0
    device.reset_stats()
    device.random()
    assert device.chip_floor_ms == exec_time_ms(Opcode.RANDOM, model=cls.MODEL.name)


# ---- the flow ------------------------------------------------------------------------------
def test_608b_provisioned_with_its_default_and_validated_after_the_data_lock(pki: Pki) -> None:
    chip = Atecc608b()
    device = _device(chip)
    server = InMemoryServer(pki)
    hooks = RecordingHooks(server)
    result = provision(device, hooks, pki.cert_info)
    assert device.model is ATECC608B
    assert chip.config_locked and chip.data_locked
    lock = hooks.events.index((ProvStage.DATA_LOCK, D))
    assert hooks.events[lock + 1 :] == [
        (ProvStage.SLOTS_LOCK, K),
        (ProvStage.VALIDATE_CERTS, S),
        (ProvStage.VALIDATE_CERTS, D),
    ]
    assert (
        first_config_difference(result.config_zone, DEFAULT_CONFIG_608, include_slot_locks=True)
        is None
    )
    assert result.config_zone[4:8] == ATECC608B.revision
    # hooks without server_protocol_version: a version-1 CertRequest (no device type)
    [request] = server.requests
    assert not isinstance(request, CertRequest2)
    report = verify(device, pki.cert_info, expected_config=DEFAULT_CONFIG_608)
    assert report.ok, report.lines()


@pytest.mark.parametrize(
    "cls,device_type",
    [
        (Atecc608b, DeviceType.ATECC608B),
        (Atecc608a, DeviceType.ATECC608A),
        (Atecc508a, DeviceType.ATECC508A),
    ],
)
def test_version_2_server_gets_the_device_type(
    pki: Pki, cls: type[Atecc508a], device_type: DeviceType
) -> None:
    server = InMemoryServer(pki)
    hooks = RecordingHooks(server)
    hooks.server_protocol_version = 2  # type: ignore[attr-defined]
    provision(_device(cls()), hooks, pki.cert_info, validate=False)
    [request] = server.requests
    assert isinstance(request, CertRequest2) and request.device_type is device_type


@pytest.mark.parametrize(
    "cls,config",
    [(Atecc608b, DEFAULT_CONFIG), (Atecc608a, DEFAULT_CONFIG), (Atecc508a, DEFAULT_CONFIG_608)],
)
def test_config_for_the_other_model_refused_before_any_write(
    pki: Pki, cls: type[Atecc508a], config: bytes
) -> None:
    chip = cls()
    device = _device(chip)
    hooks = RecordingHooks(InMemoryServer(pki))
    with pytest.raises(ConfigModelError) as info:
        provision(device, hooks, pki.cert_info, config=config)
    assert info.value.part_model is cls.MODEL
    assert hooks.events == [] and hooks.calls == []  # no stage, no server exchange
    sent = set(device.opcode_counts)
    assert sent <= {Opcode.INFO, Opcode.READ}, sent  # reads only: nothing written or locked
    assert not chip.config_locked and not chip.data_locked
