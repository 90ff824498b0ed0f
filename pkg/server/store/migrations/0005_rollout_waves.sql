-- Each wave's devices counted by state, kept with every move of a device
-- in its rollout, so that the rollout's policy, run after every status
-- report that moves one, reads a row per wave instead of counting the
-- rollout's devices (a million, in a rollout over the whole fleet).
-- Portable SQL, as the first migration. A wave no device fills has no row.

CREATE TABLE rollout_waves (
	rollout_id BIGINT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
	wave       INTEGER NOT NULL,
	assigned   INTEGER NOT NULL,
	installing INTEGER NOT NULL,
	succeeded  INTEGER NOT NULL,
	failed     INTEGER NOT NULL,
	PRIMARY KEY (rollout_id, wave)
);

INSERT INTO rollout_waves (rollout_id, wave, assigned, installing, succeeded, failed)
SELECT rollout_id, wave,
	SUM(CASE WHEN state = 'assigned' THEN 1 ELSE 0 END),
	SUM(CASE WHEN state = 'installing' THEN 1 ELSE 0 END),
	SUM(CASE WHEN state = 'succeeded' THEN 1 ELSE 0 END),
	SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END)
FROM rollout_devices GROUP BY rollout_id, wave;
