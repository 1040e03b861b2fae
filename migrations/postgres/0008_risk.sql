-- Risk control (README "Risk control"): per-viewer overrides of the stream
-- and address limits, the streams and addresses each token was seen with,
-- the videos it fetched, and per-video playback restrictions.

ALTER TABLE broker_viewers ADD COLUMN max_streams INTEGER;
ALTER TABLE broker_viewers ADD COLUMN max_addresses_per_token INTEGER;

-- A viewer's playback streams: a device (the token's `device` claim) or a
-- token in use. Idle ones are deleted by whoever counts them next.
CREATE TABLE broker_streams (
    id         UUID PRIMARY KEY,
    viewer     TEXT NOT NULL,
    stream     TEXT NOT NULL,
    token_id   TEXT NOT NULL,
    address    TEXT,
    started_at TIMESTAMPTZ NOT NULL,
    last_seen  TIMESTAMPTZ NOT NULL,
    CONSTRAINT broker_streams_viewer_stream UNIQUE (viewer, stream)
);
CREATE INDEX broker_streams_last_seen ON broker_streams (last_seen);

-- The address units (an IPv4 /24 or an IPv6 /64) each token was used from.
CREATE TABLE broker_token_addresses (
    token_id   TEXT NOT NULL,
    address    TEXT NOT NULL,
    viewer     TEXT NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL,
    last_seen  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (token_id, address)
);
CREATE INDEX broker_token_addresses_viewer ON broker_token_addresses (viewer, last_seen);
CREATE INDEX broker_token_addresses_last_seen ON broker_token_addresses (last_seen);

-- The videos each token fetched keys or playlists for.
CREATE TABLE broker_token_videos (
    token_id   TEXT NOT NULL,
    video_id   TEXT NOT NULL,
    viewer     TEXT NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (token_id, video_id)
);
CREATE INDEX broker_token_videos_viewer ON broker_token_videos (viewer, first_seen);
CREATE INDEX broker_token_videos_first_seen ON broker_token_videos (first_seen);

-- Page origins a video may be played from (JSON array; "none": no Origin or
-- Referer). No row: only the broker-wide list applies.
CREATE TABLE broker_video_policies (
    video_id        TEXT PRIMARY KEY,
    allowed_origins JSONB NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
