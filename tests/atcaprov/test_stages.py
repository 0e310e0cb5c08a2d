"""Stage enums and the operator lines, checked against the app note's example client output."""

from __future__ import annotations

from atcaprov import stages as s
from atcaprov.stages import ProvStage, ProvStatus, format_stage_line, stage_prefix

# App note 8971A, section 3.3.1 "Example: Provisioning Client CDC Example Output" (first device).
EXAMPLE = """\
Writing config zone.......done
Locking config zone.......done
Reading config zone.......done
Generating device key.....done
Requesting certificates...done
Writing certificates......done
Writing data zone.........done
Locking data zone.........done
Locking slots.............skipped
Validating certificates...done"""


def test_lines_match_app_note_example() -> None:
    lines = [
        format_stage_line(
            stage, ProvStatus.SKIPPED if stage is ProvStage.SLOTS_LOCK else ProvStatus.DONE
        )
        for stage in ProvStage
    ]
    assert "\n".join(lines) == EXAMPLE


def test_prefix_is_printed_at_start_then_word() -> None:
    assert stage_prefix(ProvStage.GEN_KEY) == "Generating device key....."
    assert format_stage_line(ProvStage.GEN_KEY, ProvStatus.START) == "Generating device key....."
    assert (
        format_stage_line(ProvStage.DATA_LOCK, ProvStatus.ERROR)
        == "Locking data zone.........error"
    )
    assert all(len(stage_prefix(stage)) == s.STAGE_LABEL_WIDTH for stage in ProvStage)


def test_numbers_order_and_c_names() -> None:
    assert [int(stage) for stage in ProvStage] == list(range(1, 11))
    assert s.ATCAPROV_STAGE_CONFIG_WRITE is ProvStage.CONFIG_WRITE
    assert s.ATCAPROV_STAGE_VALIDATE_CERTS == 10
    assert s.ATCAPROV_STATUS_ERROR is ProvStatus.ERROR
    for stage in ProvStage:
        assert getattr(s, stage.c_name) is stage
    for status in ProvStatus:
        assert getattr(s, status.c_name) is status
