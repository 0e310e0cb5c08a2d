"""Library hooks for the flow tests: they talk to an InMemoryServer and record what happens."""

from __future__ import annotations

from dataclasses import dataclass, field

from atcaprov.device import Device
from atcaprov.hooks import BaseHooks
from atcaprov.return_codes import ReturnCode
from atcaprov.stages import ProvStage, ProvStatus
from tests.support.cert_server import InMemoryServer


@dataclass
class RecordingHooks(BaseHooks):
    """Hooks talking to an InMemoryServer; records notify calls and errors."""

    server: InMemoryServer
    chunk: int = 1 << 20
    events: list[tuple[ProvStage, ProvStatus]] = field(default_factory=list)
    errors: list[tuple[ReturnCode, str]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    recv_sizes: list[int] = field(default_factory=list)
    extra_data: dict[int, bytes] = field(default_factory=dict)
    fail_at: ProvStage | None = None
    _pending: bytes = b""

    def certreq_start(self) -> None:
        self.calls.append("start")

    def certreq_send(self, data: bytes) -> None:
        self.calls.append("send")
        self._pending = self.server.handle(data)

    def certreq_recv(self, n: int) -> bytes:
        self.recv_sizes.append(n)
        out, self._pending = (
            self._pending[: min(n, self.chunk)],
            self._pending[min(n, self.chunk) :],
        )
        return out

    def certreq_done(self) -> None:
        self.calls.append("done")

    def request_error(self, code: ReturnCode, message: str) -> None:
        self.errors.append((code, message))

    def notify(self, stage: ProvStage, status: ProvStatus) -> None:
        self.events.append((stage, status))

    def write_data_zone(self, device: Device) -> None:
        for slot, data in self.extra_data.items():
            for block in range(len(data) // 32):
                device.write_zone(2, slot, block, 0, data[block * 32 : block * 32 + 32])
