"""A minimal provisioning client of your own: own server transport, own operator UI.

It shows the whole integration surface of ``atcaprov``: open a chip through a HAL driver,
implement the hooks (a plain TCP socket to ``provserver``, progress printed as one line per
stage), call ``atcaprov.provision`` and handle its typed errors.

    python examples/custom_client.py --certinfo atcaprov_cert_info_0.c \
        --host 127.0.0.1 --port 11235 --board socket://127.0.0.1:40123
    python examples/custom_client.py ... --emulated 3     # three in-process blank chips
"""

from __future__ import annotations

import argparse
import socket
import sys

import atcaprov
from atcaprov.certreq import ask_ready
from atcaprov.device import Device
from atcaprov.errors import AtcaprovError
from atcaprov.hal import open_hal
from atcaprov.protocol import ReadyRequest
from atcaprov.return_codes import ReturnCode
from atcaprov.stages import ProvStage, ProvStatus, format_stage_line


class SocketHooks(atcaprov.BaseHooks):
    """Server connectivity over one persistent TCP connection; progress printed as it goes."""

    def __init__(self, host: str, port: int, station_id: str) -> None:
        self.host, self.port, self.station_id = host, port, station_id
        self.sock: socket.socket | None = None

    def certreq_start(self) -> None:
        if self.sock is None:
            self.sock = socket.create_connection((self.host, self.port), timeout=30)

    def certreq_send(self, data: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(data)

    def certreq_recv(self, n: int) -> bytes:
        assert self.sock is not None
        return self.sock.recv(n)  # fewer bytes are fine: the library asks again

    def check_ready(self, request: ReadyRequest) -> None:
        ask_ready(self, request)  # before any write or lock: raises if the server cannot sign

    def request_error(self, code: ReturnCode, message: str) -> None:
        print(f"    server refused: {message} ({code.c_name})")

    def notify(self, stage: ProvStage, status: ProvStatus) -> None:
        if status != ProvStatus.START:  # one line per stage, when its outcome is known
            print(format_stage_line(stage, status), flush=True)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def open_boards(args: argparse.Namespace) -> list[Device]:
    if args.board:
        return [Device(open_hal("kit-cdc", url=args.board))]
    from atcaprov.emulator import Atecc508a

    return [Device(open_hal("emulator", chip=Atecc508a())) for _ in range(args.emulated)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certinfo", default="atcaprov_cert_info_0.c")
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=11235)
    parser.add_argument("--board", help="pyserial URL of a kit board")
    parser.add_argument("--emulated", type=int, default=1, help="in-process blank chips")
    parser.add_argument("--station-id", default=socket.gethostname())
    args = parser.parse_args(argv)

    try:
        cert_info = atcaprov.load_cert_info(args.certinfo)
    except (OSError, AtcaprovError) as exc:
        print(f"cannot read {args.certinfo}: {exc}", file=sys.stderr)
        return 2
    hooks = SocketHooks(args.host, args.port, args.station_id)
    failures = 0
    try:
        for device in open_boards(args):
            with device:
                try:
                    print(f"Device SN: {device.read_serial_number().hex().upper()}")
                except AtcaprovError as exc:  # the part does not answer: next board
                    failures += 1
                    print(f"FAILED: cannot read the part: {exc}")
                    continue
                try:
                    result = atcaprov.provision(device, hooks, cert_info)
                except atcaprov.ProvisioningError as exc:
                    failures += 1
                    print(f"FAILED at {exc.stage.label if exc.stage else 'start'}: {exc.message}")
                    print(f"    the part is now: {exc.part_state.value}")
                    if exc.code == ReturnCode.COMM_ERROR:
                        hooks.close()  # reconnect for the next board
                    continue
                print(
                    f"OK {result.serial_number.hex().upper()}:"
                    f" {len(result.device_cert)}-byte device certificate"
                )
    finally:
        hooks.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
