"""Operator-client test doubles: scripted keys, captured output, the stage lines of a good run."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable

from atcaprov.stages import ProvStage, ProvStatus
from provclient_cdc.console import Keys
from provclient_cdc.output import Output

# What a good run prints, stage by stage (no slots locked).
STAGE_LINES = [
    "Writing config zone.......done",
    "Locking config zone.......done",
    "Reading config zone.......done",
    "Generating device key.....done",
    "Requesting certificates...done",
    "Writing certificates......done",
    "Writing data zone.........done",
    "Locking data zone.........done",
    "Locking slots.............skipped",
    "Validating certificates...done",
]


class ScriptedKeys(Keys):
    """Keys given in advance; each is handed out once ``when()`` allows (default: at once)."""

    def __init__(self, keys: list[str] | None = None) -> None:
        super().__init__()
        self.script: list[tuple[str, Callable[[], bool] | None]] = [(k, None) for k in (keys or [])]
        self.lock = threading.Lock()

    def add(self, key: str, when: Callable[[], bool] | None = None) -> None:
        with self.lock:
            self.script.append((key, when))

    def _read(self, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if self.script and (self.script[0][1] is None or self.script[0][1]()):
                    return [self.script.pop(0)[0]]
            if time.monotonic() >= deadline:
                return []
            time.sleep(min(0.01, max(deadline - time.monotonic(), 0)))


class CapturingOutput(Output):
    """An Output into a StringIO, with an optional callback per stage notification."""

    def __init__(self, *, json_lines: bool = False) -> None:
        self.text = io.StringIO()
        self.json_text = io.StringIO()
        super().__init__(self.text, self.json_text if json_lines else None)
        self.on_stage: Callable[[object, object], None] | None = None

    def stage(self, stage: ProvStage, status: ProvStatus) -> None:
        if self.on_stage is not None:
            self.on_stage(stage, status)
        super().stage(stage, status)

    def lines(self) -> list[str]:
        return self.text.getvalue().splitlines()
