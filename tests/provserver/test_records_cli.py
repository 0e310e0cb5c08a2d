"""``provserver records``: list, show, export (csv, jsonl, pem, manifest), verify-manifest.

On both ledger engines (``ledger_spec``; PostgreSQL skipped with the reason where it cannot be
run). The 1000-device manifest is also decoded and verified by Microchip's pytrustplatform
(skipped, saying why, where it is not installed).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from atcaprov.return_codes import ReturnCode
from provserver.cli import main
from provserver.ledger import EventKind, Ledger, RefusalOp, ReportOp, open_ledger
from provserver.manifest import (
    ManifestError,
    ManifestVerifier,
    b64url,
    b64url_decode,
    iter_manifest,
)
from provserver.records_cli import Progress
from tests.support.certs import der, pem
from tests.support.ledger_fill import (
    FillPki,
    device_sn,
    fill_ledger,
    issue_op,
    make_fill_pki,
)


@pytest.fixture(scope="module")
def pki() -> FillPki:
    return make_fill_pki()


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["records", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def small(ledger_spec: str, pki: FillPki) -> Iterator[str]:
    """5 devices: 0 installed, 1 superseded by a second key, 2 failed, 3 and 4 signed (line-2);
    a refusal (a key reused) for device 9. Devices 0..2 were first issued to a client that did
    not state the device type (protocol v1); 3 is an ATECC608B, 4 an ATECC608A, and the second
    key of 1 came with ATECC508A."""
    with open_ledger(ledger_spec, None) as ledger:
        run = fill_ledger(ledger, 3, pki)
        ledger.commit(
            [
                issue_op(n, pki, station="10.0.0.2:5 line-2", device_type=t)
                for n, t in ((3, "ATECC608B"), (4, "ATECC608A"))
            ],
            run_id=run,
        )
        ledger.commit(
            [issue_op(1, pki, key_n=101, minutes=30, device_type="ATECC508A")], run_id=run
        )
        ledger.commit([_report(0, EventKind.INSTALLED), _report(2, EventKind.FAILED)], run_id=run)
        ledger.commit([RefusalOp(time="2026-11-21T06:00:00.000000Z", station="x",
                                 device_sn=device_sn(9), public_key="AB" * 64, signer="s",
                                 code=ReturnCode.PUBLIC_KEY_REUSED, message="key reused")],
                      run_id=run)  # fmt: skip
    yield ledger_spec


def _report(n: int, outcome: EventKind) -> ReportOp:
    op = issue_op(n, None)
    return ReportOp(
        time="2026-11-21T05:40:00.000000Z", station=op.station, device_sn=op.device_sn,
        public_key=op.public_key, outcome=outcome,  # type: ignore[arg-type]
        stage="VALIDATE_CERTS", part_state="PROVISIONED",
        code="" if outcome is EventKind.INSTALLED else "VALIDATION_FAILED", message="bad \x1b[2J",
    )  # fmt: skip


# ------------------------------------------------------------------ list and show
def test_list_filters_and_json(small: str) -> None:
    code, out, _ = invoke("list", "--ledger", small, "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["device_sn"], r["state"]) for r in rows] == [
        (device_sn(0), "installed"),
        (device_sn(1), "superseded"),
        (device_sn(2), "failed"),
        (device_sn(3), "signed"),
        (device_sn(4), "signed"),
        (device_sn(1), "signed"),
    ]
    assert [r["device_type"] for r in rows] == [
        None, None, None, "ATECC608B", "ATECC608A", "ATECC508A",
    ]  # fmt: skip
    code, out, _ = invoke("list", "--ledger", small, "--json", "--station", "line-2")
    assert [json.loads(line)["device_sn"] for line in out.splitlines()] == [
        device_sn(3),
        device_sn(4),
    ]
    code, out, _ = invoke(
        "list",
        "--ledger",
        small,
        "--json",
        "--state",
        "signed",
        "--since",
        "2026-11-21T05:03:30Z",
        "--until",
        "2026-11-21T05:30:00Z",
    )
    assert [json.loads(line)["device_sn"] for line in out.splitlines()] == [device_sn(4)]
    code, out, _ = invoke("list", "--ledger", small, "--signer", "c48b")
    assert code == 0 and out.startswith("ISSUED AT") and out.rstrip().endswith("6 issuance(s).")
    table = out.splitlines()
    assert table[0].split() == [
        "ISSUED", "AT", "DEVICE", "SN", "TYPE", "STATE", "CERT", "SN", "SGNR", "STATION",
    ]  # fmt: skip
    assert [line.split()[2:4] for line in table[1:7]] == [
        ["-", "installed"], ["-", "superseded"], ["-", "failed"], ["ATECC608B", "signed"],
        ["ATECC608A", "signed"], ["ATECC508A", "signed"],
    ]  # fmt: skip
    assert table[1].index("installed") == table[4].index("signed") == table[0].index("STATE")
    code, out, _ = invoke("list", "--ledger", small, "--signer", "nobody")
    assert code == 0 and out.strip() == "0 issuance(s)."


def test_show_gives_the_whole_history_escaped(small: str) -> None:
    code, out, _ = invoke("show", device_sn(2).lower(), "--ledger", small)
    assert code == 0, out
    assert f"Device {device_sn(2)}: failed" in out
    assert "failed" in out and "VALIDATION_FAILED" in out and "VALIDATE_CERTS" in out
    assert "\x1b" not in out and "\\x1b[2J" in out  # the client's text is escaped
    code, out, _ = invoke("show", device_sn(1), "--ledger", small)
    issued = [line for line in out.splitlines() if line.startswith("  #")]
    assert [" type -  " in issued[0], " type ATECC508A  " in issued[1]] == [True, True]
    code, out, _ = invoke("show", device_sn(1), "--ledger", small, "--json")
    history = json.loads(out)
    assert [i["state"] for i in history["issuances"]] == ["superseded", "signed"]
    assert [i["device_type"] for i in history["issuances"]] == [None, "ATECC508A"]
    assert [e["kind"] for e in history["events"]] == ["signed", "superseded", "signed"]
    assert history["device"]["current_issuance"] == history["issuances"][1]["id"]
    code, out, _ = invoke("show", device_sn(9), "--ledger", small)
    assert code == 0 and "no certificate issued" in out and "refused" in out
    code, _, err = invoke("show", device_sn(77), "--ledger", small)
    assert code == 1 and f"device {device_sn(77)} is not in the ledger" in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["list", "--since", "yesterday"], "--since"),
        (["list", "--until", "2026-11-21T05:00:00"], "has no time zone"),
        (["list", "--state", "gone"], "'gone' is not one of"),
        (["list", "--since", "2026-11-22", "--until", "2026-11-21"], "is not before --until"),
        (["show", "01AB"], "not a chip serial number (9 bytes, 18 hex digits"),
        (["export", "--format", "xml", "-o", "x"], "'xml' is not one of"),
        (["export", "--format", "manifest", "-o", "x"], "needs --manifest-key"),
    ],
)
def test_a_bad_option_says_which_and_what_was_expected(
    args: list[str], expected: str, tmp_path: Path
) -> None:
    code, out, err = invoke(*args, "--data-dir", str(tmp_path))
    assert code == 2, out + err
    assert expected in err
    if "--since" in args and "yesterday" in args:
        assert "ISO 8601 time with a zone" in err


def test_a_folder_without_a_ledger_is_one_clear_line(tmp_path: Path) -> None:
    code, _, err = invoke("list", "--data-dir", str(tmp_path))
    assert code == 1
    assert err.strip() == (
        f"Error: no ledger in {tmp_path} (no ledger.sqlite3: has a server "
        "run with this --data-dir? or give --ledger)"
    )


def test_data_dir_before_the_command_counts(tmp_path: Path, pki: FillPki) -> None:
    with open_ledger(None, tmp_path) as ledger:
        fill_ledger(ledger, 2, pki)
    result = CliRunner().invoke(main, ["--data-dir", str(tmp_path), "records", "list", "--json"])
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 2


# ------------------------------------------------------------------ exports
def test_exports_csv_jsonl_pem(small: str, tmp_path: Path, pki: FillPki) -> None:
    out = tmp_path / "all.csv"
    code, _, err = invoke("export", "--ledger", small, "--format", "csv", "-o", str(out))
    assert code == 0 and "Exported 6 device(s) (csv)" in err
    rows = list(csv.DictReader(out.open(newline="")))
    assert [r["state"] for r in rows][:3] == ["installed", "superseded", "failed"]
    assert out.read_text().splitlines()[0] == (
        "device_sn,state,issued_at,updated_at,cert_sn,public_key,signer_id,issuer_key_id,"
        "signer,station,run_id,issuance_id,device_cert,device_type"
    )  # the columns of earlier versions where they were, the device type last
    assert [r["device_type"] for r in rows] == [
        "", "", "", "ATECC608B", "ATECC608A", "ATECC508A",
    ]  # fmt: skip
    cert = x509.load_der_x509_certificate(base64.b64decode(rows[0]["device_cert"]))
    assert cert.subject.rfc4514_string() == f"CN=Device {device_sn(0)}"
    assert not list(tmp_path.glob("*.partial"))

    out = tmp_path / "installed.jsonl"
    code, _, _ = invoke(
        "export", "--ledger", small, "--format", "jsonl", "--state", "installed", "-o", str(out)
    )
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["device_sn"] == device_sn(0)
    assert record["signer_cert"].encode() == pem(pki.signer_cert)
    assert record["root_cert"].encode() == pem(pki.root_cert)
    assert record["device_type"] is None  # its request did not say (a protocol v1 client)
    code, _, _ = invoke(
        "export", "--ledger", small, "--format", "jsonl", "--station", "line-2", "-o", str(out)
    )
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["device_type"] for r in records] == ["ATECC608B", "ATECC608A"]

    out = tmp_path / "line2.pem"
    code, _, _ = invoke(
        "export", "--ledger", small, "--format", "pem", "--station", "line-2", "-o", str(out)
    )
    certs = x509.load_pem_x509_certificates(out.read_bytes())
    assert [c.serial_number for c in certs] == [4, 5]


def test_an_export_that_cannot_be_written_leaves_no_file(small: str, tmp_path: Path) -> None:
    out = tmp_path / "missing-folder" / "x.csv"
    code, _, err = invoke("export", "--ledger", small, "--format", "csv", "-o", str(out))
    assert code == 1 and f"Error: cannot write {out}:" in err
    assert not out.parent.exists()


def test_progress_only_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    now = [0.0]
    stream = Tty()
    progress = Progress(stream, clock=lambda: now[0])
    for _ in range(10):
        now[0] += 0.2
        progress.step()
    progress.done()
    text = stream.getvalue()
    assert "\rExported 3 device(s) (5/s)..." in text and text.endswith("\r\x1b[K")
    quiet = io.StringIO()
    progress = Progress(quiet, clock=lambda: now[0])
    for _ in range(10):
        now[0] += 1
        progress.step()
    progress.done()
    assert quiet.getvalue() == "" and progress.count == 10


# ------------------------------------------------------------------ the manifest
def _export_manifest(spec: str, folder: Path, pki: FillPki, *extra: str) -> Path:
    key_path, cert_path = pki.write_manifest_signer(folder)
    out = folder / "manifest.json"
    code, _, err = invoke(
        "export",
        "--ledger",
        spec,
        "--format",
        "manifest",
        "-o",
        str(out),
        "--manifest-key",
        str(key_path),
        "--manifest-cert",
        str(cert_path),
        "--provisioner",
        "Example Factory/Line 3",
        "--group-id",
        "g1",
        *extra,
    )
    assert code == 0, err
    return out


def test_manifest_entry_fields(small: str, tmp_path: Path, pki: FillPki) -> None:
    out = _export_manifest(small, tmp_path, pki)
    manifest = json.loads(out.read_text())
    # without --state: the certificates a chip may carry (superseded and failed left out)
    assert [e["header"]["uniqueId"] for e in manifest] == [
        device_sn(n).lower() for n in (0, 3, 4, 1)
    ]
    entry = manifest[0]
    assert set(entry) == {"payload", "protected", "header", "signature"}
    protected = json.loads(b64url_decode(entry["protected"]))
    ski = pki.manifest_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    import hashlib

    assert protected == {
        "typ": "JWT",
        "alg": "ES256",
        "kid": b64url(ski.value.digest),
        "x5t#S256": b64url(hashlib.sha256(der(pki.manifest_cert)).digest()),
    }
    payload = json.loads(b64url_decode(entry["payload"]))
    assert list(payload) == [
        "version",
        "model",
        "partNumber",
        "manufacturer",
        "provisioner",
        "distributor",
        "groupId",
        "provisioningTimestamp",
        "uniqueId",
        "publicKeySet",
    ]
    assert payload["version"] == 1
    # model and partNumber: the device type stored with the issuance (device 0's request did
    # not state one: --model, default ATECC508A)
    payloads = [json.loads(b64url_decode(e["payload"])) for e in manifest]
    assert [(p["model"], p["partNumber"]) for p in payloads] == [
        ("ATECC508A", "ATECC508A"), ("ATECC608B", "ATECC608B"), ("ATECC608A", "ATECC608A"),
        ("ATECC508A", "ATECC508A"),
    ]  # fmt: skip
    assert payload["manufacturer"] == {
        "organizationName": "Microchip Technology Inc",
        "organizationalUnitName": "Secure Products Group",
    }
    assert (
        payload["provisioner"]
        == payload["distributor"]
        == {"organizationName": "Example Factory", "organizationalUnitName": "Line 3"}
    )
    assert payload["groupId"] == "g1"
    assert payload["provisioningTimestamp"] == "2026-11-21T05:00:00.000Z"
    (jwk,) = payload["publicKeySet"]["keys"]
    op = issue_op(0, pki)
    assert (jwk["kid"], jwk["kty"], jwk["crv"]) == ("0", "EC", "P-256")
    assert b64url_decode(jwk["x"]) + b64url_decode(jwk["y"]) == bytes.fromhex(op.public_key)
    device_der, signer_der = (base64.b64decode(c) for c in jwk["x5c"])
    assert signer_der == op.signer_cert  # the signature in a device certificate is random:
    with open_ledger(small, None, read_only=True) as ledger:  # the ledger's, byte for byte
        assert device_der == ledger.device_history(device_sn(0)).issuances[0].device_cert


def test_manifest_model_fallback_and_part_numbers_per_model(
    small: str, tmp_path: Path, pki: FillPki
) -> None:
    out = _export_manifest(
        small, tmp_path, pki, "--model", "ATECC608A", "--part-number", "ATECC608B=ATECC608B-TNGTLS"
    )
    payloads = [json.loads(b64url_decode(e["payload"])) for e in json.loads(out.read_text())]
    assert [(p["model"], p["partNumber"]) for p in payloads] == [
        ("ATECC608A", "ATECC608A"),  # device 0: no stored type, --model
        ("ATECC608B", "ATECC608B-TNGTLS"), ("ATECC608A", "ATECC608A"), ("ATECC508A", "ATECC508A"),
    ]  # fmt: skip
    out = _export_manifest(
        small, tmp_path, pki, "--part-number", "PN-1", "--part-number", "ATECC608A = PN-608A"
    )
    payloads = [json.loads(b64url_decode(e["payload"])) for e in json.loads(out.read_text())]
    assert [p["partNumber"] for p in payloads] == ["PN-1", "PN-1", "PN-608A", "PN-1"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["=X"], "=X is not a part number nor MODEL=PART_NUMBER"),
        (["ATECC608B="], "is not a part number nor MODEL=PART_NUMBER"),
        (["A", "B"], "two part numbers for every entry"),
        (["M=A", "M=B"], "two part numbers for model M"),
    ],
)
def test_a_bad_part_number_option_is_refused(
    values: list[str], expected: str, tmp_path: Path
) -> None:
    args = [arg for value in values for arg in ("--part-number", value)]
    code, out, err = invoke(
        "export", "--format", "manifest", "-o", "x", *args, "--data-dir", str(tmp_path)
    )
    assert code == 2, out + err
    assert expected in err


def test_a_1000_device_manifest_verifies_and_tampering_is_found(
    tmp_path: Path, pki: FillPki
) -> None:
    with open_ledger(None, tmp_path) as ledger:
        fill_ledger(ledger, 1000, pki)
    out = _export_manifest(f"sqlite:{tmp_path / 'ledger.sqlite3'}", tmp_path, pki)
    cert = str(tmp_path / "manifest.crt")
    root = tmp_path / "root.crt"
    root.write_bytes(pem(pki.root_cert))
    code, text, _ = invoke(
        "verify-manifest", str(out), "--manifest-cert", cert, "--root-ca", str(root)
    )
    assert code == 0 and text.strip() == "1000 entries: 1000 verified, 0 failed."

    manifest = json.loads(out.read_text())
    payload = json.loads(b64url_decode(manifest[7]["payload"]))
    payload["partNumber"] = "ATECC608B-TNGTLS"
    manifest[7]["payload"] = b64url(json.dumps(payload).encode())
    manifest[9]["header"]["uniqueId"] = "00"
    out.write_text(json.dumps(manifest))
    code, text, _ = invoke("verify-manifest", str(out), "--manifest-cert", cert)
    assert code == 1
    assert f"Entry 8 ({device_sn(7).lower()}): signature does not verify\n" in text
    assert "Entry 10 (00): payload uniqueId differs from header.uniqueId" in text
    assert text.strip().endswith("1000 entries: 998 verified, 2 failed.")
    other = tmp_path / "other.crt"
    other.write_bytes(pem(pki.signer_cert))
    code, text, _ = invoke("verify-manifest", str(out), "--manifest-cert", str(other))
    assert code == 1 and "unknown: give its certificate with --manifest-cert" in text


PTP_PYTHON = Path(sys.prefix) / "tools-ptp" / "bin" / "python"
PTP_VERIFY = Path(__file__).resolve().parents[1] / "support" / "external" / "ptp_verify.py"
PTP_TYPES = ("ATECC608B", "ATECC508A", "ATECC608A", "")  # "": a v1 request, --model's default


def test_pytrustplatform_decodes_and_verifies_the_manifest(tmp_path: Path, pki: FillPki) -> None:
    # pytrustplatform runs in its own venv (made by `make`: its pins clash with the test extra)
    if not PTP_PYTHON.exists():
        pytest.skip(f"pytrustplatform's venv {PTP_PYTHON.parent.parent} is missing: run make")
    with open_ledger(None, tmp_path) as ledger:
        fill_ledger(ledger, 1000, pki, device_types=PTP_TYPES)
    out = _export_manifest(
        f"sqlite:{tmp_path / 'ledger.sqlite3'}",
        tmp_path,
        pki,
        "--part-number",
        "ATECC608B=ATECC608B-TNGTLS",
    )
    signer_file = tmp_path / "manifest-signer.pem"
    signer_file.write_bytes(pem(pki.manifest_cert))
    done = subprocess.run(
        [str(PTP_PYTHON), str(PTP_VERIFY), str(out), str(signer_file)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(entries) == 1000
    for n, element in enumerate(entries):
        assert element["uniqueId"] == device_sn(n).lower()
        model = PTP_TYPES[n % len(PTP_TYPES)] or "ATECC508A"
        part_number = "ATECC608B-TNGTLS" if model == "ATECC608B" else model
        assert (element["model"], element["partNumber"]) == (model, part_number)
        device = x509.load_der_x509_certificate(base64.b64decode(element["device"]))
        assert device.subject.rfc4514_string() == f"CN=Device {device_sn(n)}"
        assert base64.b64decode(element["signer"]) == der(pki.signer_cert)


# ------------------------------------------------------------------ the manifest reader
class Trickle(io.StringIO):
    """Gives 7 characters per read: entries cut anywhere."""

    def read(self, size: int | None = -1) -> str:
        return super().read(7)


@pytest.mark.parametrize("text", ["[]", " [ ] \n", '[{"a": [1, 2]}, 3, "x,]"]'])
def test_iter_manifest_reads_any_chunking(text: str) -> None:
    assert list(iter_manifest(Trickle(text))) == json.loads(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{}", "a JSON array is expected at character 0"),
        ("[1 2]", "',' or ']' expected"),
        ("[1] x", "text after the array"),
        ('[{"a": ]', "Expecting value at character 7"),
        ("[1,", "Expecting value at character 3"),
    ],
)
def test_iter_manifest_refuses_what_is_not_an_array(text: str, expected: str) -> None:
    with pytest.raises(ManifestError, match=expected.replace("[", r"\[")):
        list(iter_manifest(Trickle(text)))


def test_verifier_reports_a_broken_entry_without_raising(pki: FillPki) -> None:
    verifier = ManifestVerifier([pki.manifest_cert])
    assert verifier.check(3).problems == ("not a JSON object",)
    check = verifier.check(
        {"header": {"uniqueId": "ab"}, "payload": "!!", "protected": "", "signature": ""}
    )
    assert check.unique_id == "ab" and "not a signed secure element" in check.problems[0]


def test_engines_agree(small: str, tmp_path: Path) -> None:
    """The same rows through the ledger API (a guard that list reads every page)."""
    with open_ledger(small, None, read_only=True) as ledger:
        assert isinstance(ledger, Ledger)
        assert len(list(ledger.iter_issuances(page_size=2))) == 6


# ------------------------------------------------------------------ on a terminal
def test_export_progress_on_a_terminal(tmp_path: Path, pki: FillPki) -> None:
    """The real command on a pty: progress lines on stderr while it runs, cleared at the end;
    nothing of it in the file."""
    pexpect = pytest.importorskip("pexpect")
    import sys

    with open_ledger(None, tmp_path) as ledger:
        fill_ledger(ledger, 20000, None)  # > 0.5 s of export even on an idle machine
    key_path, cert_path = pki.write_manifest_signer(tmp_path)
    out = tmp_path / "m.json"
    child = pexpect.spawn(
        str(Path(sys.executable).parent / "provserver"),
        ["records", "export", "--data-dir", str(tmp_path), "--format", "manifest", "-o",
         str(out), "--manifest-key", str(key_path), "--manifest-cert", str(cert_path)],
        encoding="utf-8", timeout=120, dimensions=(24, 200))  # fmt: skip
    try:
        child.expect(r"\rExported (\d+) device\(s\) \(\d+/s\)\.\.\.")
        assert 0 < int(child.match.group(1)) < 20000
        child.expect_exact("\r\x1b[K")
        child.expect_exact(f"Exported 20000 device(s) (manifest) to {out}.")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert len(json.loads(out.read_text())) == 20000


# ------------------------------------------------------------------ a real server's ledger
async def test_records_of_a_real_server(tmp_path: Path, ledger_spec: str) -> None:
    """Devices signed through the real server (pem signer, both engines): list, show, and a
    manifest whose x5c chains verify up to the root CA the server sends."""
    from atcaprov.protocol import CertReply
    from tests.provserver.test_server_ledger import CHAIN, report_for, serving
    from tests.support.server import make_request
    from tests.support.station import Station

    requests = [make_request(CHAIN, n) for n in range(20, 25)]
    async with serving(tmp_path, ledger_spec) as (server, _, data):
        station = await Station.connect(server.port)
        replies = [await station.request(r) for r in requests]
        await station.report(report_for(requests[0]))
        await station.close()
    assert all(isinstance(r, CertReply) for r in replies)
    code, out, _ = invoke(
        "list", "--ledger", ledger_spec, "--data-dir", str(data), "--json", "--state", "installed"
    )
    assert [json.loads(line)["device_sn"] for line in out.splitlines()] == [
        requests[0].device_serial_number.hex().upper()
    ]
    serial = requests[0].device_serial_number.hex()
    code, out, _ = invoke("show", serial, "--ledger", ledger_spec, "--data-dir", str(data))
    assert code == 0 and ": installed (issuance" in out and "installed" in out

    pki = make_fill_pki()
    manifest = _export_manifest(ledger_spec, tmp_path, pki)
    root = tmp_path / "root.der"
    root.write_bytes(CHAIN.root_cert)
    code, out, _ = invoke(
        "verify-manifest",
        str(manifest),
        "--manifest-cert",
        str(tmp_path / "manifest.crt"),
        "--root-ca",
        str(root),
    )
    assert (code, out.strip()) == (0, "5 entries: 5 verified, 0 failed.")
    entries = json.loads(manifest.read_text())
    sent = {r.device_cert for r in replies if isinstance(r, CertReply)}
    for entry in entries:
        payload = json.loads(b64url_decode(entry["payload"]))
        assert base64.b64decode(payload["publicKeySet"]["keys"][0]["x5c"][0]) in sent
