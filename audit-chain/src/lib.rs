//! Tamper-evident audit trails (DESIGN.md, "Tamper-evident audit").
//!
//! Each writer process chains the records it writes: record `seq` of writer
//! `w` stores `hash = SHA-256(domain ‖ w ‖ seq ‖ prev ‖ canonical record)`,
//! where `prev` is the hash of record `seq - 1` (zeros for the first). Every
//! so often the writer signs a checkpoint of its head with an Ed25519 key
//! that never enters the database, chained to its previous checkpoint.
//! Anyone with database write access can still edit rows, but not without
//! breaking a hash, a link, or a signed head: [`verify`] finds which.
//!
//! Pure: hashing, signing and the verifier's rules. Reading rows and
//! checkpoints is the stores' and the CLI's job.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signer as _, Verifier as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use ed25519_dalek::VerifyingKey;

pub mod export;

/// The `prev` of a writer's first record.
pub const GENESIS: [u8; 32] = [0; 32];
const ROW_DOMAIN: &[u8] = b"vodkms/audit-chain/v1/row";
const CHECKPOINT_DOMAIN: &[u8] = b"vodkms/audit-chain/v1/checkpoint";
/// PKCS#8 v1 and SPKI prefixes of an Ed25519 key (RFC 8410), before the 32
/// key bytes: what `openssl genpkey -algorithm ed25519` writes.
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A record's place in its writer's chain, stored beside the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub writer: Uuid,
    /// 1, 2, 3, … within the writer.
    pub seq: u64,
    pub prev: [u8; 32],
    pub hash: [u8; 32],
}

/// The hash of record `seq` of `writer`: binds its place, its predecessor
/// and its content.
pub fn row_hash(writer: Uuid, seq: u64, prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(ROW_DOMAIN);
    h.update(writer.as_bytes());
    h.update(seq.to_be_bytes());
    h.update(prev);
    h.update(canonical);
    h.finalize().into()
}

/// One writer's chain as it grows (held by the process's audit writer).
#[derive(Debug, Clone)]
pub struct Chain {
    writer: Uuid,
    seq: u64,
    head: [u8; 32],
}

impl Chain {
    pub fn new(writer: Uuid) -> Self {
        Self {
            writer,
            seq: 0,
            head: GENESIS,
        }
    }

    pub fn writer(&self) -> Uuid {
        self.writer
    }

    /// The next record's link.
    pub fn append(&mut self, canonical: &[u8]) -> Link {
        let seq = self.seq + 1;
        let prev = self.head;
        let hash = row_hash(self.writer, seq, &prev, canonical);
        self.seq = seq;
        self.head = hash;
        Link {
            writer: self.writer,
            seq,
            prev,
            hash,
        }
    }

    /// `(seq, hash)` of the newest record (`(0, GENESIS)` before any).
    pub fn head(&self) -> (u64, [u8; 32]) {
        (self.seq, self.head)
    }
}

/// JSON with object keys sorted at every level and no whitespace: the same
/// bytes for the same record, however a database stored and returned it.
pub fn canonical_json(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&Sorted(value)).unwrap_or_default()
}

/// Serializes a JSON value with object keys sorted at every level (byte
/// order, as `BTreeMap<String, _>` orders them), copying nothing: for
/// canonical forms built from typed records, whose own fields are declared
/// in that order.
pub struct Sorted<'a>(pub &'a serde_json::Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let mut m = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    m.serialize_entry(k, &Sorted(v))?;
                }
                m.end()
            }
            serde_json::Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(&Sorted(v))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

/// A signed statement of a writer's head: "record `seq` of `writer` hashes
/// to `head`", chained to the writer's previous checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Checkpoint {
    /// `kms` or `broker`: which audit trail.
    pub trail: String,
    pub writer: Uuid,
    /// 1, 2, 3, … within the writer.
    pub number: u64,
    /// The head's seq (0: no record yet).
    pub seq: u64,
    /// The head's hash, hex.
    pub head: String,
    pub time: DateTime<Utc>,
    /// The previous checkpoint's signature (`None` for the first).
    pub prev_signature: Option<String>,
    /// The writer's last checkpoint: it ended (shut down) and wrote no
    /// record after `seq`. A record after it is forged.
    #[serde(default)]
    pub last: bool,
    /// Ed25519 over the other fields, base64.
    pub signature: String,
}

impl Checkpoint {
    /// What is signed: every field but the signature, canonically.
    fn signed_bytes(&self) -> Vec<u8> {
        let body = serde_json::json!({
            "Trail": self.trail,
            "Writer": self.writer,
            "Number": self.number,
            "Seq": self.seq,
            "Head": self.head,
            "Time": self.time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "PrevSignature": self.prev_signature,
            "Last": self.last,
        });
        [CHECKPOINT_DOMAIN, &canonical_json(&body)].concat()
    }

    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let Some(sig) = decode_b64(&self.signature) else {
            return false;
        };
        let Ok(sig) = ed25519_dalek::Signature::from_slice(&sig) else {
            return false;
        };
        key.verify(&self.signed_bytes(), &sig).is_ok()
    }
}

fn decode_b64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The audit signing key: held by the writer processes only (read from
/// `VODKMS_AUDIT_SIGNING_KEY_FILE`), never stored in the database.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey([REDACTED])")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the audit signing key must be an Ed25519 PEM `PRIVATE KEY` (openssl genpkey -algorithm ed25519) or 32 bytes in base64")]
    BadSigningKey,
    #[error("the audit public key must be an Ed25519 PEM `PUBLIC KEY` (openssl pkey -pubout) or 32 bytes in base64")]
    BadPublicKey,
}

/// The body of a PEM block labelled `label`, or the text itself, decoded.
fn pem_or_base64(text: &str, label: &str) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    let text = text.trim();
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = match text.strip_prefix(begin.as_str()) {
        Some(rest) => rest.trim_end().strip_suffix(end.as_str())?,
        None => text,
    };
    let compact: zeroize::Zeroizing<String> =
        zeroize::Zeroizing::new(body.split_whitespace().collect());
    // Standard or URL-safe, padded or not: however a key was pasted.
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let engine = match (compact.contains(['-', '_']), compact.ends_with('=')) {
        (true, true) => &URL_SAFE,
        (true, false) => &URL_SAFE_NO_PAD,
        (false, true) => &STANDARD,
        (false, false) => &STANDARD_NO_PAD,
    };
    engine
        .decode(compact.as_bytes())
        .ok()
        .map(zeroize::Zeroizing::new)
}

impl SigningKey {
    /// PEM PKCS#8 (`PRIVATE KEY`) or base64 of the 32-byte seed.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let der = pem_or_base64(text, "PRIVATE KEY").ok_or(KeyError::BadSigningKey)?;
        let seed = match der.len() {
            32 => &der[..],
            48 if der.starts_with(&PKCS8_PREFIX) => &der[16..],
            _ => return Err(KeyError::BadSigningKey),
        };
        let seed: zeroize::Zeroizing<[u8; 32]> =
            zeroize::Zeroizing::new(seed.try_into().map_err(|_| KeyError::BadSigningKey)?);
        Ok(Self(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.0.verifying_key()
    }

    /// The key as PEM PKCS#8, as `openssl genpkey -algorithm ed25519` writes it.
    pub fn private_pem(&self) -> zeroize::Zeroizing<String> {
        let der = zeroize::Zeroizing::new([&PKCS8_PREFIX[..], self.0.as_bytes()].concat());
        zeroize::Zeroizing::new(format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            *zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*der))
        ))
    }

    /// The public key as PEM SPKI, for `vodkms audit verify --public-key`.
    pub fn public_pem(&self) -> String {
        let der = [&SPKI_PREFIX[..], self.verifying_key().as_bytes()].concat();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    }

    /// A signed checkpoint of `chain`'s head, after `previous` (this
    /// writer's last checkpoint, if any).
    pub fn checkpoint(
        &self,
        trail: &str,
        chain: &Chain,
        previous: Option<&Checkpoint>,
        time: DateTime<Utc>,
    ) -> Checkpoint {
        self.checkpoint_at(trail, chain.writer(), chain.head(), previous, time, false)
    }

    /// A signed checkpoint saying record `head.0` of `writer` hashes to
    /// `head.1` (a writer signs what its database has committed, which
    /// may trail what it has chained).
    pub fn checkpoint_at(
        &self,
        trail: &str,
        writer: Uuid,
        head: (u64, [u8; 32]),
        previous: Option<&Checkpoint>,
        time: DateTime<Utc>,
        last: bool,
    ) -> Checkpoint {
        let mut cp = Checkpoint {
            trail: trail.to_owned(),
            writer,
            number: previous.map_or(1, |p| p.number + 1),
            seq: head.0,
            head: hex(&head.1),
            // Stored with microseconds: sign what will be read back.
            time: DateTime::from_timestamp_micros(time.timestamp_micros()).unwrap_or(time),
            prev_signature: previous.map(|p| p.signature.clone()),
            last,
            signature: String::new(),
        };
        let sig = self.0.sign(&cp.signed_bytes());
        cp.signature = base64::engine::general_purpose::STANDARD.encode(sig.to_bytes());
        cp
    }
}

/// PEM SPKI (`PUBLIC KEY`) or base64 of the 32 raw bytes.
pub fn verifying_key_from_text(text: &str) -> Result<VerifyingKey, KeyError> {
    let der = pem_or_base64(text, "PUBLIC KEY").ok_or(KeyError::BadPublicKey)?;
    let raw = match der.len() {
        32 => &der[..],
        44 if der.starts_with(&SPKI_PREFIX) => &der[12..],
        _ => return Err(KeyError::BadPublicKey),
    };
    let bytes: [u8; 32] = raw.try_into().map_err(|_| KeyError::BadPublicKey)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::BadPublicKey)
}

/// A stored record as the verifier reads it back.
#[derive(Debug, Clone)]
pub struct Row {
    pub link: Link,
    /// The record's canonical bytes, rebuilt from what is stored.
    pub canonical: Vec<u8>,
    /// How to name the record to a human (its id).
    pub id: String,
}

/// The first thing found wrong, naming the record or checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The record's content no longer hashes to its stored hash.
    Edited { writer: Uuid, seq: u64, id: String },
    /// The record does not follow the one before it (records were
    /// deleted, reordered or inserted).
    BrokenLink { writer: Uuid, seq: u64, id: String },
    /// Two records claim one place in a chain.
    Fork { writer: Uuid, seq: u64 },
    /// Records are missing between two that remain.
    Gap { writer: Uuid, after: u64, next: u64 },
    /// A checkpoint's signature does not verify under the public key.
    BadSignature { writer: Uuid, number: u64 },
    /// Checkpoints of a writer are missing, or do not chain.
    CheckpointChain { writer: Uuid, number: u64 },
    /// A signed head names a record that is gone (the newest were deleted).
    Truncated {
        writer: Uuid,
        signed_seq: u64,
        last_seq: u64,
    },
    /// The record at a signed head is not the one that was signed (the
    /// chain was replaced by a recomputed one).
    HeadMismatch { writer: Uuid, seq: u64, id: String },
    /// The off-box copy holds a checkpoint the database lacks or differs on.
    CopyMismatch { writer: Uuid, number: u64 },
    /// A chain with no checkpoint at all: forged, or written without a
    /// signing key.
    Unsigned { writer: Uuid, records: u64 },
    /// Records without chain fields.
    Unchained { count: u64, first_id: String },
    /// A record after its writer's last checkpoint, which said the writer
    /// had ended.
    AfterLast { writer: Uuid, seq: u64, id: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Edited { writer, seq, id } => write!(f, "record {id} (writer {writer}, seq {seq}) was edited: its content does not match its hash"),
            Self::BrokenLink { writer, seq, id } => write!(f, "record {id} (writer {writer}, seq {seq}) does not follow the record before it: records were deleted, reordered or inserted"),
            Self::Fork { writer, seq } => write!(f, "two records claim writer {writer}, seq {seq}"),
            Self::Gap { writer, after, next } => write!(f, "records of writer {writer} between seq {after} and {next} are missing"),
            Self::BadSignature { writer, number } => write!(f, "checkpoint {number} of writer {writer} has a bad signature"),
            Self::CheckpointChain { writer, number } => write!(f, "checkpoint {number} of writer {writer} does not follow the checkpoint before it (checkpoints missing or altered)"),
            Self::Truncated { writer, signed_seq, last_seq } => write!(f, "writer {writer}'s signed head is seq {signed_seq}, but its newest record is seq {last_seq}: the newest records were deleted"),
            Self::HeadMismatch { writer, seq, id } => write!(f, "record {id} (writer {writer}, seq {seq}) is not the record its checkpoint signed: the chain was rewritten"),
            Self::CopyMismatch { writer, number } => write!(f, "checkpoint {number} of writer {writer} in the off-box copy is missing from the database, or differs"),
            Self::Unsigned { writer, records } => write!(f, "writer {writer} has {records} records but no signed checkpoint: its chain was forged, or written without VODKMS_AUDIT_SIGNING_KEY_FILE"),
            Self::AfterLast { writer, seq, id } => write!(f, "record {id} (writer {writer}, seq {seq}) comes after its writer's last checkpoint, which said the writer had ended: it was forged"),
            Self::Unchained { count, first_id } => write!(f, "{count} records carry no chain fields (the first: {first_id}): inserted outside any writer, or written before chaining began"),
        }
    }
}

/// What the verifier read, and what it found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub writers: usize,
    pub records: u64,
    pub checkpoints: usize,
    /// Records after their writer's last checkpoint: chained but not yet
    /// signed (the window DESIGN.md names). Not a problem; told.
    pub unsigned_tail: u64,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Where a writer's chain has got to in the reading.
#[derive(Default)]
struct Position {
    last_seq: u64,
    expected_prev: [u8; 32],
    /// Rows that arrived ahead of their turn, until the rows before them
    /// do (storage order is commit order, so normally none).
    waiting: BTreeMap<u64, Row>,
}

/// Rows held out of turn per writer, past which the oldest is taken as
/// next (a gap is reported) so memory stays bounded on any input.
const MAX_WAITING: usize = 100_000;

/// Checks a trail streamed from storage in the order it was stored (rows of
/// different writers interleaved, each writer's in commit order): memory
/// holds a position per writer and the checkpoints, not the trail (a trail
/// may hold millions of records). Rows out of turn wait for their turn.
pub struct Verifier<'k> {
    key: &'k VerifyingKey,
    /// Per writer: seq → signed head (hex), from checkpoints whose
    /// signature verified.
    signed: BTreeMap<Uuid, BTreeMap<u64, String>>,
    /// Writers with checkpoints, signature good or not.
    checkpointed: std::collections::BTreeSet<Uuid>,
    /// Writers whose newest good checkpoint says they ended: the seq then.
    ended: BTreeMap<Uuid, u64>,
    positions: BTreeMap<Uuid, Position>,
    unchained: u64,
    first_unchained: Option<String>,
    report: Report,
}

impl<'k> Verifier<'k> {
    /// Checks the checkpoints (signatures, their chain, the off-box copy);
    /// rows follow through [`Verifier::push`].
    pub fn new(
        checkpoints: &[Checkpoint],
        copy: Option<&[Checkpoint]>,
        key: &'k VerifyingKey,
    ) -> Self {
        let mut v = Self {
            key,
            signed: BTreeMap::new(),
            checkpointed: checkpoints.iter().map(|c| c.writer).collect(),
            ended: BTreeMap::new(),
            positions: BTreeMap::new(),
            unchained: 0,
            first_unchained: None,
            report: Report {
                checkpoints: checkpoints.len(),
                ..Report::default()
            },
        };
        let mut by_writer: BTreeMap<Uuid, Vec<&Checkpoint>> = BTreeMap::new();
        for c in checkpoints {
            by_writer.entry(c.writer).or_default().push(c);
        }
        for (writer, mut cps) in by_writer {
            cps.sort_by_key(|c| c.number);
            v.check_checkpoints(writer, &cps);
        }
        if let Some(copy) = copy {
            for c in copy {
                let stored = checkpoints
                    .iter()
                    .find(|s| s.writer == c.writer && s.number == c.number);
                if stored != Some(c) {
                    v.report.problems.push(Problem::CopyMismatch {
                        writer: c.writer,
                        number: c.number,
                    });
                }
            }
        }
        v
    }

    fn check_checkpoints(&mut self, writer: Uuid, cps: &[&Checkpoint]) {
        let mut previous: Option<&Checkpoint> = None;
        for &c in cps {
            if !c.verify(self.key) {
                self.report.problems.push(Problem::BadSignature {
                    writer,
                    number: c.number,
                });
                continue;
            }
            let follows = match previous {
                None => c.number == 1 && c.prev_signature.is_none(),
                Some(p) => {
                    c.number == p.number + 1
                        && c.prev_signature.as_deref() == Some(p.signature.as_str())
                        && c.seq >= p.seq
                }
            };
            if !follows {
                self.report.problems.push(Problem::CheckpointChain {
                    writer,
                    number: c.number,
                });
            }
            previous = Some(c);
            self.signed
                .entry(writer)
                .or_default()
                .insert(c.seq, c.head.clone());
        }
        if let Some(newest) = previous.filter(|c| c.last) {
            self.ended.insert(writer, newest.seq);
        }
    }

    /// The next stored row, in storage order.
    pub fn push(&mut self, r: &Row) {
        self.report.records += 1;
        let writer = r.link.writer;
        let seq = r.link.seq;
        let position = self.positions.entry(writer).or_default();
        if seq != 0 && seq <= position.last_seq {
            // Its place in the chain is taken already.
            self.report.problems.push(Problem::Fork { writer, seq });
            return;
        }
        if seq != position.last_seq + 1 {
            if position.waiting.insert(seq, r.clone()).is_some() {
                self.report.problems.push(Problem::Fork { writer, seq });
            }
            if position.waiting.len() > MAX_WAITING {
                self.take_oldest_waiting(writer);
            }
            return;
        }
        self.check(r);
        self.take_waiting_in_turn(writer);
    }

    /// Checks the rows waiting for `writer` whose turn has come.
    fn take_waiting_in_turn(&mut self, writer: Uuid) {
        loop {
            let next = self
                .positions
                .get_mut(&writer)
                .and_then(|p| p.waiting.remove(&(p.last_seq + 1)));
            match next {
                Some(row) => self.check(&row),
                None => return,
            }
        }
    }

    /// Checks `writer`'s oldest waiting row as next: the rows before it
    /// are missing.
    fn take_oldest_waiting(&mut self, writer: Uuid) {
        let oldest = self
            .positions
            .get_mut(&writer)
            .and_then(|p| p.waiting.pop_first());
        if let Some((_, row)) = oldest {
            self.check(&row);
            self.take_waiting_in_turn(writer);
        }
    }

    /// A row at its turn (or, after a gap, the next one there is).
    fn check(&mut self, r: &Row) {
        let l = &r.link;
        let writer = l.writer;
        let Some(position) = self.positions.get_mut(&writer) else {
            return;
        };
        if row_hash(writer, l.seq, &l.prev, &r.canonical) != l.hash {
            self.report.problems.push(Problem::Edited {
                writer,
                seq: l.seq,
                id: r.id.clone(),
            });
        } else if l.seq != position.last_seq + 1 {
            self.report.problems.push(Problem::Gap {
                writer,
                after: position.last_seq,
                next: l.seq,
            });
        } else if l.prev != position.expected_prev {
            self.report.problems.push(Problem::BrokenLink {
                writer,
                seq: l.seq,
                id: r.id.clone(),
            });
        }
        if let Some(&ended_at) = self.ended.get(&writer) {
            if l.seq > ended_at && position.last_seq <= ended_at {
                self.report.problems.push(Problem::AfterLast {
                    writer,
                    seq: l.seq,
                    id: r.id.clone(),
                });
            }
        }
        if let Some(head) = self.signed.get(&writer).and_then(|s| s.get(&l.seq)) {
            if *head != hex(&l.hash) {
                self.report.problems.push(Problem::HeadMismatch {
                    writer,
                    seq: l.seq,
                    id: r.id.clone(),
                });
            }
        }
        position.expected_prev = l.hash;
        position.last_seq = l.seq;
    }

    /// A stored record without chain fields: written by no chaining writer,
    /// so inserted around the chains (or from before chaining began).
    pub fn push_unchained(&mut self, id: &str) {
        self.report.records += 1;
        self.unchained += 1;
        if self.first_unchained.is_none() {
            self.first_unchained = Some(id.to_owned());
        }
    }

    /// Ends a writer: its newest signed head must still be there, and a
    /// writer with records must have checkpoints (a writer with a signing
    /// key signs before its first record, so a chain without any is
    /// forged, or was written with no key).
    fn close(&mut self, writer: Uuid, last_seq: u64) {
        let newest_signed = self
            .signed
            .get(&writer)
            .and_then(|s| s.keys().next_back().copied());
        match newest_signed {
            Some(signed_seq) if signed_seq > last_seq => {
                self.report.problems.push(Problem::Truncated {
                    writer,
                    signed_seq,
                    last_seq,
                })
            }
            Some(_) if self.ended.contains_key(&writer) => {}
            Some(signed_seq) => self.report.unsigned_tail += last_seq - signed_seq,
            None if self.checkpointed.contains(&writer) => {}
            None => self.report.problems.push(Problem::Unsigned {
                writer,
                records: last_seq,
            }),
        }
    }

    pub fn finish(mut self) -> Report {
        let writers: Vec<Uuid> = self.positions.keys().copied().collect();
        for &writer in &writers {
            // Rows still waiting: the ones before them never came.
            while self
                .positions
                .get(&writer)
                .is_some_and(|p| !p.waiting.is_empty())
            {
                self.take_oldest_waiting(writer);
            }
            let last_seq = self.positions.get(&writer).map_or(0, |p| p.last_seq);
            self.close(writer, last_seq);
        }
        self.report.writers = writers.len();
        // Writers whose records are all gone but whose checkpoints remain.
        let gone: Vec<(Uuid, u64)> = self
            .signed
            .iter()
            .filter(|(w, _)| !self.positions.contains_key(w))
            .filter_map(|(w, heads)| heads.keys().next_back().map(|&s| (*w, s)))
            .collect();
        for (writer, signed_seq) in gone {
            self.report.writers += 1;
            if signed_seq > 0 {
                self.report.problems.push(Problem::Truncated {
                    writer,
                    signed_seq,
                    last_seq: 0,
                });
            }
        }
        if self.unchained > 0 {
            self.report.problems.push(Problem::Unchained {
                count: self.unchained,
                first_id: self.first_unchained.take().unwrap_or_default(),
            });
        }
        self.report.problems.dedup();
        self.report
    }
}

/// Checks `rows` (any order), the `checkpoints` stored with them, and an
/// off-box `copy` of checkpoints if given, under `key`. Every problem is
/// listed, the first of each chain first.
pub fn verify(
    rows: &[Row],
    checkpoints: &[Checkpoint],
    copy: Option<&[Checkpoint]>,
    key: &VerifyingKey,
) -> Report {
    let mut v = Verifier::new(checkpoints, copy, key);
    for r in rows {
        v.push(r);
    }
    v.finish()
}

#[cfg(test)]
mod tests;
