//! The origin folder's playlists, parsed once and cut into templates
//! (`hls::rewrite::Template`), so serving one to a viewer costs a token
//! signature and a concatenation, not a file read and a parse.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hls::playlist::{Playlist, MAX_PLAYLIST_BYTES};
use hls::rewrite::{path_segments, CencKeyTags, Template, TokenTargets};

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
    targets: TokenTargets,
    /// One cache per key tag variant, so a lookup borrows the path.
    caches: [Mutex<HashMap<PathBuf, Entry>>; 2],
}

impl Origin {
    pub fn new(dir: PathBuf, targets: TokenTargets) -> Self {
        Self {
            dir,
            targets,
            caches: Default::default(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self, cenc: CencKeyTags) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Entry>> {
        let cache = match cenc {
            CencKeyTags::Identity => &self.caches[0],
            CencKeyTags::ClearKey => &self.caches[1],
        };
        cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The playlist at `relative` (already checked to be plain names), its
    /// CENC key tags as `cenc` says. A master playlist's videos and KIDs are
    /// those its own key tags name and those of its media playlists, so the
    /// token written into it reaches them.
    pub async fn playlist(
        &self,
        relative: &Path,
        cenc: CencKeyTags,
    ) -> Result<Arc<Template>, OriginError> {
        let template = self.load(relative, cenc).await?;
        if template.media_playlists.is_empty() {
            return Ok(template);
        }
        let mut video_ids = template.video_ids.clone();
        let mut kids = template.kids.clone();
        for path in &template.media_playlists {
            let Some(child) = origin_relative(path) else {
                continue;
            };
            // A media playlist that is missing or broken fails on its own fetch.
            if let Ok(media) = self.load(&child, cenc).await {
                add_new(&mut video_ids, &media.video_ids);
                add_new(&mut kids, &media.kids);
            }
        }
        if video_ids == template.video_ids && kids == template.kids {
            return Ok(template);
        }
        let mut with_children = Template::clone(&template);
        with_children.video_ids = video_ids;
        with_children.kids = kids;
        Ok(Arc::new(with_children))
    }

    /// One playlist file as a template, from the cache while unchanged.
    async fn load(&self, relative: &Path, cenc: CencKeyTags) -> Result<Arc<Template>, OriginError> {
        let now = Instant::now();
        if let Some(e) = self.lock(cenc).get(relative) {
            if now.duration_since(e.checked) < RECHECK {
                return Ok(Arc::clone(&e.template));
            }
        }
        // Symlinks are followed only as far as the folder's edge.
        let full = super::media::contained(&self.dir, &self.dir.join(relative)).await;
        let meta = match &full {
            Some(path) => tokio::fs::metadata(path).await.ok(),
            None => None,
        };
        let (Some(full), Some(meta)) = (full, meta.filter(|m| m.is_file())) else {
            self.lock(cenc).remove(relative);
            return Err(OriginError::NotFound);
        };
        let modified = meta.modified().ok();
        if let Some(e) = self.lock(cenc).get_mut(relative) {
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
        let served_at = served_at(relative);
        let template = Arc::new(
            Template::new(&playlist, &self.targets, &served_at, cenc)
                .map_err(|e| OriginError::Invalid(e.to_string()))?,
        );
        let mut cache = self.lock(cenc);
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

/// Appends the items of `more` that `to` lacks.
fn add_new<T: PartialEq + Clone>(to: &mut Vec<T>, more: &[T]) {
    for item in more {
        if !to.contains(item) {
            to.push(item.clone());
        }
    }
}

/// The URL path a playlist of the origin folder is served at.
fn served_at(relative: &Path) -> String {
    let mut path = String::from(PLAYLIST_ROUTE);
    for (i, part) in relative.iter().enumerate() {
        if i > 0 {
            path.push('/');
        }
        path.push_str(&part.to_string_lossy());
    }
    path
}

/// The origin file a resolved URL path names, if it is under the playlist
/// route and made of plain names.
fn origin_relative(url_path: &str) -> Option<PathBuf> {
    let segments = path_segments(url_path)?;
    let route: Vec<&str> = PLAYLIST_ROUTE.trim_matches('/').split('/').collect();
    if segments.len() <= route.len() || segments[..route.len()] != route[..] {
        return None;
    }
    super::media::safe_relative(&segments[route.len()..].join("/"))
}

/// Where `--origin-dir` is served.
pub const PLAYLIST_ROUTE: &str = "/v1/hls/playlist/";
