//! Revocations held in memory, so checking one costs no database round trip.
//!
//! Every stored change has a `seq` (higher is later, in commit order). The
//! set learns changes from this process's own writes, from change
//! notifications of other processes (one subject re-read), and from a
//! periodic incremental read of everything after the highest seq it has seen
//! (`watermark`). Each subject remembers the seq of the state it holds, and
//! lifts leave a tombstone for a while, so a state read earlier can never
//! overwrite a later one, whatever order the reads come back in. A full
//! reload (at start, or when notifications may have been missed) is built
//! off the async runtime and keeps whatever newer arrived while it ran.
//! Entries are forgotten when they expire, so the set stays bounded.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use crate::model::{Revocation, RevocationKind, RevocationRow};
use crate::token::Claims;

/// How long a tombstone guards a lifted subject against older reads: far
/// longer than any read takes.
const TOMBSTONE_GUARD: Duration = Duration::from_secs(300);

/// The seq a subject's state was set at, and when it stops mattering.
#[derive(Debug, Clone, Copy)]
struct Mark {
    seq: i64,
    /// Unix seconds; `None`: until lifted.
    expires: Option<i64>,
}

/// Looked up on every key request: foldhash, seeded per process.
type Seeded = foldhash::quality::RandomState;

#[derive(Default)]
struct Sets {
    tokens: HashMap<String, Mark, Seeded>,
    /// Viewer → (tokens issued at or before this Unix second are refused, mark).
    viewers: HashMap<String, (i64, Mark), Seeded>,
    videos: HashMap<String, Mark, Seeded>,
    /// Lifted subjects: the lift's seq, and when it was learnt.
    lifted: HashMap<(RevocationKind, String), (i64, Instant), Seeded>,
    /// Every change up to this seq has been applied.
    watermark: i64,
}

impl Sets {
    /// The seq of the state held for a subject (0: none known).
    fn seq_of(&self, kind: RevocationKind, subject: &str) -> i64 {
        let held = match kind {
            RevocationKind::Token => self.tokens.get(subject).map(|m| m.seq),
            RevocationKind::Viewer => self.viewers.get(subject).map(|(_, m)| m.seq),
            RevocationKind::Video => self.videos.get(subject).map(|m| m.seq),
        };
        let lifted = self
            .lifted
            .get(&(kind, subject.to_owned()))
            .map(|(seq, _)| *seq);
        held.max(lifted).unwrap_or(0)
    }

    /// Applies a subject's state as of `seq`, unless a later one is held.
    fn apply(&mut self, kind: RevocationKind, subject: &str, state: Option<&Revocation>, seq: i64) {
        if seq <= self.seq_of(kind, subject) {
            return;
        }
        match kind {
            RevocationKind::Token => {
                self.tokens.remove(subject);
            }
            RevocationKind::Viewer => {
                self.viewers.remove(subject);
            }
            RevocationKind::Video => {
                self.videos.remove(subject);
            }
        }
        match state {
            Some(r) => {
                self.lifted.remove(&(kind, subject.to_owned()));
                let mark = Mark {
                    seq,
                    expires: r.expires_at.map(|t| t.timestamp()),
                };
                match kind {
                    RevocationKind::Token => {
                        self.tokens.insert(subject.to_owned(), mark);
                    }
                    RevocationKind::Viewer => {
                        self.viewers
                            .insert(subject.to_owned(), (r.revoked_at.timestamp(), mark));
                    }
                    RevocationKind::Video => {
                        self.videos.insert(subject.to_owned(), mark);
                    }
                }
            }
            None => {
                self.lifted
                    .insert((kind, subject.to_owned()), (seq, Instant::now()));
            }
        }
    }

    fn apply_row(&mut self, row: &RevocationRow) {
        let r = &row.revocation;
        self.apply(r.kind, &r.subject, (!row.lifted).then_some(r), row.seq);
    }

    /// Every subject held with a seq above `after`, as rows to apply again.
    fn newer_than(&self, after: i64) -> Vec<(RevocationKind, String, Option<Revocation>, i64)> {
        let mut out = Vec::new();
        let revocation = |kind, subject: &str, revoked_at: i64, mark: &Mark| Revocation {
            kind,
            subject: subject.to_owned(),
            revoked_at: chrono::DateTime::from_timestamp(revoked_at, 0).unwrap_or_default(),
            expires_at: mark
                .expires
                .and_then(|t| chrono::DateTime::from_timestamp(t, 0)),
        };
        for (s, m) in self.tokens.iter().filter(|(_, m)| m.seq > after) {
            let r = revocation(RevocationKind::Token, s, 0, m);
            out.push((RevocationKind::Token, s.clone(), Some(r), m.seq));
        }
        for (s, (until, m)) in self.viewers.iter().filter(|(_, (_, m))| m.seq > after) {
            let r = revocation(RevocationKind::Viewer, s, *until, m);
            out.push((RevocationKind::Viewer, s.clone(), Some(r), m.seq));
        }
        for (s, m) in self.videos.iter().filter(|(_, m)| m.seq > after) {
            let r = revocation(RevocationKind::Video, s, 0, m);
            out.push((RevocationKind::Video, s.clone(), Some(r), m.seq));
        }
        for ((k, s), (seq, _)) in self.lifted.iter().filter(|(_, (seq, _))| *seq > after) {
            out.push((*k, s.clone(), None, *seq));
        }
        out
    }
}

#[derive(Default)]
pub struct RevocationSet {
    sets: RwLock<Sets>,
}

impl RevocationSet {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Sets> {
        self.sets.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Sets> {
        self.sets.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Every change after this seq is still to be read.
    pub fn watermark(&self) -> i64 {
        self.read().watermark
    }

    /// Replaces everything with a full read (`rows`: every change not
    /// expired, in seq order). Built outside the lock; whatever this process
    /// learnt meanwhile with a later seq is kept.
    pub fn replace_all(&self, rows: &[RevocationRow]) {
        let mut fresh = Sets::default();
        for row in rows {
            fresh.apply_row(row);
        }
        fresh.watermark = rows.iter().map(|r| r.seq).max().unwrap_or(0);
        let mut sets = self.write();
        for (kind, subject, state, seq) in sets.newer_than(fresh.watermark) {
            fresh.apply(kind, &subject, state.as_ref(), seq);
        }
        fresh.watermark = fresh.watermark.max(sets.watermark);
        *sets = fresh;
    }

    /// Applies changes read after the watermark (in seq order) and moves it on.
    pub fn apply_since(&self, rows: &[RevocationRow]) {
        let mut sets = self.write();
        for row in rows {
            sets.apply_row(row);
            sets.watermark = sets.watermark.max(row.seq);
        }
    }

    /// One subject's state as of `seq` (`None`: not revoked any more).
    pub fn apply(&self, kind: RevocationKind, subject: &str, state: Option<&Revocation>, seq: i64) {
        self.write().apply(kind, subject, state, seq);
    }

    /// Forgets revocations that expired at `now` (Unix seconds) and old
    /// tombstones, so memory stays bounded by what can still matter.
    pub fn sweep(&self, now: i64) {
        let live = |m: &Mark| m.expires.is_none_or(|t| t > now);
        let mut sets = self.write();
        sets.tokens.retain(|_, m| live(m));
        sets.viewers.retain(|_, (_, m)| live(m));
        sets.videos.retain(|_, m| live(m));
        sets.lifted
            .retain(|_, (_, learnt)| learnt.elapsed() < TOMBSTONE_GUARD);
    }

    /// The token itself, or every token of its viewer up to now, was revoked.
    pub fn token_refused(&self, claims: &Claims) -> bool {
        let sets = self.read();
        sets.tokens.contains_key(&claims.jti)
            || sets
                .viewers
                .get(&claims.sub)
                .is_some_and(|&(until, _)| claims.iat <= until)
    }

    pub fn video_revoked(&self, video_id: &str) -> bool {
        self.read().videos.contains_key(video_id)
    }

    /// When tokens of `viewer` were last revoked (Unix seconds), if ever.
    pub fn viewer_revoked_at(&self, viewer: &str) -> Option<i64> {
        self.read().viewers.get(viewer).map(|(until, _)| *until)
    }

    /// How many revocations are held (for /metrics).
    pub fn len(&self) -> usize {
        let sets = self.read();
        sets.tokens.len() + sets.viewers.len() + sets.videos.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn video(subject: &str) -> Revocation {
        Revocation {
            kind: RevocationKind::Video,
            subject: subject.into(),
            revoked_at: Utc::now(),
            expires_at: None,
        }
    }

    fn row(r: Revocation, seq: i64, lifted: bool) -> RevocationRow {
        RevocationRow {
            revocation: r,
            seq,
            lifted,
        }
    }

    #[test]
    fn an_older_read_never_overwrites_a_newer_state() {
        let set = RevocationSet::default();
        set.apply(RevocationKind::Video, "v", Some(&video("v")), 5);
        // Lifted at 6; a read of the revocation at 5 arriving later changes nothing.
        set.apply(RevocationKind::Video, "v", None, 6);
        set.apply_since(&[row(video("v"), 5, false)]);
        assert!(!set.video_revoked("v"));
        // Revoked again at 7.
        set.apply(RevocationKind::Video, "v", Some(&video("v")), 7);
        assert!(set.video_revoked("v"));
        set.apply_since(&[row(video("v"), 6, true)]);
        assert!(set.video_revoked("v"));
    }

    #[test]
    fn a_full_reload_keeps_what_arrived_while_it_ran() {
        let set = RevocationSet::default();
        // The reload read up to seq 10; meanwhile seq 11 (a new revocation)
        // and seq 12 (lifting one the reload saw) were applied.
        let snapshot = [row(video("a"), 9, false), row(video("b"), 10, false)];
        set.apply(RevocationKind::Video, "c", Some(&video("c")), 11);
        set.apply(RevocationKind::Video, "b", None, 12);
        set.replace_all(&snapshot);
        assert!(set.video_revoked("a"));
        assert!(!set.video_revoked("b"), "the lift at 12 was lost");
        assert!(set.video_revoked("c"), "the revocation at 11 was lost");
        // Changes 11 and 12 were heard of one by one, not read in order:
        // the next incremental read starts after 10.
        assert_eq!(set.watermark(), 10);
    }

    #[test]
    fn expired_revocations_are_forgotten() {
        let set = RevocationSet::default();
        let token = Revocation {
            kind: RevocationKind::Token,
            subject: "t".into(),
            revoked_at: Utc::now(),
            expires_at: DateTime::from_timestamp(1_000, 0),
        };
        set.apply_since(&[row(token, 1, false), row(video("v"), 2, false)]);
        assert_eq!(set.len(), 2);
        set.sweep(999);
        assert_eq!(set.len(), 2);
        set.sweep(1_000);
        assert_eq!(set.len(), 1);
        assert!(set.video_revoked("v"));
    }
}
