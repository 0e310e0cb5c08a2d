"""Fixtures of the client tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from atcaprov_demo import DemoLayout, Processes, create_signer, start_server


@pytest.fixture
def line(tmp_path: Path) -> Iterator[tuple[DemoLayout, Processes, int]]:
    """A line's server side: a signer made with ``provserver signer create`` and a real
    ``provserver`` on 127.0.0.1; (layout, the processes, the server's port)."""
    layout = DemoLayout.new(tmp_path)
    with Processes() as procs:
        create_signer(layout)
        _, port = start_server(procs, layout)
        yield layout, procs, port
