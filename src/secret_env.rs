//! Secret environment variables, taken out of the environment at start-up
//! (before any thread exists) so they do not stay readable in
//! `/proc/PID/environ` for as long as the server runs.
//!
//! `remove_var` only drops the variable from the C `environ` array; the
//! kernel shows `/proc/PID/environ` from the process's original environment
//! block, which still holds the bytes. So they are also overwritten there,
//! through `/proc/self/mem` (plain file I/O, no `unsafe`), where the system
//! allows it.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::OnceLock;

use zeroize::Zeroizing;

/// The variables that hold secrets (the database URL may hold a password).
pub const SECRET_VARS: &[&str] = &[
    "VODKMS_ROOT_KEY",
    "VODKMS_NEW_ROOT_KEY",
    "VODKMS_TOKEN_SECRET",
    "VODKMS_KMS_TOKEN",
];

static TAKEN: OnceLock<HashMap<&'static str, Zeroizing<String>>> = OnceLock::new();

/// Moves every secret variable into this process's memory, and wipes it
/// from the environment. Call once, first thing in `main`, single-threaded.
/// `Err`: the original environment block could not be overwritten (the
/// variables are still gone from `std::env`).
pub fn take() -> Result<(), String> {
    let mut taken = HashMap::new();
    for &var in SECRET_VARS {
        if let Some(value) = std::env::var_os(var) {
            if let Some(text) = value.to_str() {
                taken.insert(var, Zeroizing::new(text.to_owned()));
            }
            std::env::remove_var(var);
        }
    }
    let present: Vec<&str> = taken.keys().copied().collect();
    let _ = TAKEN.set(taken);
    if present.is_empty() {
        return Ok(());
    }
    overwrite_original_block(&present).map_err(|e| e.to_string())
}

/// A variable's value (empty counts as unset): a secret one as it was at
/// start-up, any other from the environment.
pub fn get(var: &str) -> Option<Zeroizing<String>> {
    if !SECRET_VARS.contains(&var) {
        return std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Zeroizing::new);
    }
    TAKEN
        .get()
        .and_then(|m| m.get(var))
        .filter(|v| !v.is_empty())
        .cloned()
}

/// Zeroes the values of `vars` in the environment block the kernel shows as
/// `/proc/self/environ` (fields 50-51 of `/proc/self/stat`: its bounds).
fn overwrite_original_block(vars: &[&str]) -> std::io::Result<()> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state), so field N is at index N - 3.
    let field = |n: usize| -> std::io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| std::io::Error::other("unexpected /proc/self/stat"))
    };
    let (start, end) = (field(50)?, field(51)?);
    if end <= start || end - start > 1 << 24 {
        return Err(std::io::Error::other("unexpected environment bounds"));
    }
    let mut mem = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/proc/self/mem")?;
    let mut block = Zeroizing::new(vec![0u8; usize::try_from(end - start).unwrap_or(0)]);
    mem.seek(SeekFrom::Start(start))?;
    mem.read_exact(&mut block)?;
    let mut offset = 0usize;
    let mut changed = false;
    for entry in block.split(|b| *b == 0) {
        let len = entry.len();
        if let Some(eq) = entry.iter().position(|b| *b == b'=') {
            if vars.iter().any(|v| v.as_bytes() == &entry[..eq]) && len > eq + 1 {
                let value_at = start + (offset + eq + 1) as u64;
                mem.seek(SeekFrom::Start(value_at))?;
                mem.write_all(&vec![0u8; len - eq - 1])?;
                changed = true;
            }
        }
        offset += len + 1;
    }
    if changed {
        mem.flush()?;
    }
    Ok(())
}
