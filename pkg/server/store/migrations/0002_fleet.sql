-- The fleet server's second schema: tags and groups, the history of status
-- reports, releases, rollouts. Portable SQL, as the first migration;
-- status_reports.id and rollouts.id are, like audit_log.id, INTEGER PRIMARY
-- KEY: numbered by the database, an identity column on PostgreSQL.

CREATE TABLE device_tags (
	device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
	tag       TEXT NOT NULL,
	PRIMARY KEY (device_id, tag)
);

CREATE INDEX device_tags_tag ON device_tags (tag);

-- A group is a static set of devices (filter NULL, members in
-- group_members) or a named filter.
CREATE TABLE device_groups (
	name    TEXT PRIMARY KEY,
	filter  TEXT,
	created BIGINT NOT NULL
);

CREATE TABLE group_members (
	group_name TEXT NOT NULL REFERENCES device_groups (name) ON DELETE CASCADE,
	device_id  TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
	PRIMARY KEY (group_name, device_id)
);

CREATE INDEX group_members_device ON group_members (device_id);

-- Every status report, in order: a device's timeline.
CREATE TABLE status_reports (
	id        INTEGER PRIMARY KEY,
	device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
	at        BIGINT NOT NULL,
	status    TEXT NOT NULL
);

CREATE INDEX status_reports_device ON status_reports (device_id, id);

-- A release registered from a repository; indexes lists the index files
-- (JSON array of paths under the repository's indexes/) its images use,
-- which garbage collection reads for the chunks it keeps.
CREATE TABLE releases (
	board      TEXT NOT NULL,
	version    TEXT NOT NULL,
	repository TEXT NOT NULL,
	created    BIGINT NOT NULL,
	indexes    TEXT NOT NULL,
	PRIMARY KEY (board, version)
);

CREATE TABLE rollouts (
	id                INTEGER PRIMARY KEY,
	board             TEXT NOT NULL,
	version           TEXT NOT NULL,
	target            TEXT NOT NULL,
	waves             TEXT NOT NULL,
	success_threshold DOUBLE PRECISION NOT NULL,
	error_threshold   DOUBLE PRECISION NOT NULL,
	state             TEXT NOT NULL CHECK (state IN ('created', 'running', 'paused', 'completed', 'halted', 'cancelled')),
	-- The highest wave open, from 0.
	open_wave         INTEGER NOT NULL,
	created           BIGINT NOT NULL,
	updated           BIGINT NOT NULL,
	-- Why it halted, or who paused or cancelled it.
	reason            TEXT NOT NULL
);

CREATE INDEX rollouts_release ON rollouts (board, version);

CREATE TABLE rollout_devices (
	rollout_id INTEGER NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
	device_id  TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
	wave       INTEGER NOT NULL,
	state      TEXT NOT NULL CHECK (state IN ('assigned', 'installing', 'succeeded', 'failed')),
	updated    BIGINT NOT NULL,
	PRIMARY KEY (rollout_id, device_id)
);

CREATE INDEX rollout_devices_device ON rollout_devices (device_id);
