"""The readiness hook: provision() asks before the first command that writes or locks, and a
"no" leaves the part exactly as it was (emulated chip, in-memory server, real message path)."""

from __future__ import annotations

import pytest

from atcaprov import provision
from atcaprov.certreq import NotReadyError, ServerTooOldError, ask_ready, ready_request
from atcaprov.config import DEFAULT_CONFIG
from atcaprov.device import Device
from atcaprov.emulator import Atecc508a
from atcaprov.hal import open_hal
from atcaprov.protocol import ErrorReply, ReadyReply, ReadyRequest, encode
from atcaprov.provisioning import PartState, ProvisioningError, ServerNotReadyError
from atcaprov.return_codes import ReturnCode
from atcaprov.stages import ProvStage, ProvStatus
from tests.support.cert_server import InMemoryServer
from tests.support.hooks import RecordingHooks
from tests.support.pki import Pki

OP_WRITE, OP_LOCK, OP_GENKEY = 0x12, 0x17, 0x40


class AskingHooks(RecordingHooks):
    """Hooks that opt in: check_ready asks the server through the certreq hooks."""

    station_id = "line-3"

    def check_ready(self, request: ReadyRequest) -> None:
        self.calls.append("check_ready")
        ask_ready(self, request)

    def notify(self, stage: ProvStage, status: ProvStatus) -> None:
        self.calls.append(f"{stage.name}:{status.name}")
        super().notify(stage, status)


def _blank(pki: Pki) -> tuple[Atecc508a, Device, InMemoryServer, AskingHooks]:
    chip = Atecc508a()
    server = InMemoryServer(pki)
    return chip, Device(open_hal("emulator", chip=chip)), server, AskingHooks(server)


def _irreversible(device: Device) -> int:
    return sum(device.opcode_counts.get(op, 0) for op in (OP_WRITE, OP_LOCK, OP_GENKEY))


def test_ready_server_is_asked_before_config_write(pki: Pki) -> None:
    _chip, device, server, hooks = _blank(pki)
    provision(device, hooks, pki.cert_info, validate=False)
    assert hooks.calls[:5] == ["check_ready", "start", "send", "done", "CONFIG_WRITE:START"]
    assert server.ready_requests == [ready_request(pki.cert_info, "line-3")]
    asked = server.ready_requests[0]
    info = pki.cert_info
    assert (asked.signer_id, asked.signer_key_id) == (info.signer_id, info.signer_key_id)
    assert (asked.device_template_id, asked.signer_template_id, asked.chain_id) == (
        info.device_cert_def.template_id,
        info.signer_cert_def.template_id,
        info.device_cert_def.chain_id,
    )
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "code",
    [
        ReturnCode.SIGNER_LOCKED,
        ReturnCode.SIGNER_NOT_FOUND,
        ReturnCode.NO_PROFILE,
        ReturnCode.TEMPLATE_MISMATCH,
        ReturnCode.RECORDS_UNAVAILABLE,
    ],
)
def test_not_ready_blank_part_untouched(pki: Pki, code: ReturnCode) -> None:
    chip, device, server, hooks = _blank(pki)
    server.ready_answer = ReadyReply(code, "signer 47DC is locked (enter its password)")
    with pytest.raises(ServerNotReadyError) as info:
        provision(device, hooks, pki.cert_info)
    exc = info.value
    assert isinstance(exc, ProvisioningError)
    assert exc.code is code and exc.stage is None
    assert exc.message == "signer 47DC is locked (enter its password)"
    assert exc.part_state is PartState.UNLOCKED
    assert isinstance(exc.__cause__, NotReadyError)
    assert hooks.events == []  # no stage started
    assert _irreversible(device) == 0  # not one Write, Lock or GenKey was sent
    assert not chip.config_locked and server.requests == []
    assert hooks.errors == []  # request_error is for certificate requests only


def test_not_ready_resumed_part_gets_no_genkey(pki: Pki) -> None:
    chip, device, server, hooks = _blank(pki)
    server.ready_answer = ReadyReply(ReturnCode.SIGNER_LOCKED, "locked")
    device.write_config_zone(DEFAULT_CONFIG)
    device.lock_config_zone()
    device.reset_stats()
    with pytest.raises(ServerNotReadyError) as info:
        provision(device, hooks, pki.cert_info)
    assert info.value.part_state is PartState.CONFIG_LOCKED
    assert _irreversible(device) == 0  # no GenKey: the key slot keeps what it had
    assert hooks.events == []
    # ready again: the part resumes (config stages skipped) and is provisioned
    server.ready_answer = ReadyReply(ReturnCode.SUCCESS, "ok")
    provision(device, hooks, pki.cert_info, validate=False)
    assert hooks.events[:2] == [
        (ProvStage.CONFIG_WRITE, ProvStatus.SKIPPED),
        (ProvStage.CONFIG_LOCK, ProvStatus.SKIPPED),
    ]
    assert chip.data_locked


def test_version_1_server_is_too_old_for_readiness(pki: Pki) -> None:
    chip, device, server, hooks = _blank(pki)
    server.versions = frozenset({1})
    with pytest.raises(ServerTooOldError) as too_old:
        ask_ready(hooks, ready_request(pki.cert_info))
    assert too_old.value.code is ReturnCode.UNSUPPORTED_VERSION
    assert "older protocol (version 1)" in too_old.value.message
    assert "update provserver" in too_old.value.message
    # a client that asks refuses to provision: nothing written
    with pytest.raises(ServerNotReadyError) as info:
        provision(device, hooks, pki.cert_info)
    assert info.value.code is ReturnCode.UNSUPPORTED_VERSION
    assert not chip.config_locked and _irreversible(device) == 0
    # a client that does not ask (BaseHooks' check_ready) still provisions with version 1
    plain = RecordingHooks(server)
    provision(device, plain, pki.cert_info, validate=False)
    assert chip.data_locked and len(server.requests) == 1


def test_error_reply_to_readiness_is_not_ready(pki: Pki) -> None:
    _chip, _device, server, hooks = _blank(pki)
    server.error = (ReturnCode.INTERNAL_ERROR, "x")  # certificate requests only
    assert ask_ready(hooks, ready_request(pki.cert_info)).ready

    class Failing(AskingHooks):
        def certreq_send(self, data: bytes) -> None:
            self._pending = encode(ErrorReply(ReturnCode.SERVER_ERROR, "disk on fire"))

    with pytest.raises(NotReadyError) as info:
        ask_ready(Failing(server), ready_request(pki.cert_info))
    assert info.value.code is ReturnCode.SERVER_ERROR
    assert info.value.message == "disk on fire"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConnectionRefusedError("refused"), ReturnCode.COMM_ERROR),
        (RuntimeError("bug in the hook"), ReturnCode.INTERNAL_ERROR),
    ],
)
def test_hook_errors_stop_before_any_write(pki: Pki, error: Exception, code: ReturnCode) -> None:
    chip, device, server, _hooks = _blank(pki)

    class Raising(RecordingHooks):
        def check_ready(self, request: ReadyRequest) -> None:
            raise error

    with pytest.raises(ServerNotReadyError) as info:
        provision(device, Raising(server), pki.cert_info)
    assert info.value.code is code and info.value.__cause__ is error
    assert not chip.config_locked and _irreversible(device) == 0


def test_base_hooks_check_nothing(pki: Pki) -> None:
    chip, device, server, _hooks = _blank(pki)
    server.ready_answer = ReadyReply(ReturnCode.SIGNER_LOCKED, "never asked")
    provision(device, RecordingHooks(server), pki.cert_info, validate=False)
    assert chip.data_locked and server.ready_requests == []
