-- Client certificates as a second device identity, and operator tokens
-- that expire. Portable SQL, as the first migration: both databases add a
-- nullable column the same way.

-- The SHA-256 of the DER certificate a device enrolled with (POST
-- /api/v1/device/enroll), lower-case hex; NULL for a device an operator
-- registered. A device enrolled by certificate still has a token_sha256:
-- the hash of a token made at enrollment and given to no one.
ALTER TABLE devices ADD COLUMN cert_sha256 TEXT;

-- When an operator token stops being accepted; NULL for never.
ALTER TABLE operator_tokens ADD COLUMN expires BIGINT;
