"""The ten provisioning stages and their statuses (``ATCAPROV_STAGE_*``, ``ATCAPROV_STATUS_*``).

Stage numbers and order follow the app note's progress-notification list (section 5.5): config
write, config lock, config read, key generation, certificate request, certificate write, data
write, data lock, slot locks, certificate validation. The notify hook gets
``(stage, status)``: START or SKIPPED when a stage begins, then DONE or ERROR if it was started.

This module also owns the operator-facing text of each stage, as the app note's example client
prints it::

    Writing config zone.......done
    Locking slots.............skipped

i.e. the label padded with dots to :data:`STAGE_LABEL_WIDTH` (26) characters, then the status
word. :func:`stage_prefix` is what a console prints when a stage starts (no newline), the word
is appended when it ends; :func:`format_stage_line` gives the whole line.
"""

from __future__ import annotations

from enum import IntEnum


class ProvStage(IntEnum):
    """Provisioning stages, numbered as the C enum (1..10)."""

    CONFIG_WRITE = 1
    CONFIG_LOCK = 2
    CONFIG_READ = 3
    GEN_KEY = 4
    CERTS_REQUEST = 5
    CERTS_WRITE = 6
    DATA_WRITE = 7
    DATA_LOCK = 8
    SLOTS_LOCK = 9
    VALIDATE_CERTS = 10

    @property
    def c_name(self) -> str:
        return "ATCAPROV_STAGE_" + self.name

    @property
    def label(self) -> str:
        """The operator label, e.g. ``Writing config zone``."""
        return _LABELS[self]


class ProvStatus(IntEnum):
    """Status of a stage passed to the notify hook."""

    START = 0
    SKIPPED = 1
    DONE = 2
    ERROR = 3

    @property
    def c_name(self) -> str:
        return "ATCAPROV_STATUS_" + self.name

    @property
    def word(self) -> str:
        """The word printed after the dots (empty for START)."""
        return _WORDS[self]


_LABELS: dict[ProvStage, str] = {
    ProvStage.CONFIG_WRITE: "Writing config zone",
    ProvStage.CONFIG_LOCK: "Locking config zone",
    ProvStage.CONFIG_READ: "Reading config zone",
    ProvStage.GEN_KEY: "Generating device key",
    ProvStage.CERTS_REQUEST: "Requesting certificates",
    ProvStage.CERTS_WRITE: "Writing certificates",
    ProvStage.DATA_WRITE: "Writing data zone",
    ProvStage.DATA_LOCK: "Locking data zone",
    ProvStage.SLOTS_LOCK: "Locking slots",
    ProvStage.VALIDATE_CERTS: "Validating certificates",
}

_WORDS: dict[ProvStatus, str] = {
    ProvStatus.START: "",
    ProvStatus.SKIPPED: "skipped",
    ProvStatus.DONE: "done",
    ProvStatus.ERROR: "error",
}

STAGE_LABEL_WIDTH = 26
"""Width of label plus dots in the example output (``Requesting certificates...`` is 26)."""


def stage_prefix(stage: ProvStage) -> str:
    """The label padded with dots to 26 characters: printed when the stage starts."""
    label = ProvStage(stage).label
    return label + "." * max(STAGE_LABEL_WIDTH - len(label), 3)


def format_stage_line(stage: ProvStage, status: ProvStatus) -> str:
    """The whole progress line, e.g. ``Writing config zone.......done`` (no newline)."""
    return stage_prefix(stage) + ProvStatus(status).word


ATCAPROV_STAGE_CONFIG_WRITE = ProvStage.CONFIG_WRITE
ATCAPROV_STAGE_CONFIG_LOCK = ProvStage.CONFIG_LOCK
ATCAPROV_STAGE_CONFIG_READ = ProvStage.CONFIG_READ
ATCAPROV_STAGE_GEN_KEY = ProvStage.GEN_KEY
ATCAPROV_STAGE_CERTS_REQUEST = ProvStage.CERTS_REQUEST
ATCAPROV_STAGE_CERTS_WRITE = ProvStage.CERTS_WRITE
ATCAPROV_STAGE_DATA_WRITE = ProvStage.DATA_WRITE
ATCAPROV_STAGE_DATA_LOCK = ProvStage.DATA_LOCK
ATCAPROV_STAGE_SLOTS_LOCK = ProvStage.SLOTS_LOCK
ATCAPROV_STAGE_VALIDATE_CERTS = ProvStage.VALIDATE_CERTS

ATCAPROV_STATUS_START = ProvStatus.START
ATCAPROV_STATUS_SKIPPED = ProvStatus.SKIPPED
ATCAPROV_STATUS_DONE = ProvStatus.DONE
ATCAPROV_STATUS_ERROR = ProvStatus.ERROR
