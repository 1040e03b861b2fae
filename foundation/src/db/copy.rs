//! Rows for PostgreSQL's binary `COPY … FROM STDIN`: the cheapest way to
//! append many rows, as the audit writers do. No per-row parse or plan, and
//! the server inserts heap tuples in batches.
//!
//! Format (PostgreSQL docs, "COPY", binary format): a signature, flags and
//! an extension length; each row a 16-bit field count, each field a 32-bit
//! length (-1 for NULL) and its bytes in the type's binary form; a 16-bit -1
//! at the end.

use chrono::{DateTime, Utc};
use uuid::Uuid;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

pub struct CopyRows {
    buf: Vec<u8>,
}

impl Default for CopyRows {
    fn default() -> Self {
        Self::new()
    }
}

impl CopyRows {
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(64 * 1024);
        buf.extend_from_slice(SIGNATURE);
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
        buf.extend_from_slice(&0i32.to_be_bytes()); // no header extension
        Self { buf }
    }

    /// Starts a row of `fields` fields; write exactly that many next.
    pub fn row(&mut self, fields: i16) -> &mut Self {
        self.buf.extend_from_slice(&fields.to_be_bytes());
        self
    }

    fn null(&mut self) -> &mut Self {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
        self
    }

    fn field(&mut self, bytes: &[&[u8]]) -> &mut Self {
        let len: usize = bytes.iter().map(|b| b.len()).sum();
        // A field past 2 GiB cannot be sent; audit fields are bounded far below.
        let len = i32::try_from(len).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        for b in bytes {
            self.buf.extend_from_slice(b);
        }
        self
    }

    pub fn uuid(&mut self, v: Option<Uuid>) -> &mut Self {
        match v {
            Some(id) => self.field(&[id.as_bytes()]),
            None => self.null(),
        }
    }

    pub fn timestamptz(&mut self, t: DateTime<Utc>) -> &mut Self {
        let micros = t.timestamp_micros().saturating_sub(PG_EPOCH_MICROS);
        self.field(&[&micros.to_be_bytes()])
    }

    pub fn int4(&mut self, v: Option<i32>) -> &mut Self {
        match v {
            Some(n) => self.field(&[&n.to_be_bytes()]),
            None => self.null(),
        }
    }

    pub fn int8(&mut self, v: Option<i64>) -> &mut Self {
        match v {
            Some(n) => self.field(&[&n.to_be_bytes()]),
            None => self.null(),
        }
    }

    pub fn bytea(&mut self, v: Option<&[u8]>) -> &mut Self {
        match v {
            Some(b) => self.field(&[b]),
            None => self.null(),
        }
    }

    /// Text, with NUL (which PostgreSQL text cannot hold) as U+FFFD, as
    /// [`super::storable`] does: a record is kept, never refused.
    pub fn text(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(s) if s.contains('\0') => self.field(&[super::storable(s).as_bytes()]),
            Some(s) => self.field(&[s.as_bytes()]),
            None => self.null(),
        }
    }

    /// JSON text as `jsonb` (its binary form: version 1, then the text).
    /// Callers pass serialized JSON, which escapes NUL.
    pub fn jsonb(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(json) => self.field(&[&[1u8], json.as_bytes()]),
            None => self.null(),
        }
    }

    /// The bytes to send, trailer included.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_in_the_documented_layout() {
        let mut rows = CopyRows::new();
        let t = DateTime::from_timestamp(946_684_801, 0).unwrap_or_default();
        rows.row(5)
            .uuid(Some(Uuid::from_u128(1)))
            .timestamptz(t)
            .int4(None)
            .text(Some("a\0b"))
            .jsonb(Some("{}"));
        let bytes = rows.finish();
        let mut want = Vec::new();
        want.extend_from_slice(b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0");
        want.extend_from_slice(&[0, 5]);
        want.extend_from_slice(&[0, 0, 0, 16]);
        want.extend_from_slice(&1u128.to_be_bytes());
        want.extend_from_slice(&[0, 0, 0, 8]);
        want.extend_from_slice(&1_000_000i64.to_be_bytes());
        want.extend_from_slice(&[0xff; 4]);
        want.extend_from_slice(&[0, 0, 0, 5, b'a', 0xef, 0xbf, 0xbd, b'b']);
        want.extend_from_slice(&[0, 0, 0, 3, 1, b'{', b'}']);
        want.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(bytes, want);
    }
}
