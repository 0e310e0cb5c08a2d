-- The index of issuances by public key is not used by any query: the lifecycle's checks find a
-- device's issuances by its serial number (issuances_device) and a key's owner in key_owners.
-- Every signing inserted into it a random entry of 128 hex characters: dropping it cuts what a
-- commit writes from about 37 to 23 KiB per signing (SQLite, 200,000 devices; bench figures
-- in docs/benchmarks.md).
DROP INDEX IF EXISTS issuances_key;
