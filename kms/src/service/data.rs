//! Envelope operations: the hot path. Once caches are warm these make no
//! database round trip: clients, keys and encryption allowances are in memory
//! and audit records are buffered.

use rand::rngs::OsRng;
use uuid::Uuid;

use super::usage::Grant;
use super::videos::VIDEO_ID_CONTEXT_KEY;
use super::{AuditEvent, Caller, Credential, Kms, KmsError, RequestContext};
use crate::crypto::blob::{MAX_DATA_KEY_BYTES, MAX_PLAINTEXT};
use crate::crypto::{
    generate_data_key, validate_context, Blob, BlobHeader, DataKeySpec, EncryptionContext,
    Envelope, SecretBytes,
};
use crate::model::{Operation, Role};

#[derive(Debug, Clone)]
pub struct DataKeyRequest {
    pub key_id: String,
    pub spec: DataKeySpec,
    pub context: EncryptionContext,
}

#[derive(Debug)]
pub struct GeneratedDataKey {
    pub key_id: Uuid,
    pub version: u32,
    /// `None` for generate-data-key-without-plaintext.
    pub plaintext: Option<SecretBytes>,
    pub blob: Blob,
}

/// Most data keys one `generate-data-keys` call mints.
pub const MAX_BATCH_KEYS: u32 = 1000;
/// How long a ClientToken returns the same batch.
pub const CLIENT_TOKEN_HOURS: i64 = 24;
/// Longest ClientToken (AWS allows 64 characters too).
pub const MAX_CLIENT_TOKEN_LEN: usize = 64;

/// Data keys minted in one call, all under one key version.
#[derive(Debug)]
pub struct GeneratedBatch {
    pub key_id: Uuid,
    pub keys: Vec<GeneratedDataKey>,
    /// Served again for a repeated ClientToken.
    pub repeated: bool,
}

#[derive(Debug)]
pub struct Decrypted {
    pub key_id: Uuid,
    pub version: u32,
    pub plaintext: SecretBytes,
}

#[derive(Debug)]
pub struct ReEncrypted {
    pub key_id: Uuid,
    pub version: u32,
    pub source_key_id: Uuid,
    pub source_version: u32,
    pub blob: Blob,
}

/// One blob of a batch re-encrypt.
#[derive(Debug, Clone)]
pub struct ReEncryptItem {
    pub ciphertext_blob: String,
    pub source_context: EncryptionContext,
    pub destination_key: Option<String>,
    pub destination_context: Option<EncryptionContext>,
}

#[derive(Debug)]
pub struct Encrypted {
    pub key_id: Uuid,
    pub version: u32,
    pub blob: Blob,
}

/// What a ClientToken promises to repeat: the key, the spec, the count and
/// the context (a BTreeMap, so serialized in order).
fn batch_fingerprint(key_id: Uuid, req: &DataKeyRequest, count: u32) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(key_id.as_bytes());
    h.update(format!("{:?}/{count}/", req.spec).as_bytes());
    h.update(serde_json::to_vec(&req.context).unwrap_or_default());
    h.finalize().to_vec()
}

fn check_context(ctx: &EncryptionContext) -> Result<(), KmsError> {
    validate_context(ctx).map_err(|e| KmsError::invalid(e.to_string()))
}

impl Kms {
    pub async fn generate_data_key(
        &self,
        cred: impl Into<Credential<'_>>,
        ctx: &RequestContext,
        req: DataKeyRequest,
        with_plaintext: bool,
    ) -> Result<GeneratedDataKey, KmsError> {
        let op = if with_plaintext {
            Operation::GenerateDataKey
        } else {
            Operation::GenerateDataKeyWithoutPlaintext
        };
        let mut ev = self.begin_audit(op, ctx)?;
        let result = async {
            let caller = &self.credential(cred.into()).await?;
            ev.caller(caller);
            let plaintext = generate_data_key(req.spec, &mut OsRng);
            let blob = self
                .seal_new(caller, ctx, &req.key_id, &plaintext, &req.context, &mut ev)
                .await?;
            Ok(GeneratedDataKey {
                key_id: blob.header.key_id,
                version: blob.header.version,
                plaintext: with_plaintext.then_some(plaintext),
                blob,
            })
        }
        .await;
        self.end_audit(ev, &result);
        result
    }

    /// `count` data keys in one call (one audit record). With a
    /// `client_token`, a repeat of the same request within
    /// `CLIENT_TOKEN_HOURS` returns the same keys, opened again from the
    /// stored blobs; the same token with another request is refused.
    pub async fn generate_data_keys(
        &self,
        cred: impl Into<Credential<'_>>,
        ctx: &RequestContext,
        req: DataKeyRequest,
        count: u32,
        client_token: Option<String>,
    ) -> Result<GeneratedBatch, KmsError> {
        let mut ev = self.begin_audit(Operation::GenerateDataKeys, ctx)?;
        let result = async {
            let caller = &self.credential(cred.into()).await?;
            ev.caller(caller);
            if !(1..=MAX_BATCH_KEYS).contains(&count) {
                return Err(KmsError::invalid(format!(
                    "Count must be 1..={MAX_BATCH_KEYS}"
                )));
            }
            if let Some(t) = &client_token {
                let ok = !t.is_empty()
                    && t.len() <= MAX_CLIENT_TOKEN_LEN
                    && t.bytes().all(|b| b.is_ascii_graphic());
                if !ok {
                    return Err(KmsError::invalid(format!(
                        "ClientToken must be 1..={MAX_CLIENT_TOKEN_LEN} printable characters"
                    )));
                }
            }
            check_context(&req.context)?;
            ev.context(&req.context);
            let key_id = self
                .resolve_key_for(caller, Role::Generate, &req.key_id)
                .await?;
            ev.key(key_id, None);
            crate::model::add_detail(&mut ev.record.detail, "Count", count);
            let Some(token) = client_token else {
                let keys = self.mint_batch(ctx, key_id, &req, count, &mut ev).await?;
                return Ok(GeneratedBatch {
                    key_id,
                    keys,
                    repeated: false,
                });
            };
            crate::model::add_detail(&mut ev.record.detail, "ClientToken", token.as_str());
            let fingerprint = batch_fingerprint(key_id, &req, count);
            let client_id = caller.client().id;
            let now = self.now();
            let since = now - chrono::Duration::hours(CLIENT_TOKEN_HOURS);
            let held = match self
                .0
                .store
                .idempotent_batch(client_id, &token, since)
                .await?
            {
                Some(held) => held,
                None => {
                    let keys = self.mint_batch(ctx, key_id, &req, count, &mut ev).await?;
                    let batch = crate::model::IdempotentBatch {
                        client_id,
                        client_token: token.clone(),
                        fingerprint: fingerprint.clone(),
                        blobs: keys.iter().map(|k| k.blob.to_text()).collect(),
                        created_at: now,
                    };
                    let held = self.0.store.put_idempotent_batch(&batch, since).await?;
                    if held.blobs == batch.blobs {
                        return Ok(GeneratedBatch {
                            key_id,
                            keys,
                            repeated: false,
                        });
                    }
                    // A parallel call with the same token stored its batch
                    // first: that one is the answer (these keys were never
                    // returned, so they are simply dropped).
                    held
                }
            };
            if held.fingerprint != fingerprint {
                return Err(KmsError::IdempotentParameterMismatch);
            }
            crate::model::add_detail(&mut ev.record.detail, "Repeated", true);
            let mut keys = Vec::with_capacity(held.blobs.len());
            for text in &held.blobs {
                let blob = Blob::from_text(text)?;
                ev.key(blob.header.key_id, Some(blob.header.version));
                let plaintext = self.open_blob(&blob, &req.context).await?;
                keys.push(GeneratedDataKey {
                    key_id: blob.header.key_id,
                    version: blob.header.version,
                    plaintext: Some(plaintext),
                    blob,
                });
            }
            Ok(GeneratedBatch {
                key_id,
                keys,
                repeated: true,
            })
        }
        .await;
        self.end_audit(ev, &result);
        result
    }

    async fn mint_batch(
        &self,
        ctx: &RequestContext,
        key_id: Uuid,
        req: &DataKeyRequest,
        count: u32,
        ev: &mut AuditEvent,
    ) -> Result<Vec<GeneratedDataKey>, KmsError> {
        let mut keys = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        for _ in 0..count {
            let plaintext = generate_data_key(req.spec, &mut OsRng);
            let blob = self
                .seal_under_primary(ctx, key_id, &plaintext, &req.context, ev)
                .await?;
            keys.push(GeneratedDataKey {
                key_id,
                version: blob.header.version,
                plaintext: Some(plaintext),
                blob,
            });
        }
        Ok(keys)
    }

    /// Seals the caller's own bytes (1..=4 KiB) under a master key's primary
    /// version: the same blob as a data key's, so `decrypt` opens it. Needs
    /// the generate role, as minting a data key does.
    pub async fn encrypt(
        &self,
        cred: impl Into<Credential<'_>>,
        ctx: &RequestContext,
        key_id: &str,
        plaintext: SecretBytes,
        context: EncryptionContext,
    ) -> Result<Encrypted, KmsError> {
        let mut ev = self.begin_audit(Operation::Encrypt, ctx)?;
        let result = async {
            let caller = &self.credential(cred.into()).await?;
            ev.caller(caller);
            if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
                return Err(KmsError::invalid(format!(
                    "Plaintext must be 1..={MAX_PLAINTEXT} bytes"
                )));
            }
            let blob = self
                .seal_new(caller, ctx, key_id, &plaintext, &context, &mut ev)
                .await?;
            Ok(Encrypted {
                key_id: blob.header.key_id,
                version: blob.header.version,
                blob,
            })
        }
        .await;
        self.end_audit(ev, &result);
        result
    }

    /// A new blob, as generate-data-key and encrypt make one: the context
    /// checked, the key resolved for the generate role (and the caller's
    /// scope), `plaintext` sealed under its primary version. The audit
    /// record learns each as it is known.
    async fn seal_new(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        key_ref: &str,
        plaintext: &SecretBytes,
        context: &EncryptionContext,
        ev: &mut AuditEvent,
    ) -> Result<Blob, KmsError> {
        check_context(context)?;
        ev.context(context);
        let key_id = self
            .resolve_key_for(caller, Role::Generate, key_ref)
            .await?;
        ev.key(key_id, None);
        self.seal_under_primary(ctx, key_id, plaintext, context, ev)
            .await
    }

    /// `count` (1..=1024) random bytes, for callers who want the KMS's
    /// randomness. Needs the generate role; audited without a key.
    pub async fn generate_random(
        &self,
        cred: impl Into<Credential<'_>>,
        ctx: &RequestContext,
        count: u32,
    ) -> Result<SecretBytes, KmsError> {
        let mut ev = self.begin_audit(Operation::GenerateRandom, ctx)?;
        let result = async {
            let caller = &self.credential(cred.into()).await?;
            ev.caller(caller);
            // No key is involved, so a client limited to some keys may too.
            caller.require_role(Role::Generate)?;
            let count = u16::try_from(count)
                .ok()
                .filter(|n| (1..=MAX_DATA_KEY_BYTES).contains(&usize::from(*n)))
                .ok_or_else(|| {
                    KmsError::invalid(format!("NumberOfBytes must be 1..={MAX_DATA_KEY_BYTES}"))
                })?;
            Ok(generate_data_key(DataKeySpec::Bytes(count), &mut OsRng))
        }
        .await;
        self.end_audit(ev, &result);
        result
    }

    pub async fn decrypt(
        &self,
        cred: impl Into<Credential<'_>>,
        ctx: &RequestContext,
        blob_text: &str,
        context: EncryptionContext,
    ) -> Result<Decrypted, KmsError> {
        let mut ev = self.begin_audit(Operation::Decrypt, ctx)?;
        let result = async {
            let caller = &self.credential(cred.into()).await?;
            ev.caller(caller);
            check_context(&context)?;
            ev.context(&context);
            let blob = Blob::from_text(blob_text)?;
            let BlobHeader {
                key_id, version, ..
            } = blob.header;
            ev.key(key_id, Some(version));
            caller.require(Role::Decrypt, Some(key_id))?;
            let plaintext = self.open_blob(&blob, &context).await?;
            Ok(Decrypted {
                key_id,
                version,
                plaintext,
            })
        }
        .await;
        self.end_audit(ev, &result);
        result
    }

    /// Decrypts and re-seals server-side; the plaintext never leaves.
    pub async fn re_encrypt(
        &self,
        cred: impl Into<Credential<'_>>,
        ctx: &RequestContext,
        blob_text: &str,
        source_context: EncryptionContext,
        destination_key: Option<&str>,
        destination_context: Option<EncryptionContext>,
    ) -> Result<ReEncrypted, KmsError> {
        let mut ev = self.begin_audit(Operation::ReEncrypt, ctx)?;
        let dest_context = destination_context.unwrap_or_else(|| source_context.clone());
        let result = async {
            let caller = &self.credential(cred.into()).await?;
            ev.caller(caller);
            check_context(&source_context)?;
            check_context(&dest_context)?;
            ev.context(&dest_context);
            let blob = Blob::from_text(blob_text)?;
            let source = blob.header;
            ev.record.detail = Some(serde_json::json!({
                "SourceKeyId": source.key_id,
                "SourceKeyVersionId": source.version,
            }));
            caller.require(Role::Generate, Some(source.key_id))?;
            // A new context is a new video: moving a key there is as good as
            // reading it, so it takes the decrypt right on the source key too.
            if dest_context != source_context {
                caller
                    .require(Role::Decrypt, Some(source.key_id))
                    .map_err(|_| {
                        KmsError::AccessDenied(
                            "changing the EncryptionContext needs the decrypt right on the source key"
                                .into(),
                        )
                    })?;
            }
            let dest_id = match destination_key {
                Some(k) => self.resolve_key_for(caller, Role::Generate, k).await?,
                None => source.key_id,
            };
            ev.key(dest_id, None);
            let plaintext = self.open_blob(&blob, &source_context).await?;
            let sealed = self
                .seal_under_primary(ctx, dest_id, &plaintext, &dest_context, &mut ev)
                .await?;
            Ok(ReEncrypted {
                key_id: dest_id,
                version: sealed.header.version,
                source_key_id: source.key_id,
                source_version: source.version,
                blob: sealed,
            })
        }
        .await;
        self.end_audit(ev, &result);
        result
    }

    /// Opens a blob for `context`: refused when its version is retired, or
    /// (v2) when its video's secret is shredded or about to be.
    /// Up to `MAX_BATCH_KEYS` re-encrypts for one caller, each on its own
    /// (its own audit record, its own answer): one bad blob does not fail
    /// the rest. Authenticated once, before anything else is looked at.
    pub async fn re_encrypt_batch(
        &self,
        cred: impl Into<Credential<'_>>,
        ctx: &RequestContext,
        items: Vec<ReEncryptItem>,
    ) -> Result<Vec<Result<ReEncrypted, KmsError>>, KmsError> {
        let caller = match self.credential(cred.into()).await {
            Ok(c) => c,
            Err(e) => {
                self.audit_refusal(Operation::ReEncrypt, ctx, None, &e);
                return Err(e);
            }
        };
        if let Err(e) = caller.require_role(Role::Generate) {
            self.audit_refusal(Operation::ReEncrypt, ctx, Some(&caller), &e);
            return Err(e);
        }
        if items.is_empty() || items.len() > MAX_BATCH_KEYS as usize {
            return Err(KmsError::invalid(format!(
                "a batch re-encrypt takes 1..={MAX_BATCH_KEYS} items"
            )));
        }
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(
                self.re_encrypt(
                    caller.clone(),
                    ctx,
                    &item.ciphertext_blob,
                    item.source_context,
                    item.destination_key.as_deref(),
                    item.destination_context,
                )
                .await,
            );
        }
        Ok(out)
    }

    async fn open_blob(
        &self,
        blob: &Blob,
        context: &EncryptionContext,
    ) -> Result<SecretBytes, KmsError> {
        let unauthentic =
            || KmsError::InvalidCiphertext(crate::crypto::BlobError::AuthenticationFailed);
        let key = self.load_key(blob.header.key_id).await?;
        Self::require_usable(key.record.state)?;
        // A version the key never had is a bad ciphertext, not a retired one.
        let version = key
            .versions
            .get(&blob.header.version)
            .ok_or_else(unauthentic)?;
        let min = key.record.min_decryption_version;
        if blob.header.version < min {
            return Err(KmsError::KeyVersionRetired(min));
        }
        if !blob.header.per_video {
            return Ok(blob.open(version, context)?);
        }
        let video_id = context.get(VIDEO_ID_CONTEXT_KEY).ok_or_else(unauthentic)?;
        let video = self.load_video(video_id).await?.ok_or_else(unauthentic)?;
        let opening = Self::per_video_key(&video, version, blob.header_bytes(), video_id)?;
        Ok(blob.open(&opening, context)?)
    }

    /// Seals under the key's primary version, rotating first if that version
    /// has used up its encryptions.
    async fn seal_under_primary(
        &self,
        ctx: &RequestContext,
        key_id: Uuid,
        plaintext: &SecretBytes,
        context: &EncryptionContext,
        ev: &mut AuditEvent,
    ) -> Result<Blob, KmsError> {
        for _ in 0..3 {
            let key = self.load_key(key_id).await?;
            Self::require_usable(key.record.state)?;
            let version = key.record.primary_version;
            ev.key(key_id, Some(version));
            let master = key
                .versions
                .get(&version)
                .ok_or_else(|| KmsError::Internal("the primary key version is missing".into()))?;
            // Bound to the video's secret when the key asks for it and the
            // context names a video (checked before taking an allowance).
            let video = match context.get(VIDEO_ID_CONTEXT_KEY) {
                Some(video_id) if key.record.per_video_keys => {
                    Some((video_id, self.video_secret_to_seal(video_id, ev).await?))
                }
                _ => None,
            };
            match self.0.usage.take(key_id, version).await? {
                Grant::Granted => {
                    let Some((video_id, state)) = video else {
                        let header = BlobHeader::v1(key_id, version);
                        return Blob::seal(master, header, plaintext, context, &mut OsRng)
                            .map_err(KmsError::from);
                    };
                    let header = BlobHeader::per_video(key_id, version);
                    let sealing =
                        Self::per_video_key(&state, master, &header.to_bytes(), video_id)?;
                    return Blob::seal(&sealing, header, plaintext, context, &mut OsRng)
                        .map_err(KmsError::from);
                }
                Grant::Exhausted => {
                    self.rotate_as_system(ctx, key_id, version, "UsageLimit")
                        .await?;
                    self.0.caches.invalidate_key(key_id);
                }
            }
        }
        Err(KmsError::Internal(
            "could not obtain an encryption allowance".into(),
        ))
    }
}
