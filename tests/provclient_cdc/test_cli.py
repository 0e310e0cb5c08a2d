"""The command line: --help in the app note's layout, argument checks, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from provclient_cdc.cli import help_text, main, parse_slot_list
from provclient_cdc.session import ExitCode
from tests.support.net import free_port
from tests.support.pki import make_pki

SEED = Path("/work/shared/seed/production-provisioning-guide-8971A-alt-extraction.txt")
SEED_HELP = """\
Options:
  --help                      Show help.
  --certinfo filename (=atcaprov_cert_info_0.c)
                              Path and file name for the provisioning
                              configuration file. This is the
                              atcaprov_cert_info_X.c file output by the Signing
                              Module Utility when configuring a signer module.
                              It contains information needed when requesting
                              certificates from the Provisioning Server.
  --config filename           Path and file name for the ATECC508A device
                              configuration zone data. If omitted, a default
                              configuration will be used.
  --host name/ip (=localhost) Provisioning server host name or IP address. If
                              omitted, localhost is used, which assumes the
                              Provisioning Server is running on the same
                              computer.
  --port num (=11235)         Provisioning server port number. If omitted,
                              11235 is used.
"""


def test_seed_block_copied_right() -> None:
    if not SEED.exists():
        pytest.skip("seed text not on this machine")
    text = SEED.read_text(encoding="utf-8")
    start = text.index("Options:", text.index(">ProvisioningClientCDCExample --help"))
    block = [line.rstrip() for line in text[start : text.index("3.5 Config File")].splitlines()]
    assert "\n".join(block).strip() + "\n" == SEED_HELP


def test_help_starts_with_the_seed_table() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert result.output.startswith(SEED_HELP + "\nAdded options:\n")
    assert result.output == help_text()
    for option in (
        "--board URL",
        "--lock-slots LIST",
        "--no-validate",
        "--no-data-lock-crc",
        "--tls-ca",
        "--tls-cert",
        "--tls-key",
        "--station-id",
        "--yes",
        "--count N",
        "--json",
    ):
        assert f"\n  {option}" in result.output
    assert "\nExit codes:\n" in result.output
    for code in ExitCode:
        assert f"\n  {int(code):<4}" in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80


@pytest.mark.parametrize(
    ("text", "slots"), [("0", (0,)), ("0,2-4", (0, 2, 3, 4)), (" 15 , 1", (1, 15)), ("", ())]
)
def test_slot_list(text: str, slots: tuple[int, ...]) -> None:
    assert parse_slot_list(text) == slots


@pytest.mark.parametrize(
    "args",
    [
        ["--lock-slots", "16"],
        ["--lock-slots", "a"],
        ["--lock-slots", "4-2"],
        ["--port", "0"],
        ["--count", "0"],
        ["--station-id", "x" * 65],
        ["--bogus"],
    ],
)
def test_bad_arguments_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == ExitCode.BAD_INPUT, result.output


def test_missing_certinfo_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--certinfo", str(tmp_path / "nope.c")])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.output.splitlines()[0] == (
        f"Reading provisioning config file {tmp_path / 'nope.c'}...failed"
    )


def test_bad_tls_files_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    result = CliRunner().invoke(main, ["--tls-ca", str(bad)])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "cannot load TLS files" in result.output


def test_server_not_running_countdown_and_exit_3(tmp_path: Path) -> None:
    certinfo = make_pki().write_certinfo(tmp_path)
    port = free_port()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "provclient_cdc.cli",
            "--certinfo",
            str(certinfo),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--connect-retries",
            "2",
            "--retry-interval",
            "0.2",
            "--board",
            "socket://127.0.0.1:1",
            "--yes",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    assert proc.returncode == ExitCode.SERVER_UNREACHABLE
    assert proc.stdout.splitlines() == [
        f"Reading provisioning config file {certinfo}...ok",
        f"Connecting to 127.0.0.1:{port}...failed (connection refused), retrying in 0.2 s",
        f"Connecting to 127.0.0.1:{port}...failed (connection refused), retrying in 0.2 s",
        f"Connecting to 127.0.0.1:{port}...failed (connection refused)",
        f"Cannot reach the provisioning server at 127.0.0.1:{port}: connection refused."
        " Is provserver running there?",
    ]
    assert "Traceback" not in proc.stderr and proc.stderr == ""
