//! The export format (`vodkms audit export`): JSON Lines, one checkpoint or
//! one record per line, each record with its chain fields and its canonical
//! form, so an export verifies on its own (`vodkms audit verify --from`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{canonical_json, hex, Checkpoint, Link, Row};

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "Type")]
pub enum Line {
    Checkpoint(Checkpoint),
    #[serde(rename_all = "PascalCase")]
    Record {
        trail: String,
        writer: Uuid,
        seq: u64,
        /// The previous record's hash, hex.
        prev: String,
        /// This record's hash, hex.
        hash: String,
        /// The record in its canonical form: what was hashed.
        record: serde_json::Value,
    },
}

impl Line {
    /// A record's line, from its stored link and canonical bytes.
    pub fn record(trail: &str, row: &Row) -> Self {
        Self::Record {
            trail: trail.to_owned(),
            writer: row.link.writer,
            seq: row.link.seq,
            prev: hex(&row.link.prev),
            hash: hex(&row.link.hash),
            // Canonical bytes are JSON; unreadable ones export as null,
            // which no hash matches.
            record: serde_json::from_slice(&row.canonical).unwrap_or(serde_json::Value::Null),
        }
    }

    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// A record line as the verifier takes it: `(trail, row)`.
    pub fn into_row(self) -> Option<(String, Row)> {
        let Self::Record {
            trail,
            writer,
            seq,
            prev,
            hash,
            record,
        } = self
        else {
            return None;
        };
        let id = record
            .get("Id")
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_owned();
        let row = Row {
            link: Link {
                writer,
                seq,
                prev: from_hex(&prev),
                hash: from_hex(&hash),
            },
            canonical: canonical_json(&record),
            id,
        };
        Some((trail, row))
    }
}

/// 32 bytes from hex; anything else becomes a value no hash equals.
pub fn from_hex(text: &str) -> [u8; 32] {
    const NO_HASH: [u8; 32] = [0xff; 32];
    if text.len() != 64 || !text.is_ascii() {
        return NO_HASH;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        match u8::from_str_radix(&text[2 * i..2 * i + 2], 16) {
            Ok(b) => *byte = b,
            Err(_) => return NO_HASH,
        }
    }
    out
}
