"""Small guards shared by the command handlers: each raises the chip status the 508A answers.

``parse_error`` (0x03) is for bad lengths, modes and parameters; ``refuse`` (0x0F) is for
commands that are well formed but not allowed in the current state or configuration.
"""

from __future__ import annotations

from ..errors import ChipParseError, ExecutionError
from ..packet import Command

STATUS_OK = b"\x00"


def parse_error(detail: str) -> ChipParseError:
    return ChipParseError(detail=detail)


def refuse(detail: str) -> ExecutionError:
    return ExecutionError(detail=detail)


def expect_data_len(cmd: Command, *lengths: int) -> None:
    """Raise 0x03 unless the command carries one of ``lengths`` data bytes."""
    if len(cmd.data) not in lengths:
        wanted = " or ".join(str(n) for n in lengths)
        raise parse_error(
            f"opcode 0x{cmd.opcode:02X} mode 0x{cmd.param1:02X}: {len(cmd.data)} data bytes,"
            f" {wanted} expected"
        )


def expect_mode(cmd: Command, allowed: set[int] | frozenset[int]) -> None:
    if cmd.param1 not in allowed:
        raise parse_error(
            f"opcode 0x{cmd.opcode:02X}: mode 0x{cmd.param1:02X} not one of "
            + ", ".join(f"0x{m:02X}" for m in sorted(allowed))
        )


def expect_key_id(cmd: Command) -> int:
    """param2 as a slot number 0..15 (0x03 otherwise)."""
    if cmd.param2 > 15:
        raise parse_error(f"opcode 0x{cmd.opcode:02X}: KeyID 0x{cmd.param2:04X} is not a slot")
    return cmd.param2


def expect_param2(cmd: Command, value: int) -> None:
    if cmd.param2 != value:
        raise parse_error(
            f"opcode 0x{cmd.opcode:02X}: param2 0x{cmd.param2:04X}, 0x{value:04X} expected"
        )
