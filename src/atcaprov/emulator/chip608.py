"""The emulated ATECC608A and ATECC608B: the 508A emulator with the 608's model and commands.

:class:`Atecc608a` and :class:`Atecc608b` have the API of :class:`~.chip.Atecc508a` (they are
its subclasses: power states, watchdog, timing model, save/load are shared). What differs is
data: the chip model (config map, revision, factory config, execution times) and the command
table :data:`HANDLERS_608`, which swaps in the 608's Nonce, Sign, Verify and SHA
(:mod:`.cmd_608`, :mod:`.cmd_sha608`) and drops HMAC (0x11), which the 608 does not have
(AN3539, "Unsupported Commands"). AES, KDF, SecureBoot and SelfTest are not emulated: like any
opcode missing from the table they are answered 0x03. The 608A and the 608B differ here only in
their revision (``00 00 60 02`` / ``00 00 60 03``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from ..datasheet import ATECC608A, ATECC608B, ChipModel
from ..packet import Opcode
from . import cmd_608, cmd_sha608
from .chip import HANDLERS, Atecc508a, Handler

HANDLERS_608: dict[int, Handler] = {
    **{op: handler for op, handler in HANDLERS.items() if op != Opcode.HMAC},
    Opcode.NONCE: cmd_608.handle_nonce,
    Opcode.SIGN: cmd_608.handle_sign,
    Opcode.VERIFY: cmd_608.handle_verify,
    Opcode.SHA: cmd_sha608.handle_sha,
}
"""Opcodes the emulated 608s implement; any other opcode is answered with status 0x03."""


class Atecc608a(Atecc508a):
    """One emulated ATECC608A (Info revision ``00 00 60 02``); see :class:`Atecc508a`."""

    MODEL: ClassVar[ChipModel] = ATECC608A
    HANDLERS: ClassVar[Mapping[int, Handler]] = HANDLERS_608


class Atecc608b(Atecc608a):
    """One emulated ATECC608B (Info revision ``00 00 60 03``); see :class:`Atecc508a`."""

    MODEL: ClassVar[ChipModel] = ATECC608B
