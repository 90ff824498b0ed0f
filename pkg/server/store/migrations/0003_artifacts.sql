-- Files attached to a release for hawkBit DDI clients (a .swu for
-- swupdate), stored by SHA-256 in the server's artifact store. Portable
-- SQL, as the first migration.

CREATE TABLE release_artifacts (
	board   TEXT NOT NULL,
	version TEXT NOT NULL,
	name    TEXT NOT NULL,
	size    BIGINT NOT NULL,
	sha256  TEXT NOT NULL,
	sha1    TEXT NOT NULL,
	md5     TEXT NOT NULL,
	created BIGINT NOT NULL,
	PRIMARY KEY (board, version, name),
	FOREIGN KEY (board, version) REFERENCES releases (board, version) ON DELETE CASCADE
);
