-- The fleet server's first schema: devices and their attributes, operator
-- tokens, the audit log.
--
-- Portable SQL: it runs on SQLite and on PostgreSQL. Times are BIGINT Unix
-- nanoseconds (NULL for never), so both compare them the same way and no
-- driver converts time zones. The one difference is audit_log.id: SQLite
-- numbers an INTEGER PRIMARY KEY itself; on PostgreSQL the store's dialect
-- rewrites "INTEGER PRIMARY KEY" to "BIGINT GENERATED ALWAYS AS IDENTITY
-- PRIMARY KEY" (dialect.identity), so write that phrase for a column the
-- database numbers, and only for one.

CREATE TABLE devices (
	id                TEXT PRIMARY KEY,
	board             TEXT NOT NULL,
	token_sha256      TEXT NOT NULL UNIQUE,
	token_expires     BIGINT,
	revoked_at        BIGINT,
	created           BIGINT NOT NULL,
	last_seen         BIGINT,
	installed_version TEXT NOT NULL,
	-- The last status report, whole, as JSON (api.Status); phase is kept
	-- apart to search by.
	phase             TEXT,
	status            TEXT
);

CREATE TABLE device_attributes (
	device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
	name      TEXT NOT NULL,
	value     TEXT NOT NULL,
	PRIMARY KEY (device_id, name)
);

CREATE INDEX device_attributes_name_value ON device_attributes (name, value);

CREATE TABLE operator_tokens (
	token_sha256 TEXT PRIMARY KEY,
	name         TEXT NOT NULL UNIQUE,
	role         TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
	created      BIGINT NOT NULL,
	revoked_at   BIGINT
);

CREATE TABLE audit_log (
	id     INTEGER PRIMARY KEY,
	at     BIGINT NOT NULL,
	actor  TEXT NOT NULL,
	action TEXT NOT NULL,
	target TEXT NOT NULL,
	detail TEXT NOT NULL
);
