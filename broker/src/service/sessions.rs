//! Playback sessions: a token that released a key before it expired keeps
//! releasing keys after `exp` while playback goes on (a key fetched at least
//! every `idle`), up to `iat + max`, unless revoked. This keeps a long film
//! playing when its token was baked into the playlist, without long-lived
//! tokens: one that was never used still dies at `exp`.
//!
//! Sessions live in memory and are written to the database in batches, so a
//! broker that never saw a session can still find it (one lookup, only for
//! an expired token).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use foldhash::quality::RandomState;

use crate::model::SessionRecord;
use crate::token::Claims;

const SHARDS: usize = 16;
/// How long "not in the database" is believed before asking again.
const ABSENT_FOR: std::time::Duration = std::time::Duration::from_secs(10);
/// A session's last use is written again once it moved this much.
const PERSIST_EVERY: i64 = 60;

enum Local {
    Known {
        record: SessionRecord,
        persisted_use: DateTime<Utc>,
    },
    Absent(Instant),
}

pub struct Sessions {
    shards: Vec<Mutex<HashMap<String, Local, RandomState>>>,
    hasher: RandomState,
    pub idle: Duration,
    pub max: Duration,
}

/// What memory knows about an expired token's session.
pub enum Lookup {
    Alive,
    Dead,
    /// Not in memory: ask the database.
    Unknown,
}

impl Sessions {
    pub fn new(idle: Duration, max: Duration) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
            hasher: RandomState::default(),
            idle,
            max,
        }
    }

    pub fn enabled(&self) -> bool {
        self.idle > Duration::zero() && self.max > Duration::zero()
    }

    fn shard(&self, jti: &str) -> std::sync::MutexGuard<'_, HashMap<String, Local, RandomState>> {
        let i = (self.hasher.hash_one(jti) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn alive(&self, r: &SessionRecord, now: DateTime<Utc>) -> bool {
        now <= r.ends_at && now <= r.last_used_at + self.idle
    }

    /// Records a key release. Returns the record when it should be written.
    pub fn touch(&self, claims: &Claims, now: DateTime<Utc>) -> Option<SessionRecord> {
        if !self.enabled() {
            return None;
        }
        let mut shard = self.shard(&claims.jti);
        match shard.get_mut(&claims.jti) {
            Some(Local::Known {
                record,
                persisted_use,
            }) => {
                record.last_used_at = record.last_used_at.max(now);
                if (record.last_used_at - *persisted_use).num_seconds() >= PERSIST_EVERY {
                    *persisted_use = record.last_used_at;
                    return Some(record.clone());
                }
                None
            }
            _ => {
                let ends_at = DateTime::from_timestamp(claims.iat, 0).unwrap_or(now) + self.max;
                let record = SessionRecord {
                    jti: claims.jti.clone(),
                    viewer: claims.sub.clone(),
                    started_at: now,
                    last_used_at: now,
                    ends_at,
                };
                shard.insert(
                    claims.jti.clone(),
                    Local::Known {
                        record: record.clone(),
                        persisted_use: now,
                    },
                );
                Some(record)
            }
        }
    }

    pub fn lookup(&self, jti: &str, now: DateTime<Utc>, clock: Instant) -> Lookup {
        match self.shard(jti).get(jti) {
            Some(Local::Known { record, .. }) if self.alive(record, now) => Lookup::Alive,
            Some(Local::Known { .. }) => Lookup::Dead,
            Some(Local::Absent(at)) if clock.duration_since(*at) < ABSENT_FOR => Lookup::Dead,
            _ => Lookup::Unknown,
        }
    }

    /// Stores what the database said about `jti`; `true` if the session is alive.
    pub fn learn(
        &self,
        jti: &str,
        found: Option<SessionRecord>,
        now: DateTime<Utc>,
        clock: Instant,
    ) -> bool {
        let mut shard = self.shard(jti);
        match found {
            Some(record) => {
                let alive = self.alive(&record, now);
                let persisted_use = record.last_used_at;
                shard.insert(
                    jti.to_owned(),
                    Local::Known {
                        record,
                        persisted_use,
                    },
                );
                alive
            }
            None => {
                shard.insert(jti.to_owned(), Local::Absent(clock));
                false
            }
        }
    }

    /// Forgets sessions that ended and stale "absent" notes.
    pub fn sweep(&self, now: DateTime<Utc>, clock: Instant) {
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            shard.retain(|_, l| match l {
                Local::Known { record, .. } => self.alive(record, now),
                Local::Absent(at) => clock.duration_since(*at) < ABSENT_FOR,
            });
        }
    }
}
