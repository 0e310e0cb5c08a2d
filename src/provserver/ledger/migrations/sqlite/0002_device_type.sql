-- The chip model each issuance was signed for (ATECC508A, ATECC608A, ATECC608B), as a
-- CertRequest2 (protocol version 2) states it; '' when the request did not say (a version-1
-- CertRequest, or an issuance recorded before this migration).
ALTER TABLE issuances ADD COLUMN device_type TEXT NOT NULL DEFAULT '';
