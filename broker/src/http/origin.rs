//! The origin folder's playlists, parsed once and cut into templates
//! (`hls::rewrite::Template`), so serving one to a viewer costs a token
//! signature and a concatenation, not a file read and a parse.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hls::playlist::{Playlist, MAX_PLAYLIST_BYTES};
use hls::rewrite::Template;

/// How long a cached playlist is served before its file is looked at again:
/// a changed playlist is served within this time.
const RECHECK: Duration = Duration::from_secs(1);
/// Cached playlists past which the cache starts over.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug)]
pub enum OriginError {
    NotFound,
    /// Too large, unreadable, not HLS: the origin's fault, not the caller's.
    Invalid(String),
}

struct Entry {
    template: Arc<Template>,
    modified: Option<SystemTime>,
    len: u64,
    checked: Instant,
}

pub struct Origin {
    dir: PathBuf,
    cache: Mutex<HashMap<PathBuf, Entry>>,
}

impl Origin {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Entry>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The playlist at `relative` (already checked to be plain names).
    pub async fn playlist(&self, relative: &Path) -> Result<Arc<Template>, OriginError> {
        let now = Instant::now();
        if let Some(e) = self.lock().get(relative) {
            if now.duration_since(e.checked) < RECHECK {
                return Ok(Arc::clone(&e.template));
            }
        }
        let full = self.dir.join(relative);
        let meta = match tokio::fs::metadata(&full).await {
            Ok(m) if m.is_file() => m,
            _ => {
                self.lock().remove(relative);
                return Err(OriginError::NotFound);
            }
        };
        let modified = meta.modified().ok();
        if let Some(e) = self.lock().get_mut(relative) {
            if e.modified == modified && e.len == meta.len() {
                e.checked = now;
                return Ok(Arc::clone(&e.template));
            }
        }
        if meta.len() > MAX_PLAYLIST_BYTES as u64 {
            return Err(OriginError::Invalid("larger than 16 MiB".into()));
        }
        let text = tokio::fs::read_to_string(&full)
            .await
            .map_err(|e| OriginError::Invalid(e.to_string()))?;
        let playlist = Playlist::parse(&text).map_err(|e| OriginError::Invalid(e.to_string()))?;
        let template =
            Arc::new(Template::new(&playlist).map_err(|e| OriginError::Invalid(e.to_string()))?);
        let mut cache = self.lock();
        if cache.len() >= MAX_ENTRIES {
            cache.clear();
        }
        cache.insert(
            relative.to_owned(),
            Entry {
                template: Arc::clone(&template),
                modified,
                len: meta.len(),
                checked: now,
            },
        );
        Ok(template)
    }
}
