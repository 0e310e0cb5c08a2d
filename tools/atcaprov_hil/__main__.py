"""``python -m atcaprov_hil``: the HIL test program the guest runs (docs/hil.md)."""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path

import click

from .checks import run_all, say


@click.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder to copy the run's logs into (the host's writable share).",
)
@click.option(
    "--base",
    type=click.Path(path_type=Path),
    default=Path("/tmp/hil"),
    help="Working folder (the guest's tmpfs).",
)
def main(out: Path | None, base: Path) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    started = time.monotonic()
    base.mkdir(parents=True, exist_ok=True)
    try:
        run = run_all(base)
    finally:
        if out is not None:
            shutil.copytree(
                base, out / "run", dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.sqlite3-*")
            )
    say(
        f"HIL-DONE {len(run.passed)} passed, {len(run.failed)} failed"
        f" in {time.monotonic() - started:.1f} s"
    )
    sys.exit(1 if run.failed else 0)


if __name__ == "__main__":
    main()
