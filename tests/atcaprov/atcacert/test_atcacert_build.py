"""Build, compress and rebuild with the standard defs; refusals with named fields."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509

from atcaprov.atcacert import (
    ATCACERT_E_BAD_PARAMS,
    ATCACERT_E_ELEM_MISSING,
    ATCACERT_E_INVALID_DATE,
    ATCACERT_E_WRONG_CERT_DEF,
    CertDef,
    CertDefError,
    CertError,
    CertLoc,
    DateFormat,
    DeviceLoc,
    DevZone,
    SnSource,
    StdCertElements,
    build_cert,
    cert_def_from_cert,
    compress,
    make_device_template_cert,
    prepare,
    rebuild,
)
from atcaprov.atcacert.build import prepare_base
from atcaprov.atcacert.der import SIG_DER_MAX, SIG_DER_MIN, encode_ecdsa_sig_value, encode_length
from tests.support.certs import der, self_signed
from tests.support.keys import key, pub, signer_fn
from tests.support.pki import ATCACERT_NOW as NOW
from tests.support.pki import SIGNER_ID, atcacert_pki, standard_pki

DEVICE_SN = bytes.fromhex("0123C5D92CA571EEEE")
UTC = timezone.utc


def _issue(year: int = 2024, month: int = 5, day: int = 1, hour: int = 3) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def test_standard_layout() -> None:
    defs = standard_pki().defs
    s, d = defs.signer, defs.device
    assert s.sn_source == SnSource.SIGNER_ID and d.sn_source == SnSource.PUB_KEY_HASH
    assert s.public_key_dev_loc == DeviceLoc(DevZone.DATA, 11, False, 0, 72)
    assert s.comp_cert_dev_loc == DeviceLoc(DevZone.DATA, 12, False, 0, 72)
    assert d.public_key_dev_loc == DeviceLoc(DevZone.DATA, 0, True, 0, 64)
    assert d.comp_cert_dev_loc == DeviceLoc(DevZone.DATA, 10, False, 0, 72)
    assert (s.template_id, d.template_id, d.ca_cert_def) == (1, 2, "g_cert_def_1_signer")
    assert s.expire_years == 28 and d.expire_years == 0
    assert d.expire_date_format == DateFormat.RFC5280_GEN


def test_signer_cert_compresses_to_the_facts_tail_and_rebuilds() -> None:
    p = standard_pki()
    record = compress(p.defs.signer, p.signer_cert)
    assert record[64:] == bytes.fromhex("A99D5CC48B109000")
    rebuilt = rebuild(p.defs.signer, record, pub(p.signer_key), None, ca_public_key=pub(p.root_key))
    assert rebuilt == p.signer_cert
    x509.load_der_x509_certificate(rebuilt).verify_directly_issued_by(
        x509.load_der_x509_certificate(p.root_cert)
    )


def test_padded_public_key_accepted_by_rebuild() -> None:
    p = standard_pki()
    record = compress(p.defs.signer, p.signer_cert)
    padded = b"\0" * 4 + pub(p.signer_key)[:32] + b"\0" * 4 + pub(p.signer_key)[32:]
    assert rebuild(p.defs.signer, record, padded, ca_public_key=pub(p.root_key)) == p.signer_cert


def test_device_build_verify_rebuild() -> None:
    p = standard_pki()
    dk = key(55)
    built = build_cert(
        p.defs.device,
        public_key=pub(dk),
        issue_date=_issue(),
        signer_id=SIGNER_ID,
        sign=signer_fn(p.signer_key),
        ca_public_key=pub(p.signer_key),
    )
    cert = x509.load_der_x509_certificate(built.cert_der)
    cert.verify_directly_issued_by(x509.load_der_x509_certificate(p.signer_cert))
    assert cert.not_valid_after_utc == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert cert.not_valid_before_utc == _issue()
    sn = cert.serial_number.to_bytes(16, "big")
    enc = ((24 << 19) | (5 << 15) | (1 << 10) | (3 << 5) | 0).to_bytes(3, "big")
    want = bytearray(hashlib.sha256(pub(dk) + enc).digest()[:16])
    want[0] = (want[0] & 0x7F) | 0x40
    assert sn == bytes(want)
    assert built.comp_cert == compress(p.defs.device, built.cert_der)
    assert (
        rebuild(p.defs.device, built.comp_cert, pub(dk), DEVICE_SN, ca_public_key=pub(p.signer_key))
        == built.cert_der
    )


def test_prepare_then_finish_for_an_external_signer() -> None:
    p = standard_pki()
    unsigned = prepare(
        p.defs.device,
        public_key=pub(key(56)),
        issue_date=_issue(),
        signer_id=SIGNER_ID,
        ca_public_key=pub(p.signer_key),
    )
    built = unsigned.finish(signer_fn(p.signer_key)(unsigned.tbs_digest))
    tbs = x509.load_der_x509_certificate(built.cert_der).tbs_certificate_bytes
    assert hashlib.sha256(tbs).digest() == unsigned.tbs_digest
    with pytest.raises(CertError) as err:
        unsigned.finish(b"\x01" * 63)
    assert err.value.code == ATCACERT_E_BAD_PARAMS and err.value.field == "signature"


def test_prepare_from_a_kept_base_gives_the_same_bytes() -> None:
    p = standard_pki()
    d = p.defs.device
    base = prepare_base(
        d, issue_date=_issue(), signer_id=SIGNER_ID, ca_public_key=pub(p.signer_key)
    )
    for n in (61, 62, 63):  # several devices from one base
        args = dict(
            public_key=pub(key(n)),
            issue_date=_issue(),
            signer_id=SIGNER_ID,
            device_sn=DEVICE_SN[:8] + bytes([n]),
            ca_public_key=pub(p.signer_key),
        )
        fresh = prepare(d, **args)  # type: ignore[arg-type]
        kept = prepare(d, **args, base=base)  # type: ignore[arg-type]
        assert kept == fresh
    for other in (
        dict(issue_date=_issue(hour=4)),
        dict(signer_id=b"\xab\xcd"),
        dict(ca_public_key=pub(key(64))),
    ):  # a base for other values is not used
        args = {
            **dict(
                public_key=pub(key(61)),
                issue_date=_issue(),
                signer_id=SIGNER_ID,
                ca_public_key=pub(p.signer_key),
            ),
            **other,
        }
        assert prepare(d, **args, base=base) == prepare(d, **args)  # type: ignore[arg-type]
    other_def = replace(d, sn_source=SnSource.DEVICE_SN_HASH)
    args = dict(
        public_key=pub(key(61)),
        issue_date=_issue(),
        signer_id=SIGNER_ID,
        device_sn=DEVICE_SN,
        ca_public_key=pub(p.signer_key),
    )
    assert prepare(other_def, **args, base=base) == prepare(other_def, **args)  # type: ignore[arg-type]
    with pytest.raises(CertError) as err:  # the checks are the base's
        prepare_base(d, issue_date=_issue() + timedelta(minutes=5), signer_id=SIGNER_ID)
    assert err.value.code == ATCACERT_E_INVALID_DATE


def test_record_of_another_definition_is_refused() -> None:
    p = standard_pki()
    record = compress(p.defs.signer, p.signer_cert)
    with pytest.raises(CertError) as err:
        rebuild(p.defs.device, record, pub(p.signer_key))
    assert err.value.code == ATCACERT_E_WRONG_CERT_DEF


def _built(p: object = None) -> tuple[CertDef, bytes]:
    pk = standard_pki()
    built = build_cert(
        pk.defs.device,
        public_key=pub(key(57)),
        issue_date=_issue(),
        signer_id=SIGNER_ID,
        sign=signer_fn(pk.signer_key),
    )
    return pk.defs.device, built.cert_der


def test_compress_takes_2032_in_format_1_and_refuses_1999() -> None:
    d, der = _built()
    loc = d.std_cert_elements.issue_date
    later = der[: loc.offset] + b"320501030000Z" + der[loc.end :]
    record = compress(d, later)
    assert record[70] & 0x0F == 1 and record[71] == 0x40  # year 32: bit 5 -> byte 71 bit 6
    earlier = der[: loc.offset] + b"990501030000Z" + der[loc.end :]
    with pytest.raises(CertError) as err:
        compress(d, earlier)
    assert err.value.code == ATCACERT_E_INVALID_DATE and err.value.field == "issue_date"
    assert "1999" in str(err.value) and "2000-2127" in str(err.value)


@pytest.mark.parametrize("year", [1999, 2128])
def test_build_refuses_issue_years_no_format_holds(year: int) -> None:
    d = standard_pki().defs.device
    with pytest.raises(CertError) as err:
        prepare(d, public_key=pub(key(58)), issue_date=_issue(year), signer_id=SIGNER_ID)
    assert err.value.code == ATCACERT_E_INVALID_DATE
    assert err.value.field == "issue_date" and "2000-2127" in str(err.value)


def test_build_refuses_minutes() -> None:
    d = standard_pki().defs.device
    with pytest.raises(CertError) as err:
        prepare(
            d,
            public_key=pub(key(58)),
            issue_date=_issue() + timedelta(minutes=5),
            signer_id=SIGNER_ID,
        )
    assert err.value.field == "issue_date" and "hours" in str(err.value)


def test_compress_refuses_an_expire_date_it_cannot_express() -> None:
    d, der = _built()
    loc = d.std_cert_elements.expire_date
    bad = der[: loc.offset] + b"20340501030000Z" + der[loc.end :]
    with pytest.raises(CertError) as err:
        compress(d, bad)
    assert err.value.code == ATCACERT_E_INVALID_DATE and err.value.field == "expire_date"


def test_compress_refuses_a_certificate_of_another_template() -> None:
    d, der = _built()
    name_at = der.index(b"Test Device")
    bad = der[:name_at] + b"Best" + der[name_at + 4 :]
    with pytest.raises(CertError) as err:
        compress(d, bad)
    assert err.value.code == ATCACERT_E_WRONG_CERT_DEF and str(name_at) in str(err.value)


def test_feb_29_plus_years_is_refused_by_build() -> None:
    p = atcacert_pki(device_expire_years=10)
    with pytest.raises(CertError) as err:
        prepare(
            p.defs.device,
            public_key=pub(key(59)),
            issue_date=_issue(2024, 2, 29),
            signer_id=SIGNER_ID,
        )
    assert err.value.field == "expire_date" and "2034-02-29" in str(err.value)


def test_device_def_with_expire_years() -> None:
    p = atcacert_pki(device_expire_years=10)
    assert p.defs.device.expire_years == 10
    assert p.defs.device.expire_date_format == DateFormat.RFC5280_UTC
    built = build_cert(
        p.defs.device,
        public_key=pub(key(60)),
        issue_date=_issue(2030, 12, 31, 23),
        signer_id=SIGNER_ID,
        sign=signer_fn(p.signer_key),
        ca_public_key=pub(p.signer_key),
    )
    cert = x509.load_der_x509_certificate(built.cert_der)
    assert cert.not_valid_after_utc == datetime(2040, 12, 31, 23, tzinfo=UTC)
    assert (
        rebuild(p.defs.device, built.comp_cert, pub(key(60)), ca_public_key=pub(p.signer_key))
        == built.cert_der
    )


def test_device_sn_source() -> None:
    p = standard_pki()
    template = make_device_template_cert(p.signer_cert, now=NOW, sn_size=10)
    d = cert_def_from_cert(
        template,
        template_id=3,
        chain_id=0,
        sn_source=SnSource.DEVICE_SN,
        private_key_slot=0,
        public_key_dev_loc=DeviceLoc(DevZone.DATA, 0, True, 0, 64),
        comp_cert_dev_loc=DeviceLoc(DevZone.DATA, 10, False, 0, 72),
    )
    built = build_cert(
        d,
        public_key=pub(key(61)),
        issue_date=_issue(),
        signer_id=SIGNER_ID,
        device_sn=DEVICE_SN,
        sign=signer_fn(p.signer_key),
        ca_public_key=pub(p.signer_key),
    )
    cert = x509.load_der_x509_certificate(built.cert_der)
    assert cert.serial_number.to_bytes(10, "big") == b"\x40" + DEVICE_SN
    assert (
        rebuild(d, built.comp_cert, pub(key(61)), DEVICE_SN, ca_public_key=pub(p.signer_key))
        == built.cert_der
    )
    with pytest.raises(CertError) as err:
        rebuild(d, built.comp_cert, pub(key(61)), None)
    assert err.value.field == "device_sn"
    locs = d.device_locations()
    assert DeviceLoc(DevZone.CONFIG, 0, False, 0, 32) in locs


def test_device_sn_source_with_16_byte_template_sn_is_rejected() -> None:
    p = standard_pki()
    template = make_device_template_cert(p.signer_cert, now=NOW, sn_size=16)
    with pytest.raises(CertDefError) as err:
        cert_def_from_cert(
            template,
            template_id=3,
            chain_id=0,
            sn_source=SnSource.DEVICE_SN,
            private_key_slot=0,
            public_key_dev_loc=DeviceLoc(DevZone.DATA, 0, True, 0, 64),
            comp_cert_dev_loc=DeviceLoc(DevZone.DATA, 10, False, 0, 72),
        )
    assert err.value.field == "std_cert_elements[cert_sn]"
    assert "change length" in str(err.value)


def test_utctime_vs_generalizedtime_is_rejected() -> None:
    d = standard_pki().defs.device  # expire date is GeneralizedTime in its template
    with pytest.raises(CertDefError) as err:
        replace(d, expire_date_format=DateFormat.RFC5280_UTC)
    assert err.value.field == "std_cert_elements[expire_date]"


def test_device_locations_are_rounded_and_merged() -> None:
    defs = standard_pki().defs
    assert defs.device.device_locations() == [
        DeviceLoc(DevZone.DATA, 10, False, 0, 96),
        DeviceLoc(DevZone.DATA, 0, True, 0, 64),
    ]
    assert defs.signer.device_locations() == [
        DeviceLoc(DevZone.DATA, 12, False, 0, 96),
        DeviceLoc(DevZone.DATA, 11, False, 0, 96),
    ]
    merged = replace(
        defs.signer,
        cert_sn_dev_loc=DeviceLoc(DevZone.DATA, 12, False, 60, 3),
        sn_source=SnSource.STORED,
    )
    assert merged.device_locations()[0] == DeviceLoc(DevZone.DATA, 12, False, 0, 96)


def test_stored_sn_needs_cert_sn() -> None:
    p = standard_pki()
    d = replace(
        p.defs.signer,
        sn_source=SnSource.STORED,
        cert_sn_dev_loc=DeviceLoc(DevZone.DATA, 14, False, 0, 3),
    )
    record = compress(d, p.signer_cert)
    with pytest.raises(CertError) as err:
        rebuild(d, record, pub(p.signer_key), ca_public_key=pub(p.root_key))
    assert err.value.field == "cert_sn"
    sn = p.signer_cert[15:18]
    assert (
        rebuild(d, record, pub(p.signer_key), ca_public_key=pub(p.root_key), cert_sn=sn)
        == p.signer_cert
    )


def _plain_cert(not_before: datetime, not_after: datetime, cn: str = "X FFFF") -> bytes:
    return der(
        self_signed(cn, key(77), serial=0x401234, not_before=not_before, not_after=not_after)
    )


def _from(der: bytes) -> CertDef:
    return cert_def_from_cert(
        der,
        template_id=1,
        chain_id=0,
        sn_source=SnSource.SIGNER_ID,
        private_key_slot=0,
        public_key_dev_loc=DeviceLoc(DevZone.DATA, 11, False, 0, 72),
        comp_cert_dev_loc=DeviceLoc(DevZone.DATA, 12, False, 0, 72),
    )


def test_validity_over_127_years_is_refused() -> None:
    with pytest.raises(CertDefError) as err:
        _from(_plain_cert(_issue(2010), _issue(2138)))
    assert err.value.code == ATCACERT_E_INVALID_DATE and err.value.field == "expire_years"
    assert "127" in str(err.value)
    assert _from(_plain_cert(_issue(2010), _issue(2137))).expire_years == 127
    assert _from(_plain_cert(_issue(2010), _issue(2042))).expire_years == 32


def test_expire_years_field_limit_is_127() -> None:
    d = standard_pki().defs.device
    assert replace(d, expire_years=127).expire_years == 127
    with pytest.raises(CertDefError) as err:
        replace(d, expire_years=128)
    assert err.value.field == "expire_years" and "0-127" in str(err.value)


def test_irregular_expire_date_is_refused() -> None:
    with pytest.raises(CertDefError) as err:
        _from(_plain_cert(_issue(2020), _issue(2025) + timedelta(days=1)))
    assert err.value.field == "expire_date"


def _fake_template(tbs_size: int) -> tuple[bytes, CertLoc, CertLoc]:
    tbs = b"\x30" + encode_length(tbs_size) + b"\x00" * tbs_size
    alg = bytes.fromhex("300A06082A8648CE3D040302")
    sig = encode_ecdsa_sig_value(b"\x11" * 64)
    content = tbs + alg + sig
    head = b"\x30" + encode_length(len(content))
    return (
        head + content,
        CertLoc(len(head), len(tbs)),
        CertLoc(len(head) + len(tbs) + len(alg), len(sig)),
    )


def test_outer_der_length_that_could_change_is_rejected() -> None:
    """Near 128 / 256 bytes a longer or shorter signature flips the number of length bytes."""
    d = standard_pki().defs.signer
    outcomes = set()
    for tbs_size in range(20, 200):
        template, tbs, sig = _fake_template(tbs_size)
        fixed = sig.offset - tbs.offset  # the tbsCertificate starts right after the header
        flips = len(encode_length(fixed + SIG_DER_MIN)) != len(encode_length(fixed + SIG_DER_MAX))
        try:
            replace(
                d,
                cert_template=template,
                tbs_cert_loc=tbs,
                std_cert_elements=StdCertElements(signature=sig),
                expire_years=0,
                sn_source=SnSource.PUB_KEY_HASH,
            )
            outcomes.add("ok")
            assert not flips, tbs_size
        except CertDefError as exc:
            outcomes.add("rejected")
            assert flips, tbs_size
            assert exc.field == "std_cert_elements[signature]"
    assert outcomes == {"ok", "rejected"}


def test_missing_element_data() -> None:
    p = standard_pki()
    d = p.defs.signer
    from atcaprov.atcacert import CertElement

    with_el = replace(
        d,
        cert_elements=(
            CertElement(
                "IssueDate",
                DeviceLoc(DevZone.DATA, 14, False, 22, 13),
                d.std_cert_elements.issue_date,
            ),
        ),
    )
    record = compress(with_el, p.signer_cert)
    with pytest.raises(CertError) as err:
        rebuild(with_el, record, pub(p.signer_key))
    assert err.value.code == ATCACERT_E_ELEM_MISSING and err.value.field == "IssueDate"
