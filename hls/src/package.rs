//! `vodkms hls encrypt`: an unencrypted HLS output (one media playlist, or a
//! master playlist and its renditions, as ffmpeg writes them) in, an
//! encrypted copy out.
//!
//! - Everything is checked before any key is minted or byte written: playlist
//!   syntax, unsupported features, every segment file.
//! - Key period `k` is segments `k*N .. (k+1)*N` of every rendition, so the
//!   renditions share keys (a player switching bitrate fetches no new key) and
//!   the master playlist can name them all in `EXT-X-SESSION-KEY`.
//! - Every EXT-X-KEY has an explicit random IV (see PLAYERS.md: implicit IVs
//!   are read differently by different players).
//! - fMP4 (`-hls_segment_type fmp4`): the initialization section an
//!   EXT-X-MAP names is encrypted too, under the key tag that precedes it,
//!   whose IV RFC 8216 §4.3.2.5 then requires (ours always have one).
//! - The copy is built in a hidden folder beside OUTPUT_DIR and renamed into
//!   place at the end: a failure or an interrupt leaves no half-written output.
//! - Plaintext keys live only in memory, in wiped-on-drop buffers.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rand::RngCore as _;

use crate::cipher::{encrypt_segment, iv_attribute, SegmentKey, IV_LEN};
use crate::keyuri::KeyUriBase;
use crate::playlist::{Attributes, Kind, Line, Playlist, PlaylistError, MAX_PLAYLIST_BYTES};

/// A fresh data key and its envelope-encrypted copy (the EDK, base64url).
pub struct DataKey {
    pub key: SegmentKey,
    pub ciphertext_blob: String,
}

impl DataKey {
    /// A data key as a KMS hands it out: METHOD=AES-128 takes exactly 16
    /// bytes, anything else is refused.
    pub fn from_plaintext(plaintext: &[u8], ciphertext_blob: String) -> Result<Self, String> {
        if plaintext.len() != crate::cipher::KEY_LEN {
            return Err(format!(
                "the KMS sent a {}-byte key, not {}",
                plaintext.len(),
                crate::cipher::KEY_LEN
            ));
        }
        let mut key: SegmentKey = zeroize::Zeroizing::new([0u8; crate::cipher::KEY_LEN]);
        key.copy_from_slice(plaintext);
        Ok(Self {
            key,
            ciphertext_blob,
        })
    }
}

/// Where data keys come from: the KMS, in `vodkms`.
#[async_trait::async_trait]
pub trait DataKeySource: Send + Sync {
    async fn data_key(&self, video_id: &str) -> Result<DataKey, String>;

    /// `count` keys at once, where the source can (the KMS's batch call);
    /// `None`: ask `data_key` for each.
    async fn data_keys(
        &self,
        _video_id: &str,
        _count: usize,
    ) -> Option<Result<Vec<DataKey>, String>> {
        None
    }
}

#[derive(Debug, Clone)]
pub struct EncryptOptions {
    pub video_id: String,
    pub key_uri_base: KeyUriBase,
    /// A fresh key every N segments; `None`: one key for the whole video.
    pub rekey_every: Option<NonZeroUsize>,
    /// Replace a non-empty OUTPUT_DIR.
    pub replace: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{}: {source}", path.display())]
    Playlist {
        path: PathBuf,
        source: PlaylistError,
    },
    #[error("{}: {reason}", path.display())]
    Unsupported { path: PathBuf, reason: String },
    #[error("{}: segment {} is missing", playlist.display(), segment.display())]
    MissingSegment { playlist: PathBuf, segment: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no data key from the KMS: {0}")]
    DataKey(String),
    #[error("{} exists and is not empty (--force replaces it)", .0.display())]
    OutputExists(PathBuf),
    #[error("the output folder {} must not be the input's folder or hold it", .0.display())]
    OutputOverlapsInput(PathBuf),
    #[error("interrupted: nothing was written")]
    Interrupted,
}

impl PackageError {
    /// A stable name for scripts.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Playlist { .. } => "MalformedPlaylist",
            Self::Unsupported { .. } => "UnsupportedPlaylist",
            Self::MissingSegment { .. } => "MissingSegment",
            Self::Io { .. } => "IoError",
            Self::DataKey(_) => "DataKeyUnavailable",
            Self::OutputExists(_) | Self::OutputOverlapsInput(_) => "BadOutput",
            Self::Interrupted => "Interrupted",
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> PackageError + '_ {
    move |source| PackageError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub playlists: usize,
    pub segments: usize,
    pub keys: usize,
    pub bytes: u64,
    /// The top playlist in the output folder.
    pub playlist: PathBuf,
}

/// One media playlist to encrypt, paths relative to the input's folder.
struct MediaPlan {
    path: PathBuf,
    text: String,
    segments: Vec<PathBuf>,
    /// fMP4 initialization sections (EXT-X-MAP), each with the index of the
    /// segment it opens (its key is that segment's period's).
    maps: Vec<(usize, PathBuf)>,
}

/// Encrypts `input` (a playlist file) into `output` (a folder). `progress`
/// hears after every segment and answers whether to go on: `false` stops
/// cleanly (the segment being written is finished, then everything is
/// removed), which is how an interrupt should end it.
pub async fn encrypt_hls(
    input: &Path,
    output: &Path,
    options: &EncryptOptions,
    keys: Arc<dyn DataKeySource>,
    progress: &mut (dyn FnMut(Progress) -> bool + Send),
) -> Result<Summary, PackageError> {
    let root = input.parent().unwrap_or(Path::new("")).to_owned();
    let name = PathBuf::from(input.file_name().ok_or_else(|| PackageError::Unsupported {
        path: input.to_owned(),
        reason: "not a playlist file".into(),
    })?);
    check_output(&root, output, options.replace)?;

    // 1. Read and check everything.
    let top = read_playlist(&root, &name).await?;
    let (master, media) = match Playlist::parse(&top)
        .map_err(|source| PackageError::Playlist {
            path: input.to_owned(),
            source,
        })?
        .kind
    {
        Kind::Media => (None, vec![plan_media(&root, name.clone(), top).await?]),
        Kind::Master => {
            let variants = variants_of(&top).map_err(|reason| PackageError::Unsupported {
                path: input.to_owned(),
                reason,
            })?;
            let mut media = Vec::with_capacity(variants.len());
            for variant in variants {
                let path = join_local(&name, &variant);
                let text = read_playlist(&root, &path).await?;
                media.push(plan_media(&root, path, text).await?);
            }
            (Some(top), media)
        }
    };
    let mut seen = HashSet::new();
    for plan in &media {
        for segment in plan.segments.iter().chain(plan.maps.iter().map(|(_, m)| m)) {
            if !seen.insert(segment.clone()) {
                return Err(PackageError::Unsupported {
                    path: root.join(&plan.path),
                    reason: format!("segment {} is listed twice", segment.display()),
                });
            }
        }
    }

    // 2. Keys: one per key period, shared by the renditions.
    let every = options.rekey_every.map_or(usize::MAX, NonZeroUsize::get);
    let periods = media
        .iter()
        .map(|m| m.segments.len().div_ceil(every).max(1))
        .max()
        .unwrap_or(1);
    let minted = mint_keys(&keys, &options.video_id, periods).await?;
    let uris: Vec<String> = minted
        .iter()
        .map(|k| {
            options
                .key_uri_base
                .key_uri(&options.video_id, &k.ciphertext_blob)
        })
        .collect();

    // 3. Write into a hidden folder, then rename it into place.
    let staging = Staging::create(output)?;
    let total = media.iter().map(|m| m.segments.len()).sum();
    let mut done = 0;
    let mut bytes = 0u64;
    if !progress(Progress { done, total }) {
        return Err(PackageError::Interrupted);
    }
    for plan in &media {
        let ivs: Vec<[u8; IV_LEN]> = (0..periods).map(|_| random_iv()).collect();
        for (opens, map) in &plan.maps {
            let period = opens / every;
            bytes += encrypt_file(
                root.join(map),
                staging.path.join(map),
                Arc::clone(&minted[period]),
                ivs[period],
            )
            .await?;
        }
        for (i, segment) in plan.segments.iter().enumerate() {
            let period = i / every;
            bytes += encrypt_file(
                root.join(segment),
                staging.path.join(segment),
                Arc::clone(&minted[period]),
                ivs[period],
            )
            .await?;
            done += 1;
            if !progress(Progress { done, total }) {
                return Err(PackageError::Interrupted);
            }
        }
        let text = render_media(&plan.text, &uris, &ivs, every);
        write_new(&staging.path.join(&plan.path), text.as_bytes()).await?;
    }
    if let Some(master) = &master {
        write_new(
            &staging.path.join(&name),
            render_master(master, &uris).as_bytes(),
        )
        .await?;
    }
    staging.commit(output, options.replace)?;
    Ok(Summary {
        playlists: media.len() + usize::from(master.is_some()),
        segments: total,
        keys: periods,
        bytes,
        playlist: output.join(&name),
    })
}

/// Refuses, before any key is minted, an output that would destroy the input
/// or, without `replace`, other files.
fn check_output(root: &Path, output: &Path, replace: bool) -> Result<(), PackageError> {
    let root = std::fs::canonicalize(if root.as_os_str().is_empty() {
        Path::new(".")
    } else {
        root
    })
    .map_err(io_error(root))?;
    if let Ok(out) = std::fs::canonicalize(output) {
        if root.starts_with(&out) {
            return Err(PackageError::OutputOverlapsInput(output.to_owned()));
        }
    }
    if !replace && std::fs::read_dir(output).is_ok_and(|mut d| d.next().is_some()) {
        return Err(PackageError::OutputExists(output.to_owned()));
    }
    Ok(())
}

async fn read_playlist(root: &Path, path: &Path) -> Result<String, PackageError> {
    let full = root.join(path);
    let meta = tokio::fs::metadata(&full).await.map_err(io_error(&full))?;
    if meta.len() > MAX_PLAYLIST_BYTES as u64 {
        return Err(PackageError::Unsupported {
            path: full,
            reason: "the playlist is larger than 16 MiB".into(),
        });
    }
    let bytes = tokio::fs::read(&full).await.map_err(io_error(&full))?;
    String::from_utf8(bytes).map_err(|_| PackageError::Playlist {
        path: full,
        source: PlaylistError::new(0, "the playlist is not UTF-8 text"),
    })
}

/// Checks a media playlist and lists its segments (relative to the input's folder).
async fn plan_media(root: &Path, path: PathBuf, text: String) -> Result<MediaPlan, PackageError> {
    let full = root.join(&path);
    let playlist = Playlist::parse(&text).map_err(|source| PackageError::Playlist {
        path: full.clone(),
        source,
    })?;
    if playlist.kind != Kind::Media {
        return Err(PackageError::Unsupported {
            path: full,
            reason: "a variant stream is itself a master playlist".into(),
        });
    }
    let unsupported = |reason: String| PackageError::Unsupported {
        path: full.clone(),
        reason,
    };
    let mut segments = Vec::new();
    let mut maps: Vec<(usize, PathBuf)> = Vec::new();
    for (i, line) in playlist.lines.iter().enumerate() {
        let at = |what: &str| format!("line {}: {what}", i + 1);
        match line {
            Line::Tag { name, value } => {
                match *name {
                    "EXT-X-KEY" => {
                        let attrs = Attributes::parse(value.unwrap_or_default())
                            .map_err(|e| unsupported(at(&e)))?;
                        if attrs.get("METHOD") != Some("NONE") {
                            return Err(unsupported(at(
                                "the playlist is already encrypted (EXT-X-KEY)",
                            )));
                        }
                    }
                    "EXT-X-MAP" => {
                        let attrs = Attributes::parse(value.unwrap_or_default())
                            .map_err(|e| unsupported(at(&e)))?;
                        if attrs.get("BYTERANGE").is_some() {
                            return Err(unsupported(at(
                                "byte-range initialization sections (EXT-X-MAP BYTERANGE) are \
                                 not supported: encryption pads the section, which moves the \
                                 range; write it as its own file",
                            )));
                        }
                        let uri = attrs
                            .get("URI")
                            .ok_or_else(|| unsupported(at("EXT-X-MAP has no URI")))?;
                        let relative = local_path(uri).map_err(|e| unsupported(at(&e)))?;
                        let map = join_local(&path, &relative);
                        let file = root.join(&map);
                        if !tokio::fs::metadata(&file).await.is_ok_and(|m| m.is_file()) {
                            return Err(PackageError::MissingSegment {
                                playlist: full,
                                segment: file,
                            });
                        }
                        if maps.iter().any(|(_, m)| *m == map) {
                            return Err(unsupported(at(&format!(
                                "{} is named by two EXT-X-MAP tags",
                                map.display()
                            ))));
                        }
                        maps.push((segments.len(), map));
                    }
                    "EXT-X-BYTERANGE" => return Err(unsupported(at(
                        "byte-range segments (EXT-X-BYTERANGE) are not supported: encryption pads \
                         every segment, which moves the ranges; write one file per segment",
                    ))),
                    "EXT-X-PART"
                    | "EXT-X-PART-INF"
                    | "EXT-X-PRELOAD-HINT"
                    | "EXT-X-SKIP"
                    | "EXT-X-RENDITION-REPORT"
                    | "EXT-X-SERVER-CONTROL" => {
                        return Err(unsupported(at(&format!(
                            "low-latency HLS ({name}) is not supported"
                        ))))
                    }
                    _ => {}
                }
            }
            Line::Uri(uri) => {
                let relative = local_path(uri).map_err(|e| unsupported(at(&e)))?;
                let segment = join_local(&path, &relative);
                let file = root.join(&segment);
                match tokio::fs::metadata(&file).await {
                    Ok(m) if m.is_file() => segments.push(segment),
                    _ => {
                        return Err(PackageError::MissingSegment {
                            playlist: full,
                            segment: file,
                        })
                    }
                }
            }
            Line::Other(_) => {}
        }
    }
    if segments.is_empty() {
        return Err(unsupported("the playlist lists no segments".into()));
    }
    if maps.iter().any(|(opens, _)| *opens >= segments.len()) {
        return Err(unsupported("an EXT-X-MAP is followed by no segment".into()));
    }
    Ok(MediaPlan {
        path,
        text,
        segments,
        maps,
    })
}

/// The media playlists a master playlist names, each once, in order.
fn variants_of(text: &str) -> Result<Vec<PathBuf>, String> {
    let playlist = Playlist::parse(text).map_err(|e| e.to_string())?;
    let mut out: Vec<PathBuf> = Vec::new();
    let mut expect_uri = None;
    for (i, line) in playlist.lines.iter().enumerate() {
        let at = |what: &str| format!("line {}: {what}", i + 1);
        let uri =
            match line {
                Line::Tag { name, value } => {
                    if expect_uri.is_some() && !name.starts_with("EXT-X-") {
                        return Err(at("EXT-X-STREAM-INF is not followed by a URI"));
                    }
                    match *name {
                        "EXT-X-STREAM-INF" => {
                            expect_uri = Some(i);
                            None
                        }
                        "EXT-X-MEDIA" => Attributes::parse(value.unwrap_or_default())
                            .map_err(|e| at(&e))?
                            .get("URI")
                            .map(str::to_owned),
                        "EXT-X-I-FRAME-STREAM-INF" => return Err(at(
                            "I-frame playlists (EXT-X-I-FRAME-STREAM-INF) are not supported: they \
                             address byte ranges of segments, which encryption moves; drop them",
                        )),
                        "EXT-X-SESSION-KEY" => {
                            return Err(at("the playlist is already encrypted (EXT-X-SESSION-KEY)"))
                        }
                        _ => None,
                    }
                }
                Line::Uri(uri) => {
                    if expect_uri.take().is_none() {
                        return Err(at("a URI that no EXT-X-STREAM-INF announces"));
                    }
                    Some((*uri).to_owned())
                }
                Line::Other(_) => None,
            };
        if let Some(uri) = uri {
            let path = local_path(&uri).map_err(|e| at(&e))?;
            if !out.contains(&path) {
                out.push(path);
            }
        }
    }
    if expect_uri.is_some() {
        return Err("the last EXT-X-STREAM-INF is not followed by a URI".into());
    }
    if out.is_empty() {
        return Err("the master playlist names no media playlist".into());
    }
    Ok(out)
}

/// A URI in a playlist as a path below the playlist's folder; the copy keeps
/// the same layout, so only plain relative paths can be followed.
fn local_path(uri: &str) -> Result<PathBuf, String> {
    if uri.contains("://") || uri.starts_with('/') || uri.contains(['?', '#', '\\', '%']) {
        return Err(format!(
            "{uri:?} is not a plain relative path (remote, absolute, query strings and \
             percent-encoding are not supported)"
        ));
    }
    let path = PathBuf::from(uri);
    if !path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!("{uri:?} leaves the playlist's folder"));
    }
    Ok(path)
}

/// `relative` resolved against the folder of `playlist` (both below the root).
fn join_local(playlist: &Path, relative: &Path) -> PathBuf {
    let joined = playlist.parent().unwrap_or(Path::new("")).join(relative);
    joined
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

async fn mint_keys(
    keys: &Arc<dyn DataKeySource>,
    video_id: &str,
    count: usize,
) -> Result<Vec<Arc<DataKey>>, PackageError> {
    if let Some(batch) = keys.data_keys(video_id, count).await {
        let batch = batch.map_err(PackageError::DataKey)?;
        if batch.len() != count {
            return Err(PackageError::DataKey(format!(
                "asked for {count} data keys, got {}",
                batch.len()
            )));
        }
        return Ok(batch.into_iter().map(Arc::new).collect());
    }
    // A few requests in flight: quick for a film with many key periods,
    // gentle on the KMS.
    const IN_FLIGHT: usize = 8;
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let batch = (count - out.len()).min(IN_FLIGHT);
        let mut set = tokio::task::JoinSet::new();
        for i in 0..batch {
            let keys = Arc::clone(keys);
            let video_id = video_id.to_owned();
            set.spawn(async move { (i, keys.data_key(&video_id).await) });
        }
        let mut got: Vec<(usize, DataKey)> = Vec::with_capacity(batch);
        while let Some(joined) = set.join_next().await {
            let (i, result) = joined.map_err(|e| PackageError::DataKey(e.to_string()))?;
            got.push((i, result.map_err(PackageError::DataKey)?));
        }
        got.sort_by_key(|(i, _)| *i);
        out.extend(got.into_iter().map(|(_, k)| Arc::new(k)));
    }
    Ok(out)
}

fn random_iv() -> [u8; IV_LEN] {
    let mut iv = [0u8; IV_LEN];
    rand::rngs::OsRng.fill_bytes(&mut iv);
    iv
}

async fn encrypt_file(
    from: PathBuf,
    to: PathBuf,
    key: Arc<DataKey>,
    iv: [u8; IV_LEN],
) -> Result<u64, PackageError> {
    tokio::task::spawn_blocking(move || {
        let plain = std::fs::read(&from).map_err(io_error(&from))?;
        let sealed = encrypt_segment(&key.key, &iv, &plain);
        create_parent(&to)?;
        std::fs::write(&to, &sealed).map_err(io_error(&to))?;
        Ok(sealed.len() as u64)
    })
    .await
    .map_err(|e| PackageError::Io {
        path: PathBuf::new(),
        source: std::io::Error::other(e.to_string()),
    })?
}

fn create_parent(path: &Path) -> Result<(), PackageError> {
    match path.parent() {
        Some(dir) => std::fs::create_dir_all(dir).map_err(io_error(dir)),
        None => Ok(()),
    }
}

async fn write_new(path: &Path, bytes: &[u8]) -> Result<(), PackageError> {
    create_parent(path)?;
    tokio::fs::write(path, bytes).await.map_err(io_error(path))
}

/// Tags that open a media segment: the key tag goes before the first of them.
const SEGMENT_TAGS: &[&str] = &[
    "EXTINF",
    "EXT-X-DISCONTINUITY",
    "EXT-X-PROGRAM-DATE-TIME",
    "EXT-X-GAP",
    "EXT-X-BITRATE",
];

/// The media playlist with an EXT-X-KEY opening each key period. Existing
/// `METHOD=NONE` tags go (one would switch encryption off); EXT-X-VERSION is
/// raised to 2, which the IV attribute needs.
fn render_media(text: &str, uris: &[String], ivs: &[[u8; IV_LEN]], every: usize) -> String {
    let mut out = String::with_capacity(text.len() + uris.len() * 200);
    let mut segment = 0usize;
    let mut opening = true;
    // The segment whose period's key tag was written last: an EXT-X-MAP
    // needs its key tag before it, the segment's own tags then need none.
    let mut keyed: Option<usize> = None;
    let mut key_tag = |out: &mut String, segment: usize| {
        if segment % every == 0 && keyed != Some(segment) {
            keyed = Some(segment);
            let period = segment / every;
            out.push_str(&format!(
                "#EXT-X-KEY:METHOD=AES-128,URI=\"{}\",IV={}\n",
                uris[period],
                iv_attribute(&ivs[period])
            ));
        }
    };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if let Some(tag) = line.strip_prefix('#') {
            let name = tag.split(':').next().unwrap_or_default();
            if name == "EXT-X-KEY" {
                continue;
            }
            if name == "EXT-X-VERSION" {
                let v: u32 = tag["EXT-X-VERSION".len()..]
                    .trim_start_matches(':')
                    .trim()
                    .parse()
                    .unwrap_or(0);
                if v < 2 {
                    out.push_str("#EXT-X-VERSION:2\n");
                    continue;
                }
            }
            if name == "EXT-X-MAP" {
                // The initialization section is encrypted with the key of
                // the segment it opens: that key's tag must come first.
                key_tag(&mut out, segment);
            } else if opening && SEGMENT_TAGS.contains(&name) {
                key_tag(&mut out, segment);
                opening = false;
            }
        } else if !line.trim().is_empty() {
            if opening {
                key_tag(&mut out, segment);
            }
            segment += 1;
            opening = true;
        }
        out.push_str(line);
        out.push('\n');
        if i == 0 && !text.contains("#EXT-X-VERSION") {
            out.push_str("#EXT-X-VERSION:2\n");
        }
    }
    out
}

/// The master playlist with an EXT-X-SESSION-KEY per key, before the first
/// variant stream, so players that preload keys (Shaka) can.
fn render_master(text: &str, uris: &[String]) -> String {
    let mut out = String::with_capacity(text.len() + uris.len() * 200);
    let mut inserted = false;
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        if !inserted && (line.starts_with("#EXT-X-STREAM-INF") || line.starts_with("#EXT-X-MEDIA:"))
        {
            for uri in uris {
                out.push_str(&format!(
                    "#EXT-X-SESSION-KEY:METHOD=AES-128,URI=\"{uri}\"\n"
                ));
            }
            inserted = true;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The hidden folder the copy is built in; removed on drop unless committed,
/// so an error or an interrupt (the future dropped) leaves nothing behind.
struct Staging {
    path: PathBuf,
    committed: bool,
}

impl Staging {
    fn create(output: &Path) -> Result<Self, PackageError> {
        let parent = match output.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = output
            .file_name()
            .ok_or_else(|| PackageError::Unsupported {
                path: output.to_owned(),
                reason: "the output folder needs a name".into(),
            })?
            .to_string_lossy()
            .into_owned();
        std::fs::create_dir_all(&parent).map_err(io_error(&parent))?;
        let path = parent.join(format!(".{name}.vodkms-tmp-{:016x}", rand::random::<u64>()));
        std::fs::create_dir(&path).map_err(io_error(&path))?;
        Ok(Self {
            path,
            committed: false,
        })
    }

    fn commit(mut self, output: &Path, replace: bool) -> Result<(), PackageError> {
        let existing = match std::fs::read_dir(output) {
            Ok(mut entries) => Some(entries.next().is_some()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(output)(e)),
        };
        match existing {
            None => std::fs::rename(&self.path, output).map_err(io_error(output))?,
            Some(true) if !replace => return Err(PackageError::OutputExists(output.to_owned())),
            Some(_) => {
                // Move the old folder aside, the new one in, then delete the old.
                let old = self.path.with_extension("old");
                std::fs::rename(output, &old).map_err(io_error(output))?;
                if let Err(e) = std::fs::rename(&self.path, output) {
                    let _ = std::fs::rename(&old, output);
                    return Err(io_error(output)(e));
                }
                let _ = std::fs::remove_dir_all(&old);
            }
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cipher::decrypt_segment;

    /// Fixed keys, so the test can decrypt what was written.
    struct Counting(std::sync::atomic::AtomicU8);

    #[async_trait::async_trait]
    impl DataKeySource for Counting {
        async fn data_key(&self, _video_id: &str) -> Result<DataKey, String> {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(DataKey {
                key: zeroize::Zeroizing::new([n; 16]),
                ciphertext_blob: format!("EDK{n}"),
            })
        }
    }

    fn source(dir: &Path, segments: usize) -> PathBuf {
        let mut text = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n");
        for i in 0..segments {
            std::fs::write(dir.join(format!("s{i}.ts")), vec![i as u8; 1000 + i]).unwrap();
            text.push_str(&format!("#EXTINF:1,\ns{i}.ts\n"));
        }
        text.push_str("#EXT-X-ENDLIST\n");
        std::fs::write(dir.join("index.m3u8"), text).unwrap();
        dir.join("index.m3u8")
    }

    fn options() -> EncryptOptions {
        EncryptOptions {
            video_id: "v".into(),
            key_uri_base: KeyUriBase::parse("https://b.example").unwrap(),
            rekey_every: NonZeroUsize::new(2),
            replace: false,
        }
    }

    #[tokio::test]
    async fn segments_decrypt_with_their_period_key_and_iv() {
        let dir = tempfile::tempdir().unwrap();
        let input = source(dir.path(), 5);
        let out = dir.path().join("out");
        let keys = Arc::new(Counting(0.into()));
        let mut seen = Vec::new();
        let summary = encrypt_hls(&input, &out, &options(), keys, &mut |p| {
            seen.push(p.done);
            true
        })
        .await
        .unwrap();
        assert_eq!(
            (summary.segments, summary.keys, summary.playlists),
            (5, 3, 1)
        );
        assert_eq!(seen, [0, 1, 2, 3, 4, 5]);
        let text = std::fs::read_to_string(out.join("index.m3u8")).unwrap();
        let ivs: Vec<[u8; 16]> = text
            .lines()
            .filter_map(|l| l.split(",IV=0x").nth(1))
            .map(|h| {
                core::array::from_fn(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
            })
            .collect();
        assert_eq!(ivs.len(), 3);
        assert!(text.contains("URI=\"https://b.example/v1/hls/key?vid=v&Ciphertext=EDK2\""));
        for i in 0..5usize {
            let sealed = std::fs::read(out.join(format!("s{i}.ts"))).unwrap();
            let key = zeroize::Zeroizing::new([(i / 2) as u8; 16]);
            let plain = decrypt_segment(&key, &ivs[i / 2], &sealed).unwrap();
            assert_eq!(plain, vec![i as u8; 1000 + i]);
        }
    }

    #[tokio::test]
    async fn fmp4_init_sections_are_encrypted_under_the_key_before_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("init.mp4"), vec![9u8; 700]).unwrap();
        let mut text = String::from(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:1\n#EXT-X-MAP:URI=\"init.mp4\"\n",
        );
        for i in 0..3u8 {
            std::fs::write(dir.path().join(format!("s{i}.m4s")), vec![i; 500]).unwrap();
            text.push_str(&format!("#EXTINF:1,\ns{i}.m4s\n"));
        }
        std::fs::write(dir.path().join("index.m3u8"), text).unwrap();
        let out = dir.path().join("out");
        let keys = Arc::new(Counting(0.into()));
        let summary = encrypt_hls(
            &dir.path().join("index.m3u8"),
            &out,
            &options(),
            keys,
            &mut |_| true,
        )
        .await
        .unwrap();
        assert_eq!((summary.segments, summary.keys), (3, 2));
        let written = std::fs::read_to_string(out.join("index.m3u8")).unwrap();
        // The key tag (with its IV) comes before EXT-X-MAP, once.
        let key_at = written.find("#EXT-X-KEY:").unwrap();
        let map_at = written.find("#EXT-X-MAP:").unwrap();
        assert!(key_at < map_at, "{written}");
        assert_eq!(written.matches("#EXT-X-KEY:").count(), 2, "{written}");
        let iv0: [u8; 16] = {
            let h = written
                .lines()
                .find_map(|l| l.split(",IV=0x").nth(1))
                .unwrap();
            core::array::from_fn(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
        };
        let init = std::fs::read(out.join("init.mp4")).unwrap();
        let key0 = zeroize::Zeroizing::new([0u8; 16]);
        assert_eq!(decrypt_segment(&key0, &iv0, &init).unwrap(), vec![9u8; 700]);
        let first = std::fs::read(out.join("s0.m4s")).unwrap();
        assert_eq!(
            decrypt_segment(&key0, &iv0, &first).unwrap(),
            vec![0u8; 500]
        );

        // Byte ranges and a missing init section are refused before any key.
        for (map, what) in [
            (
                "#EXT-X-MAP:URI=\"init.mp4\",BYTERANGE=\"700@0\"",
                "BYTERANGE",
            ),
            ("#EXT-X-MAP:URI=\"gone.mp4\"", "missing"),
        ] {
            let bad = format!("#EXTM3U\n{map}\n#EXTINF:1,\ns0.m4s\n");
            std::fs::write(dir.path().join("bad.m3u8"), bad).unwrap();
            let keys = Arc::new(Counting(0.into()));
            let err = encrypt_hls(
                &dir.path().join("bad.m3u8"),
                &dir.path().join("out2"),
                &options(),
                keys.clone(),
                &mut |_| true,
            )
            .await
            .unwrap_err();
            assert!(
                matches!(
                    err,
                    PackageError::Unsupported { .. } | PackageError::MissingSegment { .. }
                ),
                "{what}: {err}"
            );
            assert_eq!(
                keys.0.load(std::sync::atomic::Ordering::SeqCst),
                0,
                "{what}"
            );
        }
    }

    #[tokio::test]
    async fn stopping_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let input = source(dir.path(), 5);
        let out = dir.path().join("out");
        let before: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let keys = Arc::new(Counting(0.into()));
        let err = encrypt_hls(&input, &out, &options(), keys, &mut |p| p.done < 2)
            .await
            .unwrap_err();
        assert!(matches!(err, PackageError::Interrupted), "{err}");
        let after: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(before.len(), after.len(), "{after:?}");
    }

    #[test]
    fn key_tags_open_each_period() {
        let text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-KEY:METHOD=NONE\n\
            #EXTINF:2,\na.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2,\nb.ts\n#EXTINF:2,\nc.ts\n#EXT-X-ENDLIST\n";
        let uris = vec![
            "http://b/k?vid=v&Ciphertext=K0".to_owned(),
            "http://b/k?vid=v&Ciphertext=K1".to_owned(),
        ];
        let ivs = [[0u8; 16], [1u8; 16]];
        let out = render_media(text, &uris, &ivs, 2);
        let want = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n\
            #EXT-X-KEY:METHOD=AES-128,URI=\"http://b/k?vid=v&Ciphertext=K0\",IV=0x00000000000000000000000000000000\n\
            #EXTINF:2,\na.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2,\nb.ts\n\
            #EXT-X-KEY:METHOD=AES-128,URI=\"http://b/k?vid=v&Ciphertext=K1\",IV=0x01010101010101010101010101010101\n\
            #EXTINF:2,\nc.ts\n#EXT-X-ENDLIST\n";
        assert_eq!(out, want);
        // No EXT-X-VERSION: one is added.
        let out = render_media(
            "#EXTM3U\n#EXTINF:2,\na.ts\n",
            &uris[..1],
            &ivs[..1],
            usize::MAX,
        );
        assert!(
            out.starts_with("#EXTM3U\n#EXT-X-VERSION:2\n#EXT-X-KEY:"),
            "{out}"
        );
    }

    #[test]
    fn master_gets_session_keys_before_variants() {
        let text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv0/i.m3u8\n";
        let out = render_master(text, &["U0".into(), "U1".into()]);
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-SESSION-KEY:METHOD=AES-128,URI=\"U0\"\n\
             #EXT-X-SESSION-KEY:METHOD=AES-128,URI=\"U1\"\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv0/i.m3u8\n"
        );
    }

    #[test]
    fn variants_and_paths() {
        let text = "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"audio/a.m3u8\"\n\
            #EXT-X-STREAM-INF:BANDWIDTH=1,AUDIO=\"a\"\nv0/i.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=2,AUDIO=\"a\"\nv0/i.m3u8\n";
        let v = variants_of(text).unwrap();
        assert_eq!(
            v,
            [PathBuf::from("audio/a.m3u8"), PathBuf::from("v0/i.m3u8")]
        );
        for bad in [
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n",
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nhttp://cdn/x.m3u8\n",
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n../x.m3u8\n",
            "#EXTM3U\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1,URI=\"i.m3u8\"\n",
            "#EXTM3U\n#EXT-X-SESSION-KEY:METHOD=AES-128,URI=\"k\"\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n",
        ] {
            assert!(variants_of(bad).is_err(), "{bad}");
        }
        assert_eq!(
            join_local(Path::new("v0/i.m3u8"), Path::new("./s1.ts")),
            PathBuf::from("v0/s1.ts")
        );
        assert_eq!(
            join_local(Path::new("i.m3u8"), Path::new("s1.ts")),
            PathBuf::from("s1.ts")
        );
        for bad in [
            "/etc/passwd",
            "a/../../b",
            "a?x=1",
            "s%20.ts",
            "https://x/a.ts",
        ] {
            assert!(local_path(bad).is_err(), "{bad}");
        }
    }
}
