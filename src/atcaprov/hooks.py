"""The user functions the provisioning flow calls (``atcaprov_user_funcs.h`` of the C library).

:class:`ProvisioningHooks` is the protocol an integrator implements; :class:`BaseHooks` gives
no-op defaults so a client overrides only what it needs. The server connection functions must
be implemented (the defaults raise), because a flow without a server cannot get certificates.

``check_ready`` is the optional readiness hook: :func:`atcaprov.provision` calls it right
before the first chip command that writes or locks, so a server that cannot sign stops the run
while the part is still as it was. The default does no check (a version-1 server could not
answer one); a client opts in by calling :func:`atcaprov.certreq.ask_ready` from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .return_codes import ReturnCode
from .stages import ProvStage, ProvStatus

if TYPE_CHECKING:
    from .device import Device
    from .protocol import DeviceReport, ReadyRequest


@runtime_checkable
class ProvisioningHooks(Protocol):
    """What :func:`atcaprov.provision` calls back.

    * ``certreq_start()``: the flow is about to talk to the server (open a connection, or do
      nothing if one is open).
    * ``certreq_send(data)``: send all of ``data`` to the server.
    * ``certreq_recv(n)``: receive up to ``n`` bytes (fewer is fine: the flow asks again until
      it has ``n``; an empty result means the server closed the connection).
    * ``certreq_done()``: the flow is done with the server for this device.
    * ``request_error(code, message)``: the server answered with an error reply.
    * ``notify(stage, status)``: progress, START/SKIPPED then DONE/ERROR per stage.
    * ``write_data_zone(device)``: write extra data (32-byte blocks) before the data lock.
    * ``check_ready(request)``: the flow is about to send the first command that writes or
      locks (CONFIG_WRITE on a blank part, GEN_KEY on a config-locked part it resumes). Raise
      to stop the run: it fails with :class:`atcaprov.provisioning.ServerNotReadyError` and no
      write or lock command is sent. ``request`` is the
      :class:`~atcaprov.protocol.ReadyRequest` for the cert info (with the station id);
      ``atcaprov.certreq.ask_ready(self, request)`` asks the server over the certreq hooks.

    Optional (looked up with ``getattr``, so hooks written before it still work):

    * ``report_outcome(report)``: how the run ended, for the server's ledger
      (:class:`~atcaprov.protocol.DeviceReport`, protocol version 2). Called once per run
      that got as far as a device key: ``INSTALLED`` after the validation stage (or after the
      last stage when validation is off), ``FAILED`` / ``ABANDONED`` (the part stopped
      answering) when a later stage failed, except when the server itself refused the request.
      Send it with :func:`atcaprov.certreq.send_report`; an exception it raises is logged and
      does not change the run's result.
    * ``server_protocol_version`` (int attribute): 2 once the server answered a ReadyRequest
      (it speaks version 2): the certificate request then goes as a
      :class:`~atcaprov.protocol.CertRequest2` carrying the device type. Absent or 1: a
      version-1 :class:`~atcaprov.protocol.CertRequest`.
    """

    def certreq_start(self) -> None: ...

    def certreq_send(self, data: bytes) -> None: ...

    def certreq_recv(self, n: int) -> bytes: ...

    def certreq_done(self) -> None: ...

    def request_error(self, code: ReturnCode, message: str) -> None: ...

    def notify(self, stage: ProvStage, status: ProvStatus) -> None: ...

    def write_data_zone(self, device: Device) -> None: ...

    def check_ready(self, request: ReadyRequest) -> None: ...


class BaseHooks:
    """No-op defaults for the optional hooks; subclass and implement the server ones."""

    def certreq_start(self) -> None:
        """Nothing to open by default."""

    def certreq_send(self, data: bytes) -> None:
        raise NotImplementedError("certreq_send: connect the flow to a provisioning server")

    def certreq_recv(self, n: int) -> bytes:
        raise NotImplementedError("certreq_recv: connect the flow to a provisioning server")

    def certreq_done(self) -> None:
        """Nothing to close by default."""

    def request_error(self, code: ReturnCode, message: str) -> None:
        """Ignored by default; the flow raises a ServerError after calling it anyway."""

    def notify(self, stage: ProvStage, status: ProvStatus) -> None:
        """Ignored by default."""

    def write_data_zone(self, device: Device) -> None:
        """No extra data by default."""

    def check_ready(self, request: ReadyRequest) -> None:
        """No readiness check by default (override with ``atcaprov.certreq.ask_ready``)."""

    def report_outcome(self, report: DeviceReport) -> None:
        """Not sent by default (see :class:`ProvisioningHooks`)."""
