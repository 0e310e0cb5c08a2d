"""The fault sweep: one fault at one chip command (or wake, or server request) of a run, then a
replug and a second run, as an operator would; checks and counts what the issue asks for.

A :class:`Bench` is where the part sits: :class:`EmulatorBench` (an in-process chip behind the
``emulator`` driver) or a virtual kit board over ``kit-cdc`` (``tests/atcaprov/
test_fault_sweep_kit.py``). :func:`run_case` plays one case and adds it to :class:`SweepCounts`:

* burned: after the second run the part is locked but does not verify (certificates, key,
  config, slot locks);
* stuck: after the second run the part is short of what was asked (data zone unlocked, or an
  asked-for slot lock missing);
* state mismatch: a failed run reported a part state other than the chip's real one (UNKNOWN
  only allowed when the fault removed the board);
* foreign exception: anything but a ProvisioningError out of ``provision()``;
* validation failure: a good part's run failing in VALIDATE_CERTS after a fault that left the
  chip reachable (a single transient fault);
* notify: a ProvisioningError whose stage did not get its ERROR notification;
* needless failure: a first run that failed after a fault its retry rules must absorb
  (:data:`ABSORBED_KINDS`: a lost, late or corrupt answer, or a status saying the command did
  not run), e.g. a Lock sent twice and refused although the first one worked.

The truth is read from the emulated chip object itself, never through the library.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from atcaprov import provision, verify
from atcaprov.certinfo import CertInfo
from atcaprov.config import DEFAULT_CONFIG
from atcaprov.datasheet import ATECC508A, SN_LAST, SN_PREFIX
from atcaprov.device import Device
from atcaprov.emulator import Atecc508a
from atcaprov.emulator.state import Memory
from atcaprov.emulator.zones import default_config
from atcaprov.hal.emulator import EmulatorHal
from atcaprov.hal.faults import FaultHal
from atcaprov.provisioning import (
    AlreadyProvisionedError,
    PartState,
    ProvisioningError,
    ProvisionResult,
)
from atcaprov.return_codes import ReturnCode
from atcaprov.server_faults import ServerCutHooks
from atcaprov.stages import ProvStage, ProvStatus
from tests.support.cert_server import InMemoryServer
from tests.support.hooks import RecordingHooks

Kind = str | int

CHIP_STATUSES = (0x00, 0x01, 0x03, 0x05, 0x0F, 0x11, 0xEE, 0xFF)
"""Status bytes a 508A sends (0x07/0x08 are 608-only), and 0x00: a command acknowledged that
the chip never ran."""
COMMAND_KINDS: tuple[Kind, ...] = (
    "unplug",
    "unplug_after",
    "timeout",
    "lost",
    "crc",
    "crc_every_retry",
    *CHIP_STATUSES,
)
WAKE_KINDS: tuple[Kind, ...] = ("wake", "wake_every_retry")
UNPLUG_KINDS = frozenset({"unplug", "unplug_after"})
ABSORBED_KINDS = frozenset({"timeout", "lost", "crc", "wake", 0x05, 0x11, 0xEE, 0xFF})
"""Single transient faults the retry rules must absorb: the first run still succeeds."""
BURST_KINDS = frozenset({"crc_every_retry", "wake_every_retry"})


def label(kind: Kind) -> str:
    return f"status 0x{kind:02X}" if isinstance(kind, int) else kind


def arm(hal: FaultHal, device: Device, kind: Kind, index: int) -> None:
    """Arm ``kind`` at command (or wake) ``index`` of the run."""
    if kind == "crc_every_retry":
        hal.arm("crc", after=index, times=device.crc_retries + 1)
    elif kind == "wake_every_retry":
        hal.arm("wake", after=index, times=device.wake_retries + 1)
    else:
        hal.arm(kind, after=index)


class Bench:
    """Where the part under test sits: plug gives a Device on it (through a FaultHal)."""

    def new_part(self) -> None:
        raise NotImplementedError

    def plug(self) -> tuple[FaultHal, Device]:
        raise NotImplementedError

    def replug(self) -> None:
        """The operator pulls the board out (power lost) and plugs it back."""
        raise NotImplementedError

    @property
    def chip(self) -> Atecc508a:
        raise NotImplementedError

    def close(self) -> None:
        """Release the connections of this part."""


def factory_part(rng: random.Random, *, config_differs: bool = False) -> Atecc508a:
    """A blank part whose data and OTP zones hold what a factory may leave there (test data
    we do not know: random bytes here), so that only what the flow writes is known. Its config
    is the emulator's factory one (the default config), or with ``config_differs`` one whose
    every writable word differs from it (CONFIG_WRITE then has all its Writes to send)."""
    serial = SN_PREFIX + rng.randbytes(6) + bytes((SN_LAST,))
    config = default_config(serial)
    if config_differs:
        for i in (*range(16, 84), *range(88, 128)):
            config[i] ^= 0x5A
    memory = Memory(
        config=config,
        otp=bytearray(rng.randbytes(ATECC508A.otp_size)),
        slots=[bytearray(rng.randbytes(size)) for size in ATECC508A.slot_sizes],
    )
    return Atecc508a(_memory=memory)


class EmulatorBench(Bench):
    """An in-process chip (timing model off) behind the emulator driver; every new part has
    unknown factory data in its data and OTP zones (:func:`factory_part`)."""

    def __init__(self, seed: int = 508, *, config_differs: bool = False) -> None:
        self._rng = random.Random(seed)
        self._config_differs = config_differs
        self._chip = factory_part(self._rng, config_differs=config_differs)
        self._devices: list[Device] = []

    def new_part(self) -> None:
        self.close()
        self._chip = factory_part(self._rng, config_differs=self._config_differs)

    def plug(self) -> tuple[FaultHal, Device]:
        hal = FaultHal(EmulatorHal(self._chip))
        device = Device(hal)
        self._devices.append(device)
        return hal, device

    def replug(self) -> None:
        self._chip.power_off()

    @property
    def chip(self) -> Atecc508a:
        return self._chip

    def close(self) -> None:
        for device in self._devices:
            device.close()
        self._devices.clear()


def chip_state(chip: Atecc508a) -> PartState:
    if chip.data_locked:
        return PartState.PROVISIONED
    return PartState.CONFIG_LOCKED if chip.config_locked else PartState.UNLOCKED


@dataclass
class SweepCounts:
    cases: int = 0
    runs: int = 0
    faults_fired: int = 0
    not_fired: int = 0
    first_ok: int = 0
    first_failed: int = 0
    reported_unknown: int = 0
    second_ok: int = 0
    second_resumed_slot_locks: int = 0
    second_already: int = 0
    second_failed: int = 0
    burned: int = 0
    stuck: int = 0
    state_mismatches: int = 0
    foreign_exceptions: int = 0
    validation_failures: int = 0
    validation_interrupted: int = 0
    notify_errors: int = 0
    needless_failures: int = 0
    failed_stages: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def add(self, other: SweepCounts) -> None:
        for name, value in vars(other).items():
            mine = getattr(self, name)
            if isinstance(value, int):
                setattr(self, name, mine + value)
            elif isinstance(value, Counter):
                mine.update(value)
            else:
                mine.extend(value)

    def bad(self) -> dict[str, int]:
        """The counts that must be 0."""
        return {
            "burned": self.burned,
            "stuck": self.stuck,
            "state mismatches": self.state_mismatches,
            "foreign exceptions": self.foreign_exceptions,
            "validation failures": self.validation_failures,
            "notify errors": self.notify_errors,
            "needless failures": self.needless_failures,
            "second runs failed": self.second_failed,
        }

    def summary(self, title: str) -> str:
        lines = [
            f"{title}: {self.cases} cases, {self.runs} runs, {self.faults_fired} faults"
            f" fired ({self.not_fired} armed past the end of the run)",
            f"  first runs: {self.first_ok} ok, {self.first_failed} failed"
            f" ({self.reported_unknown} reported state UNKNOWN: board removed)",
            f"  second runs: {self.second_ok} provisioned,"
            f" {self.second_resumed_slot_locks} finished slot locks,"
            f" {self.second_already} already provisioned, {self.second_failed} failed",
            f"  validation interrupted (board removed / chip not waking):"
            f" {self.validation_interrupted}",
            "  " + ", ".join(f"{k}: {v}" for k, v in self.bad().items()),
            "  first-run failures by stage: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.failed_stages.items())),
        ]
        lines += [f"  PROBLEM {p}" for p in self.problems[:20]]
        return "\n".join(lines)


@dataclass
class Case:
    kind: Kind | None  # None: no chip fault (a server cut, or the clean run)
    index: int
    lock_slots: tuple[int, ...]
    server_cut: str | None = None
    data_lock_crc: bool = True

    def describe(self) -> str:
        what = label(self.kind) if self.kind is not None else f"server cut {self.server_cut}"
        slots = f" lock_slots={list(self.lock_slots)}" if self.lock_slots else ""
        return f"{what} at {self.index}{slots}"


def run_case(
    bench: Bench,
    server: InMemoryServer,
    cert_info: CertInfo,
    case: Case,
    config: bytes = DEFAULT_CONFIG,
) -> SweepCounts:
    """One part: a run with the fault, a replug, a second run, then the checks."""
    counts = SweepCounts(cases=1)
    where = case.describe()
    bench.new_part()
    hal, device = bench.plug()
    if case.kind is not None:
        arm(hal, device, case.kind, case.index)
    hooks = RecordingHooks(server)
    run_hooks = hooks if case.server_cut is None else ServerCutHooks(hooks, case.server_cut)

    counts.runs += 1
    first = _provision(device, run_hooks, cert_info, case, config)
    fired = bool(hal.fired) or (isinstance(run_hooks, ServerCutHooks) and run_hooks.cuts_done > 0)
    counts.faults_fired += fired
    counts.not_fired += not fired
    if isinstance(first, ProvisioningError):
        counts.first_failed += 1
        counts.failed_stages[first.stage.name if first.stage else "none"] += 1
        if case.kind in ABSORBED_KINDS:
            counts.needless_failures += 1
            counts.problems.append(f"{where}: first run failed at {first.stage}: {first.message}")
        _check_failure(counts, first, hooks, bench.chip, hal, case, where)
    elif isinstance(first, Exception):
        counts.foreign_exceptions += 1
        counts.problems.append(f"{where}: first run raised {type(first).__name__}: {first}")
    else:
        counts.first_ok += 1
        if not bench.chip.data_locked or any(
            not _slot_locked(bench.chip, s) for s in case.lock_slots
        ):
            counts.stuck += 1
            counts.problems.append(f"{where}: first run succeeded on a part short of it")

    bench.replug()
    _hal2, device2 = bench.plug()
    hooks2 = RecordingHooks(server)
    counts.runs += 1
    second = _provision(device2, hooks2, cert_info, case, config)
    if isinstance(second, AlreadyProvisionedError):
        counts.second_already += 1
    elif isinstance(second, ProvisioningError):
        counts.second_failed += 1
        counts.problems.append(f"{where}: second run failed at {second.stage}: {second.message}")
        _check_failure(counts, second, hooks2, bench.chip, None, case, where)
    elif isinstance(second, Exception):
        counts.foreign_exceptions += 1
        counts.problems.append(f"{where}: second run raised {type(second).__name__}: {second}")
    elif ProvStage.GEN_KEY in second.skipped:
        counts.second_resumed_slot_locks += 1
    else:
        counts.second_ok += 1

    chip = bench.chip
    if not chip.data_locked or any(not _slot_locked(chip, s) for s in case.lock_slots):
        counts.stuck += 1
        counts.problems.append(
            f"{where}: part left short after the second run"
            f" ({chip_state(chip).name}, slot locks"
            f" {[s for s in case.lock_slots if _slot_locked(chip, s)]})"
        )
    elif not isinstance(second, Exception) or isinstance(second, AlreadyProvisionedError):
        report = verify(device2, cert_info, expected_config=config, lock_slots=case.lock_slots)
        if not report.ok:
            counts.burned += 1
            counts.problems.append(f"{where}: locked part does not verify: {report.lines()}")
    bench.close()
    return counts


def _provision(
    device: Device,
    hooks: RecordingHooks | ServerCutHooks,
    cert_info: CertInfo,
    case: Case,
    config: bytes,
) -> ProvisionResult | Exception:
    try:
        return provision(
            device,
            hooks,
            cert_info,
            lock_slots=case.lock_slots,
            config=config,
            data_lock_crc=case.data_lock_crc,
        )
    except Exception as exc:  # the sweep counts what comes out, whatever it is
        return exc


def _slot_locked(chip: Atecc508a, slot: int) -> bool:
    bits = int.from_bytes(chip.config_zone[88:90], "little")
    return not (bits >> slot) & 1


def _check_failure(
    counts: SweepCounts,
    exc: ProvisioningError,
    hooks: RecordingHooks,
    chip: Atecc508a,
    hal: FaultHal | None,
    case: Case,
    where: str,
) -> None:
    truth = chip_state(chip)
    removed = hal is not None and hal.unplugged
    if exc.part_state is PartState.UNKNOWN:
        counts.reported_unknown += 1
        if not removed:
            counts.state_mismatches += 1
            counts.problems.append(f"{where}: reported UNKNOWN with the board in place")
    elif exc.part_state is not truth:
        counts.state_mismatches += 1
        counts.problems.append(
            f"{where}: reported {exc.part_state.name}, chip is {truth.name} ({exc.message})"
        )
    if exc.stage is None or not hooks.events or hooks.events[-1] != (exc.stage, ProvStatus.ERROR):
        counts.notify_errors += 1
        counts.problems.append(f"{where}: {exc.stage} raised without its ERROR notification")
    if exc.stage is ProvStage.VALIDATE_CERTS and not isinstance(exc, AlreadyProvisionedError):
        declared_bad = exc.code in (ReturnCode.VALIDATION_FAILED, ReturnCode.CERT_MISMATCH)
        burst = case.kind in BURST_KINDS or case.kind in UNPLUG_KINDS
        if declared_bad or not burst:
            counts.validation_failures += 1
            counts.problems.append(f"{where}: validation failed: {exc.message}")
        else:
            counts.validation_interrupted += 1


def count_commands(
    bench: Bench,
    server: InMemoryServer,
    cert_info: CertInfo,
    lock_slots: tuple[int, ...],
    *,
    data_lock_crc: bool = True,
) -> tuple[int, int, list[int]]:
    """Commands, wakes and opcodes of a clean run on a new part."""
    bench.new_part()
    hal, device = bench.plug()
    opcodes: list[int] = []
    inner_transact: Callable[[bytes, float], bytes] = hal.inner.transact

    def recording(packet: bytes, exec_time_ms: float) -> bytes:
        opcodes.append(packet[1])
        return inner_transact(packet, exec_time_ms)

    hal.inner.transact = recording  # type: ignore[method-assign]
    provision(
        device,
        RecordingHooks(server),
        cert_info,
        lock_slots=lock_slots,
        data_lock_crc=data_lock_crc,
    )
    bench.close()
    return hal.commands, hal.wakes, opcodes
