"""atcacert: Microchip's compressed certificates, byte-exact.

Owns certificate definitions (``CertDef``, the typed ``atcacert_def_t``), the 72-byte
compressed record, the date formats, serial-number sources, build/rebuild/compress, and the C
source files that carry definitions (parse with ``load_cert_defs``, write with
``cert_def_to_c``, create from a real certificate with ``cert_def_from_cert``).
``CertDef`` is a pure data model; the operations take it as first argument:
``compress(cert_def, cert_der)``, ``rebuild(cert_def, comp_cert, public_key, ...)``,
``prepare(cert_def, ...)``, ``build_cert(cert_def, ..., sign=...)``.
Sans-IO throughout: functions take text/bytes and ``now`` where a date is needed.

Modules: ``errors`` (codes), ``dates``, ``der``, ``keys``, ``sn``, ``compressed``, ``certdef``
(model + validation + device locations), ``build`` (compress/rebuild/prepare/build_cert),
``csource`` (C parser), ``loader`` (C -> CertDef), ``cwriter`` (CertDef -> C), ``fromcert``
(cert2certdef), ``standard`` (the standard signer/device pair).
"""

from .build import (
    BuiltCert,
    SignFn,
    UnsignedCert,
    build_cert,
    compress,
    get_signer_id,
    prepare,
    rebuild,
    tbs_digest,
)
from .certdef import (
    CertDef,
    CertElement,
    CertLoc,
    CertType,
    DeviceLoc,
    DevZone,
    StdCertElement,
    StdCertElements,
    device_locations,
)
from .compressed import COMP_CERT_SIZE, CompCert
from .csource import CFile, parse_c_source
from .cwriter import cert_def_to_c
from .dates import (
    COMP_EXPIRE_YEARS_MAX,
    COMP_ISSUE_YEAR_MAX,
    COMP_ISSUE_YEAR_MIN,
    CertDate,
    CompressedDates,
    DateFormat,
    compressed_format_for,
    decode_compressed_dates,
    decode_date,
    encode_compressed_dates,
    encode_date,
    expire_date_for,
    max_date,
)
from .errors import (
    ATCACERT_E_BAD_CERT,
    ATCACERT_E_BAD_PARAMS,
    ATCACERT_E_BUFFER_TOO_SMALL,
    ATCACERT_E_DECODING_ERROR,
    ATCACERT_E_ELEM_MISSING,
    ATCACERT_E_ELEM_OUT_OF_BOUNDS,
    ATCACERT_E_ERROR,
    ATCACERT_E_INVALID_DATE,
    ATCACERT_E_SUCCESS,
    ATCACERT_E_UNEXPECTED_ELEM_SIZE,
    ATCACERT_E_UNIMPLEMENTED,
    ATCACERT_E_VERIFY_FAILED,
    ATCACERT_E_WRONG_CERT_DEF,
    AtcacertCode,
    CertDefError,
    CertError,
    CSourceError,
)
from .fromcert import cert_def_from_cert
from .keys import (
    key_id,
    pad_public_key,
    public_key_bytes,
    public_key_object,
    raw_public_key,
    unpad_public_key,
)
from .loader import cert_defs_of, load_cert_defs
from .sn import SnSource, generate_cert_sn
from .standard import (
    StandardCertDefs,
    hour_floor,
    make_device_template_cert,
    make_root_cert,
    make_signer_cert,
    make_standard_cert_defs,
)

__all__ = [
    "ATCACERT_E_BAD_CERT",
    "ATCACERT_E_BAD_PARAMS",
    "ATCACERT_E_BUFFER_TOO_SMALL",
    "ATCACERT_E_DECODING_ERROR",
    "ATCACERT_E_ELEM_MISSING",
    "ATCACERT_E_ELEM_OUT_OF_BOUNDS",
    "ATCACERT_E_ERROR",
    "ATCACERT_E_INVALID_DATE",
    "ATCACERT_E_SUCCESS",
    "ATCACERT_E_UNEXPECTED_ELEM_SIZE",
    "ATCACERT_E_UNIMPLEMENTED",
    "ATCACERT_E_VERIFY_FAILED",
    "ATCACERT_E_WRONG_CERT_DEF",
    "COMP_CERT_SIZE",
    "COMP_EXPIRE_YEARS_MAX",
    "COMP_ISSUE_YEAR_MAX",
    "COMP_ISSUE_YEAR_MIN",
    "AtcacertCode",
    "BuiltCert",
    "CFile",
    "CSourceError",
    "CertDate",
    "CertDef",
    "CertDefError",
    "CertElement",
    "CertError",
    "CertLoc",
    "CertType",
    "CompCert",
    "CompressedDates",
    "DateFormat",
    "DevZone",
    "DeviceLoc",
    "SignFn",
    "SnSource",
    "StandardCertDefs",
    "StdCertElement",
    "StdCertElements",
    "UnsignedCert",
    "build_cert",
    "cert_def_from_cert",
    "cert_def_to_c",
    "cert_defs_of",
    "compress",
    "compressed_format_for",
    "decode_compressed_dates",
    "decode_date",
    "device_locations",
    "encode_compressed_dates",
    "encode_date",
    "expire_date_for",
    "generate_cert_sn",
    "get_signer_id",
    "hour_floor",
    "key_id",
    "load_cert_defs",
    "make_device_template_cert",
    "make_root_cert",
    "make_signer_cert",
    "make_standard_cert_defs",
    "max_date",
    "pad_public_key",
    "parse_c_source",
    "prepare",
    "public_key_bytes",
    "public_key_object",
    "raw_public_key",
    "rebuild",
    "tbs_digest",
    "unpad_public_key",
]
