-- The issuance ledger, first schema (SQLite). Times are ISO 8601 UTC text ("...Z"), serial
-- numbers, keys and key ids upper-case hex, certificates DER.
CREATE TABLE ledger_info (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    server TEXT NOT NULL,
    data_dir TEXT NOT NULL,
    stamp TEXT NOT NULL,
    started_at TEXT NOT NULL,
    stopped_at TEXT,
    note TEXT NOT NULL DEFAULT ''
);

-- Signer and root certificates, stored once each.
CREATE TABLE ca_certs (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    der BLOB NOT NULL
);

CREATE TABLE devices (
    device_sn TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    current_issuance INTEGER,
    first_seen TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- A public key belongs to one serial number.
CREATE TABLE key_owners (
    public_key TEXT PRIMARY KEY,
    device_sn TEXT NOT NULL
);

CREATE TABLE issuances (
    id INTEGER PRIMARY KEY,
    device_sn TEXT NOT NULL REFERENCES devices (device_sn),
    public_key TEXT NOT NULL,
    issuer_key_id TEXT NOT NULL,
    signer_id TEXT NOT NULL,
    cert_sn TEXT NOT NULL,
    state TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    signer TEXT NOT NULL,
    station TEXT NOT NULL,
    run_id INTEGER NOT NULL REFERENCES runs (id),
    device_cert BLOB NOT NULL,
    signer_cert_id INTEGER NOT NULL REFERENCES ca_certs (id),
    root_cert_id INTEGER REFERENCES ca_certs (id),
    -- RFC 5280: a certificate serial number is unique per issuer
    CONSTRAINT issuances_issuer_cert_sn UNIQUE (issuer_key_id, cert_sn)
);
CREATE INDEX issuances_device ON issuances (device_sn, id);
CREATE INDEX issuances_key ON issuances (public_key, id);
CREATE INDEX issuances_issued_at ON issuances (issued_at);
CREATE INDEX issuances_run ON issuances (run_id, id);

CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    kind TEXT NOT NULL,
    device_sn TEXT NOT NULL,
    issuance_id INTEGER REFERENCES issuances (id),
    run_id INTEGER NOT NULL REFERENCES runs (id),
    station TEXT NOT NULL,
    signer TEXT NOT NULL,
    public_key TEXT NOT NULL,
    cert_sn TEXT NOT NULL,
    code TEXT NOT NULL DEFAULT '',
    stage TEXT NOT NULL DEFAULT '',
    part_state TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_device ON events (device_sn, id);
CREATE INDEX events_run ON events (run_id, id);
CREATE INDEX events_time ON events (time);
