"""``provserver --metrics``: /metrics and /healthz read from real processes.

* during a real line run (provserver, a virtual board, provclient-cdc): /healthz answers 200
  with a ready signer; /metrics read after the first board and after the last count exactly
  what was signed (issued certificates by signer, request latencies, ledger commits, installed
  reports), and the signer module is present, not locked, not busy;
* a signer waiting for its password (locked): /healthz answers 503 with a JSON reason, and the
  module shows as locked;
* the metrics listener is bound to the address given only; bad addresses are refused.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families

from atcaprov.certinfo import load_cert_info
from atcaprov_demo import (
    DemoLayout,
    Processes,
    create_signer,
    run_client,
    start_board,
    start_server,
)
from provclient_cdc.session import ExitCode
from tests.support.processes import ServerProcess, prepare_data_dir
from tests.support.server import make_chain, write_pem_signer

pytestmark = pytest.mark.slow

HTTP_TIMEOUT_S = 10.0


def get(url: str) -> tuple[int, str, str]:
    """(status, content type, body) of a GET, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode("utf-8")


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics text: (name, labels) -> value (parsed by prometheus_client)."""
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def metrics_url(lines: str) -> str:
    match = re.search(r"Metrics on (http://127\.0\.0\.1:\d+)/metrics", lines)
    assert match, lines
    return match.group(1)


@pytest.fixture
def procs() -> Iterator[Processes]:
    with Processes() as group:
        yield group


def test_metrics_and_health_during_a_run(tmp_path: Path, procs: Processes) -> None:
    layout = DemoLayout.new(tmp_path)
    create_signer(layout)
    server, port = start_server(procs, layout, extra=["--metrics", "127.0.0.1:0"])
    base = metrics_url("\n".join(server.text()))
    board, url = start_board(procs, layout, chips=3, auto_swap=0.3)

    during: list[tuple[tuple[int, str, str], tuple[int, str, str]]] = []
    read = threading.Event()

    def scrape(stream: str, line: str) -> None:
        # after the first board, before the second is found (the station waits for removal)
        if line.startswith("Provisioning successful!") and not during:
            during.append((get(f"{base}/metrics"), get(f"{base}/healthz")))
            read.set()

    run = run_client(procs, layout, port, url, 3, timeout=180, on_line=scrape)
    assert run.returncode == ExitCode.OK, "\n".join(run.lines)
    assert [r["result"] for r in run.results] == ["ok"] * 3
    assert read.is_set()
    after = get(f"{base}/metrics")
    health = get(f"{base}/healthz")
    board.stop()
    assert server.stop() == 0

    ((mid_metrics, mid_health),) = during
    assert mid_health[0] == 200 and mid_health[1] == "application/json"
    assert json.loads(mid_health[2]) == {"status": "ok", "signers_ready": 1}
    assert health[0] == 200
    assert mid_metrics[0] == 200 and mid_metrics[1].startswith("text/plain; version=0.0.4")

    signer = load_cert_info(layout.certinfo).signer_id.hex().upper()
    mid = samples(mid_metrics[2])
    assert value(mid, "atcaprov_signings_total", signer=signer, result="issued") == 1
    assert value(mid, "atcaprov_request_duration_seconds_count", type="cert") == 1

    end = samples(after[2])
    # the counters match what was signed: three devices, each a new certificate, installed
    assert value(end, "atcaprov_signings_total", signer=signer, result="issued") == 3
    assert value(end, "atcaprov_signings_total", signer=signer, result="reissued") == 0
    assert value(end, "atcaprov_signings_total", signer=signer, result="refused") == 0
    assert value(end, "atcaprov_request_duration_seconds_count", type="cert") == 3
    assert value(end, "atcaprov_request_duration_seconds_count", type="ready") >= 3
    assert value(end, "atcaprov_request_duration_seconds_count", type="report") == 3
    assert value(end, "atcaprov_outcome_reports_total", outcome="installed") == 3
    assert value(end, "atcaprov_ledger_commit_seconds_count", operation="issue") == 3
    assert value(end, "atcaprov_ledger_commit_seconds_count", operation="report") == 3
    assert value(end, "atcaprov_ledger_commit_seconds_sum", operation="issue") > 0
    assert value(end, "atcaprov_signer_modules", signer=signer, state="present") == 1
    assert value(end, "atcaprov_signer_modules", signer=signer, state="locked") == 0
    assert value(end, "atcaprov_signer_modules", signer=signer, state="busy") == 0
    # the client had closed its connection by then (it ends after the last board)
    assert ("atcaprov_open_connections", frozenset()) in end
    assert not any(name == "atcaprov_refusals_total" and v for (name, _), v in end.items())
    # the histogram has its buckets; the last one counts every request
    assert value(end, "atcaprov_request_duration_seconds_bucket", type="cert", le="+Inf") == 3
    # the signing log agrees: three signed rows
    rows = list((layout.data_dir / "logs").glob("signing-*.tsv"))
    assert len(rows) == 1
    assert sum(1 for line in rows[0].read_text().splitlines()[1:] if "\tsigned\t" in line) == 3


def test_locked_signer_makes_healthz_503(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chain = make_chain()
    data = tmp_path / "data"
    prepare_data_dir(chain, data, tmp_path / "keys")
    key = write_pem_signer(chain, tmp_path / "keys", password=b"s3cret")
    monkeypatch.delenv("ATCAPROV_TEST_UNSET_PW", raising=False)
    server = ServerProcess(
        data,
        key,
        tmp_path / "console.txt",
        "--password-env",
        "ATCAPROV_TEST_UNSET_PW",
        "--metrics",
        "127.0.0.1:0",
    )
    try:
        server.spawn()
        deadline = time.monotonic() + 60
        while "stays locked" not in server.text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "stays locked" in server.text(), server.text()
        base = metrics_url(server.text())
        status, ctype, body = get(f"{base}/healthz")
        metrics = samples(get(f"{base}/metrics")[2])
        missing = get(f"{base}/nothing")
    finally:
        code = server.stop()
    assert code == 0
    assert status == 503 and ctype == "application/json"
    answer = json.loads(body)
    assert answer["status"] == "unavailable"
    assert answer["reason"] == (
        "no signer ready: 1 module(s) present, all locked (password not entered)"
    )
    signer = chain.cert_info.signer_id.hex().upper()
    assert value(metrics, "atcaprov_signer_modules", signer=signer, state="present") == 1
    assert value(metrics, "atcaprov_signer_modules", signer=signer, state="locked") == 1
    assert missing[0] == 404


def test_listens_on_the_given_address_only(tmp_path: Path) -> None:
    chain = make_chain()
    data = tmp_path / "data"
    key = prepare_data_dir(chain, data, tmp_path / "keys")
    server = ServerProcess(data, key, tmp_path / "console.txt", "--metrics", "127.0.0.1:0")
    try:
        server.start()
        base = metrics_url(server.text())
        port = int(base.rsplit(":", 1)[1])
        assert get(f"{base}/healthz")[0] == 200
        import socket

        sockets = []
        for family, address in ((socket.AF_INET, ("127.0.0.2", port)),):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.settimeout(2)
            sockets.append(s)
            with pytest.raises(OSError):
                s.connect(address)  # bound to 127.0.0.1 only: refused on 127.0.0.2
        for s in sockets:
            s.close()
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    "address", ["9464", ":9464", "localhost", "127.0.0.1:x", "127.0.0.1:70000", "::1:9464"]
)
def test_bad_metrics_address_refused(address: str) -> None:
    from click.testing import CliRunner

    from provserver.cli import main

    result = CliRunner().invoke(main, ["--metrics", address, "--data-dir", "/nonexistent/x"])
    assert result.exit_code == 2
    assert "--metrics" in result.output
