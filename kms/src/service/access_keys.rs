//! Access keys: the credentials of the signed cloud doors (AWS SigV4,
//! Alibaba, Tencent). Their signatures are HMACs, so the secret is kept,
//! wrapped under the root key, and unwrapped into memory only when a door
//! needs it. A client holds at most two, so one can be rotated out while the
//! other serves.

use std::sync::Arc;

use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;
use uuid::Uuid;

use super::cache::AccessKeyEntry;
use super::{Caller, Kms, KmsError, RequestContext};
use crate::crypto::SecretBytes;
use crate::model::{AccessKeyInsert, AccessKeyRecord, Operation, Role};

pub const MAX_ACCESS_KEYS_PER_CLIENT: usize = 2;
/// Access key ids: this prefix and 16 base32 characters (20 in all, the
/// length AWS's have, which some tools check).
pub const ACCESS_KEY_PREFIX: &str = "VKMS";
/// Longest access key id a door will look up; longer ones are refused unread.
pub const MAX_ACCESS_KEY_ID_LEN: usize = 128;

/// A new access key; its secret is shown once and never again.
#[derive(Debug)]
pub struct AccessKeyCreated {
    pub record: AccessKeyRecord,
    /// 40 characters of URL-safe base64 (30 random bytes).
    pub secret: SecretBytes,
}

fn new_access_key_id() -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    let mut id = String::with_capacity(20);
    id.push_str(ACCESS_KEY_PREFIX);
    id.extend(
        bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(b & 31)])),
    );
    id
}

fn new_secret() -> SecretBytes {
    let mut raw = zeroize::Zeroizing::new([0u8; 30]);
    OsRng.fill_bytes(&mut *raw);
    let mut text = zeroize::Zeroizing::new(Vec::with_capacity(40));
    text.extend_from_slice(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(*raw)
            .as_bytes(),
    );
    SecretBytes::from(text)
}

impl Kms {
    pub async fn create_access_key(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        client_id: Uuid,
    ) -> Result<AccessKeyCreated, KmsError> {
        let mut ev = self.begin_audit(Operation::CreateAccessKey, ctx)?;
        ev.caller(caller);
        ev.record.detail = Some(serde_json::json!({ "ClientId": client_id }));
        let result = async {
            caller.require(Role::Admin, None)?;
            let id = new_access_key_id();
            crate::model::add_detail(&mut ev.record.detail, "CreatedAccessKeyId", id.clone());
            let secret = new_secret();
            let record = AccessKeyRecord {
                wrapped_secret: self
                    .0
                    .root
                    .wrap_access_secret(&id, client_id, &secret, &mut OsRng),
                id,
                client_id,
                created_at: self.now(),
            };
            match self
                .0
                .store
                .create_access_key(&record, MAX_ACCESS_KEYS_PER_CLIENT)
                .await?
            {
                AccessKeyInsert::Created => {}
                AccessKeyInsert::ClientNotFound => return Err(KmsError::ClientNotFound),
                AccessKeyInsert::LimitReached => {
                    return Err(KmsError::LimitExceeded(format!(
                        "a client holds at most {MAX_ACCESS_KEYS_PER_CLIENT} access keys; delete one first"
                    )))
                }
            }
            self.0.caches.add_known([], [record.id.clone()], false);
            Ok(AccessKeyCreated { record, secret })
        }
        .await;
        self.end_audit(ev, &result);
        result
    }

    /// A client's access keys, oldest first (no secrets).
    pub async fn list_access_keys(
        &self,
        caller: &Caller,
        client_id: Uuid,
    ) -> Result<Vec<AccessKeyRecord>, KmsError> {
        caller.require(Role::Admin, None)?;
        if !self
            .0
            .store
            .list_clients()
            .await?
            .iter()
            .any(|c| c.id == client_id)
        {
            return Err(KmsError::ClientNotFound);
        }
        Ok(self.0.store.list_access_keys(Some(client_id)).await?)
    }

    /// Deletes at once here, and in other processes when they hear the change.
    pub async fn delete_access_key(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        client_id: Uuid,
        access_key_id: &str,
    ) -> Result<(), KmsError> {
        let mut ev = self.begin_audit(Operation::DeleteAccessKey, ctx)?;
        ev.caller(caller);
        let shown: String = access_key_id.chars().take(MAX_ACCESS_KEY_ID_LEN).collect();
        ev.record.detail = Some(serde_json::json!({
            "ClientId": client_id,
            "DeletedAccessKeyId": shown,
        }));
        let result = async {
            caller.require(Role::Admin, None)?;
            let deleted = self
                .0
                .store
                .delete_access_key(client_id, access_key_id)
                .await?;
            self.0.caches.invalidate_client(client_id);
            if deleted {
                Ok(())
            } else {
                Err(KmsError::AccessKeyNotFound)
            }
        }
        .await;
        self.end_audit(ev, &result);
        result
    }

    /// Authenticates a signed request: `verify` gets the access key's secret
    /// and says whether the request's signature was made with it (the door
    /// compares in constant time). Unknown access keys and revoked clients
    /// are `Unauthenticated`; a wrong signature `SignatureMismatch`.
    pub async fn authenticate_signed(
        &self,
        access_key_id: &str,
        verify: impl FnOnce(&SecretBytes) -> bool,
    ) -> Result<Caller, KmsError> {
        if access_key_id.is_empty() || access_key_id.len() > MAX_ACCESS_KEY_ID_LEN {
            return Err(KmsError::Unauthenticated);
        }
        let entry = match self.cached(self.0.caches.access_key(access_key_id)) {
            Some((entry, fresh)) => {
                if !fresh {
                    self.refresh_in_background(super::cache::Refresh::AccessKey(
                        access_key_id.to_owned(),
                    ));
                }
                entry
            }
            None if self.surely_unknown_access_key(access_key_id) => {
                return Err(KmsError::Unauthenticated)
            }
            None => self
                .fetch_access_key(access_key_id)
                .await?
                .ok_or(KmsError::Unauthenticated)?,
        };
        if entry.client.revoked_at.is_some() {
            return Err(KmsError::Unauthenticated);
        }
        if !verify(&entry.secret) {
            return Err(KmsError::SignatureMismatch);
        }
        Ok(Caller(entry.client.clone()))
    }

    fn surely_unknown_access_key(&self, id: &str) -> bool {
        self.0.caches.known_access_key(id) == Some(false)
            && self.0.freshness.cache_usable()
            && !self.0.unknown_lookups.try_take()
    }

    pub(super) async fn fetch_access_key(
        &self,
        id: &str,
    ) -> Result<Option<Arc<AccessKeyEntry>>, KmsError> {
        let epoch = self.0.caches.epoch();
        self.0
            .credential_lookups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some((record, client)) = self.0.store.access_key(id).await? else {
            self.0.caches.forget_access_key(id);
            return Ok(None);
        };
        let secret = self
            .0
            .root
            .unwrap_access_secret(&record.id, record.client_id, &record.wrapped_secret)
            .map_err(|_| {
                tracing::error!(access_key_id = %record.id, "stored access key secret fails to unwrap");
                KmsError::Internal("a stored access key is corrupt".into())
            })?;
        let entry = Arc::new(AccessKeyEntry {
            client: Arc::new(client),
            secret,
        });
        self.0.caches.put_access_key(epoch, id, entry.clone());
        Ok(Some(entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_secrets_have_the_cloud_shapes() {
        let id = new_access_key_id();
        assert_eq!(id.len(), 20);
        assert!(id.starts_with(ACCESS_KEY_PREFIX));
        assert!(id
            .chars()
            .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c)));
        assert_ne!(new_access_key_id(), id);
        let secret = new_secret();
        assert_eq!(secret.len(), 40);
        assert_ne!(new_secret(), secret);
    }
}
