//! HLS tooling for vodkms, with no knowledge of the KMS or the broker:
//! - [`playlist`]: RFC 8216 playlists as lines and attribute lists, kept
//!   byte-for-byte where nothing is changed;
//! - [`cipher`]: METHOD=AES-128 segment encryption (AES-128-CBC, PKCS#7);
//! - [`keyuri`]: the broker key URIs written into playlists;
//! - [`package`]: `vodkms hls encrypt`, an unencrypted ffmpeg output in, an
//!   encrypted copy out, all or nothing;
//! - [`keyinfo`]: ffmpeg `-hls_key_info_file` files;
//! - [`rewrite`]: the broker's per-viewer playlist rewriting.

pub mod cenc;
pub mod cipher;
pub mod keyinfo;
pub mod keyuri;
pub mod package;
pub mod playlist;
pub mod rewrap;
pub mod rewrite;

pub use package::{encrypt_hls, DataKey, DataKeySource, EncryptOptions, PackageError};
