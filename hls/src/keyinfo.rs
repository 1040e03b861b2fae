//! ffmpeg key info files (`-hls_key_info_file`): line 1 the key URI written
//! into the playlist, line 2 the path of a file holding the 16 key bytes,
//! line 3 the IV in hex.
//!
//! With `-hls_flags periodic_rekey` ffmpeg re-reads the key info file at every
//! segment, so rewriting it rotates keys. It reads the two files one after the
//! other; if the key file were rewritten in place, a segment could get the new
//! key under the old URI. So the key goes to the *other* of two key files
//! (`FILE.a.key`, `FILE.b.key`) and the key info file is swapped in last, by
//! rename: a reader sees either the old pair or the new one. At most two key
//! files exist, mode 0600.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::cipher::{hex, SegmentKey, IV_LEN};

/// Writes the key file and then the key info file; returns the key file's path.
pub fn write(
    keyinfo: &Path,
    key_uri: &str,
    key: &SegmentKey,
    iv: &[u8; IV_LEN],
) -> io::Result<PathBuf> {
    if key_uri.contains(['\n', '\r']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a key URI with a line break",
        ));
    }
    let keyinfo = std::path::absolute(keyinfo)?;
    let name = keyinfo
        .file_name()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the key info path names no file",
            )
        })?
        .to_string_lossy()
        .into_owned();
    let slot = |s: &str| keyinfo.with_file_name(format!("{name}.{s}.key"));
    let (a, b) = (slot("a"), slot("b"));
    let current = std::fs::read_to_string(&keyinfo)
        .ok()
        .and_then(|t| t.lines().nth(1).map(PathBuf::from));
    let key_file = if current.as_deref() == Some(a.as_path()) {
        b
    } else {
        a
    };

    replace_file(&key_file, key.as_ref(), true)?;
    let text = format!("{key_uri}\n{}\n{}\n", key_file.display(), hex(iv));
    replace_file(&keyinfo, text.as_bytes(), false)?;
    Ok(key_file)
}

/// Writes `path` whole or not at all: a temporary file beside it, renamed.
pub(crate) fn replace_file(path: &Path, bytes: &[u8], secret: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{:016x}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(if secret { 0o600 } else { 0o644 });
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    #[test]
    fn alternates_key_files_and_keeps_them_private() {
        let dir = tempfile::tempdir().unwrap();
        let info = dir.path().join("enc.keyinfo");
        let iv = [7u8; 16];
        let first = write(
            &info,
            "http://b/k?vid=v&Ciphertext=A",
            &Zeroizing::new([1u8; 16]),
            &iv,
        )
        .unwrap();
        let text = std::fs::read_to_string(&info).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines[0], "http://b/k?vid=v&Ciphertext=A");
        assert_eq!(Path::new(lines[1]), first);
        assert_eq!(lines[2], "07".repeat(16));
        assert_eq!(std::fs::read(&first).unwrap(), [1u8; 16]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&first).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let second = write(
            &info,
            "http://b/k?vid=v&Ciphertext=B",
            &Zeroizing::new([2u8; 16]),
            &iv,
        )
        .unwrap();
        assert_ne!(first, second);
        assert_eq!(std::fs::read(&second).unwrap(), [2u8; 16]);
        // The old key file is kept until the next rewrite (a reader may hold the old info).
        assert_eq!(std::fs::read(&first).unwrap(), [1u8; 16]);
        let third = write(
            &info,
            "http://b/k?vid=v&Ciphertext=C",
            &Zeroizing::new([3u8; 16]),
            &iv,
        )
        .unwrap();
        assert_eq!(third, first);
        assert_eq!(std::fs::read(&third).unwrap(), [3u8; 16]);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
        assert!(write(&info, "a\nb", &Zeroizing::new([0u8; 16]), &iv).is_err());
    }
}
