-- Risk control, embedded SQLite backend. As migrations/postgres/0008_risk.sql.

ALTER TABLE broker_viewers ADD COLUMN max_streams INTEGER;
ALTER TABLE broker_viewers ADD COLUMN max_addresses_per_token INTEGER;

CREATE TABLE broker_streams (
    id         BLOB PRIMARY KEY,
    viewer     TEXT NOT NULL,
    stream     TEXT NOT NULL,
    token_id   TEXT NOT NULL,
    address    TEXT,
    started_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    UNIQUE (viewer, stream)
);
CREATE INDEX broker_streams_last_seen ON broker_streams (last_seen);

CREATE TABLE broker_token_addresses (
    token_id   TEXT NOT NULL,
    address    TEXT NOT NULL,
    viewer     TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    PRIMARY KEY (token_id, address)
);
CREATE INDEX broker_token_addresses_viewer ON broker_token_addresses (viewer, last_seen);
CREATE INDEX broker_token_addresses_last_seen ON broker_token_addresses (last_seen);

CREATE TABLE broker_token_videos (
    token_id   TEXT NOT NULL,
    video_id   TEXT NOT NULL,
    viewer     TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    PRIMARY KEY (token_id, video_id)
);
CREATE INDEX broker_token_videos_viewer ON broker_token_videos (viewer, first_seen);
CREATE INDEX broker_token_videos_first_seen ON broker_token_videos (first_seen);

CREATE TABLE broker_video_policies (
    video_id        TEXT PRIMARY KEY,
    allowed_origins TEXT NOT NULL,
    updated_at      INTEGER NOT NULL
);
