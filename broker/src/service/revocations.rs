//! Revocations held in memory, so checking one costs no database round trip.
//! Loaded at start, updated at once by this process's own changes, by change
//! notifications from other processes, and by a periodic full reload.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use crate::model::{Revocation, RevocationKind};
use crate::token::Claims;

#[derive(Default)]
struct Sets {
    tokens: HashSet<String>,
    /// Viewer → tokens issued at or before this Unix second are refused.
    viewers: HashMap<String, i64>,
    videos: HashSet<String>,
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

    pub fn replace_all(&self, list: &[Revocation]) {
        let mut sets = Sets::default();
        for r in list {
            insert(&mut sets, r);
        }
        *self.write() = sets;
    }

    /// `Some`: the revocation as now stored; `None`: there is none any more.
    pub fn apply(&self, kind: RevocationKind, subject: &str, current: Option<&Revocation>) {
        let mut sets = self.write();
        match kind {
            RevocationKind::Token => {
                sets.tokens.remove(subject);
            }
            RevocationKind::Viewer => {
                sets.viewers.remove(subject);
            }
            RevocationKind::Video => {
                sets.videos.remove(subject);
            }
        }
        if let Some(r) = current {
            insert(&mut sets, r);
        }
    }

    /// The token itself, or every token of its viewer up to now, was revoked.
    pub fn token_refused(&self, claims: &Claims) -> bool {
        let sets = self.read();
        sets.tokens.contains(&claims.jti)
            || sets
                .viewers
                .get(&claims.sub)
                .is_some_and(|&until| claims.iat <= until)
    }

    pub fn video_revoked(&self, video_id: &str) -> bool {
        self.read().videos.contains(video_id)
    }

    /// When tokens of `viewer` were last revoked (Unix seconds), if ever.
    pub fn viewer_revoked_at(&self, viewer: &str) -> Option<i64> {
        self.read().viewers.get(viewer).copied()
    }
}

fn insert(sets: &mut Sets, r: &Revocation) {
    match r.kind {
        RevocationKind::Token => {
            sets.tokens.insert(r.subject.clone());
        }
        RevocationKind::Viewer => {
            sets.viewers
                .insert(r.subject.clone(), r.revoked_at.timestamp());
        }
        RevocationKind::Video => {
            sets.videos.insert(r.subject.clone());
        }
    }
}
