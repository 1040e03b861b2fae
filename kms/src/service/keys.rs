//! Master key lifecycle: create, describe, rotate, disable/enable, deletion.

use chrono::{DateTime, Duration, Utc};
use rand::rngs::OsRng;
use uuid::Uuid;

use super::{Caller, Kms, KmsError, RequestContext};
use crate::crypto::MasterKey;
use crate::model::{KeyRecord, KeyState, Operation, Role, VersionRecord};
use crate::store::{NewKey, StoreError};

pub const MAX_DESCRIPTION_LEN: usize = 8192;
pub const MAX_ALIAS_LEN: usize = 256;
pub const MAX_ROTATION_PERIOD_DAYS: u32 = 3650;
/// Longest window of the per-version usage report.
pub const MAX_USAGE_WINDOW_DAYS: u32 = 366;
pub const DELETION_WINDOW_DAYS: std::ops::RangeInclusive<u32> = 7..=30;

#[derive(Debug, Clone, Default)]
pub struct NewKeyRequest {
    pub alias: Option<String>,
    pub description: Option<String>,
    pub rotation_period_days: Option<u32>,
    /// Bind data keys minted with a `video_id` context to that video's
    /// secret (crypto-shreddable per video).
    pub per_video_keys: bool,
}

/// A key as admins see it: metadata and version list, never material.
#[derive(Debug, Clone)]
pub struct KeyView {
    pub record: KeyRecord,
    pub versions: Vec<(u32, DateTime<Utc>)>,
}

fn validate_alias(alias: &str) -> Result<(), KmsError> {
    let name = alias.strip_prefix("alias/").unwrap_or("");
    let ok = !name.is_empty()
        && alias.len() <= MAX_ALIAS_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-.".contains(&b))
        && !name.starts_with('/')
        && !name.ends_with('/')
        && !name.contains("//");
    if ok {
        Ok(())
    } else {
        Err(KmsError::invalid(format!(
            "Alias must look like `alias/name`: at most {MAX_ALIAS_LEN} characters of A-Z a-z 0-9 / _ - ."
        )))
    }
}

impl Kms {
    pub async fn create_key(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        req: NewKeyRequest,
    ) -> Result<KeyView, KmsError> {
        let mut ev = self.begin_audit(Operation::CreateKey, ctx)?;
        ev.caller(caller);
        let result = self.create_key_inner(caller, req).await;
        if let Ok(view) = &result {
            ev.key(view.record.id, Some(1));
        }
        self.end_audit(ev, &result);
        result
    }

    async fn create_key_inner(
        &self,
        caller: &Caller,
        req: NewKeyRequest,
    ) -> Result<KeyView, KmsError> {
        caller.require(Role::Admin, None)?;
        if let Some(alias) = &req.alias {
            validate_alias(alias)?;
        }
        let description = req.description.unwrap_or_default();
        if description.chars().count() > MAX_DESCRIPTION_LEN || description.contains('\0') {
            return Err(KmsError::invalid(format!(
                "Description must be at most {MAX_DESCRIPTION_LEN} characters, without NUL characters"
            )));
        }
        if let Some(d) = req.rotation_period_days {
            if !(1..=MAX_ROTATION_PERIOD_DAYS).contains(&d) {
                return Err(KmsError::invalid(format!(
                    "RotationPeriodInDays must be 1..={MAX_ROTATION_PERIOD_DAYS}"
                )));
            }
        }
        let now = self.now();
        let id = Uuid::new_v4();
        let material = MasterKey::generate(&mut OsRng);
        let record = KeyRecord {
            id,
            aliases: req.alias.into_iter().collect(),
            description,
            state: KeyState::Enabled,
            primary_version: 1,
            rotation_period_days: req.rotation_period_days,
            last_rotated_at: now,
            deletion_date: None,
            created_at: now,
            min_decryption_version: 1,
            per_video_keys: req.per_video_keys,
        };
        let first_version = VersionRecord {
            key_id: id,
            version: 1,
            wrapped: self.0.root.wrap(id, 1, &material, &mut OsRng),
            created_at: now,
        };
        self.0
            .store
            .create_key(&NewKey {
                record: record.clone(),
                first_version,
            })
            .await?;
        Ok(KeyView {
            record,
            versions: vec![(1, now)],
        })
    }

    /// Reads fresh from the database: admin reads are not the hot path.
    async fn key_view(&self, id: Uuid) -> Result<KeyView, KmsError> {
        let record = self.0.store.key(id).await?.ok_or(KmsError::KeyNotFound)?;
        let versions = self.0.store.key_versions(id).await?;
        Ok(KeyView {
            record,
            versions: versions
                .into_iter()
                .map(|v| (v.version, v.created_at))
                .collect(),
        })
    }

    pub async fn describe_key(&self, caller: &Caller, key: &str) -> Result<KeyView, KmsError> {
        let id = self.resolve_key_for(caller, Role::Admin, key).await?;
        self.key_view(id).await
    }

    pub async fn list_keys(&self, caller: &Caller) -> Result<Vec<KeyView>, KmsError> {
        if !caller.client().roles.contains(Role::Admin) {
            return Err(KmsError::AccessDenied(
                "this call needs a client of role `admin`".into(),
            ));
        }
        let mut views = Vec::new();
        for record in self.0.store.list_keys().await? {
            if caller.may_use(record.id) {
                let versions = self.0.store.key_versions(record.id).await?;
                views.push(KeyView {
                    record,
                    versions: versions
                        .into_iter()
                        .map(|v| (v.version, v.created_at))
                        .collect(),
                });
            }
        }
        Ok(views)
    }

    /// Runs a key-addressed admin operation with its audit record.
    async fn admin_key_op<T, F, Fut>(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        op: Operation,
        key: &str,
        f: F,
    ) -> Result<T, KmsError>
    where
        F: FnOnce(Uuid) -> Fut,
        Fut: std::future::Future<Output = Result<(T, Option<u32>), KmsError>>,
    {
        let mut ev = self.begin_audit(op, ctx)?;
        ev.caller(caller);
        let result = async {
            let id = self.resolve_key_for(caller, Role::Admin, key).await?;
            ev.key(id, None);
            let (out, version) = f(id).await?;
            ev.key(id, version);
            Ok(out)
        }
        .await;
        self.end_audit(ev, &result);
        result
    }

    /// Points a new alias at a key (a key may have several).
    pub async fn create_alias(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        alias: &str,
        key: &str,
    ) -> Result<(), KmsError> {
        self.admin_key_op(caller, ctx, Operation::CreateAlias, key, |id| async move {
            validate_alias(alias)?;
            if alias.starts_with("alias/aws/") {
                return Err(KmsError::invalid("aliases under alias/aws/ are reserved"));
            }
            let record = self.0.store.key(id).await?.ok_or(KmsError::KeyNotFound)?;
            if record.state == KeyState::Deleted {
                return Err(KmsError::KeyDeleted);
            }
            self.0.store.create_alias(alias, id).await?;
            self.0.caches.invalidate_key(id);
            Ok(((), None))
        })
        .await
    }

    /// Removes an alias; the key stays.
    pub async fn delete_alias(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        alias: &str,
    ) -> Result<(), KmsError> {
        let mut ev = self.begin_audit(Operation::DeleteAlias, ctx)?;
        ev.caller(caller);
        let result = async {
            // The key the alias names must be in the caller's scope.
            let id = self.resolve_key_for(caller, Role::Admin, alias).await?;
            ev.key(id, None);
            match self.0.store.delete_alias(alias).await? {
                Some(_) => {
                    self.0.caches.invalidate_key(id);
                    Ok(())
                }
                None => Err(KmsError::KeyNotFound),
            }
        }
        .await;
        self.end_audit(ev, &result);
        result
    }

    /// Switches automatic rotation on with a period, or off with `None`.
    pub async fn set_rotation_period(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        key: &str,
        days: Option<u32>,
    ) -> Result<KeyView, KmsError> {
        let op = Operation::UpdateRotationPolicy;
        self.admin_key_op(caller, ctx, op, key, |id| async move {
            if let Some(d) = days {
                if !(1..=MAX_ROTATION_PERIOD_DAYS).contains(&d) {
                    return Err(KmsError::invalid(format!(
                        "RotationPeriodInDays must be 1..={MAX_ROTATION_PERIOD_DAYS}"
                    )));
                }
            }
            let record = self.0.store.key(id).await?.ok_or(KmsError::KeyNotFound)?;
            Self::require_usable(record.state)?;
            if !self
                .0
                .store
                .set_rotation_period(id, days, self.now())
                .await?
            {
                return Err(KmsError::KeyNotFound);
            }
            self.0.caches.invalidate_key(id);
            Ok((self.key_view(id).await?, None))
        })
        .await
    }

    /// Adds a new primary version. Returns its number.
    pub async fn rotate_key(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        key: &str,
    ) -> Result<(Uuid, u32), KmsError> {
        self.admin_key_op(caller, ctx, Operation::RotateKey, key, |id| async move {
            let v = self.rotate_once(id, None).await?;
            Ok(((id, v), Some(v)))
        })
        .await
    }

    /// Rotation by the server itself (schedule or usage limit), audited without a client.
    pub(super) async fn rotate_as_system(
        &self,
        ctx: &RequestContext,
        id: Uuid,
        expected_primary: u32,
        reason: &str,
    ) -> Result<u32, KmsError> {
        let mut ev = self.begin_audit(Operation::RotateKey, ctx)?;
        ev.key(id, None);
        ev.record.detail = Some(serde_json::json!({ "Reason": reason }));
        let result = self.rotate_once(id, Some(expected_primary)).await;
        match &result {
            // Someone else rotated first: nothing happened here, nothing to audit.
            Ok(v) if *v == expected_primary => return result,
            Ok(v) => ev.key(id, Some(*v)),
            Err(_) => {}
        }
        self.end_audit(ev, &result);
        result
    }

    /// Adds a version unless the primary already moved past `expected_primary`.
    /// Returns the primary version afterwards.
    async fn rotate_once(&self, id: Uuid, expected_primary: Option<u32>) -> Result<u32, KmsError> {
        for _ in 0..5 {
            let record = self.0.store.key(id).await?.ok_or(KmsError::KeyNotFound)?;
            if let Some(expected) = expected_primary {
                if record.primary_version != expected {
                    return Ok(record.primary_version);
                }
            }
            match record.state {
                KeyState::Enabled => {}
                KeyState::Deleted => return Err(KmsError::KeyDeleted),
                other => {
                    return Err(KmsError::InvalidKeyState(format!(
                        "only Enabled keys can be rotated; this key is {}",
                        other.as_str()
                    )))
                }
            }
            let version = record.primary_version.checked_add(1).ok_or_else(|| {
                KmsError::InvalidKeyState("the key has no version numbers left".into())
            })?;
            let material = MasterKey::generate(&mut OsRng);
            let new = VersionRecord {
                key_id: id,
                version,
                wrapped: self.0.root.wrap(id, version, &material, &mut OsRng),
                created_at: self.now(),
            };
            match self.0.store.add_version(record.primary_version, &new).await {
                Ok(()) => {
                    self.0.caches.invalidate_key(id);
                    return Ok(version);
                }
                Err(StoreError::Conflict) => continue, // concurrent change: re-read
                Err(e) => return Err(e.into()),
            }
        }
        Err(KmsError::InvalidKeyState(
            "the key kept changing during rotation; retry".into(),
        ))
    }

    /// Moves a key between states, explaining a refusal precisely.
    async fn transition(
        &self,
        id: Uuid,
        from: &[KeyState],
        to: KeyState,
        deletion_date: Option<DateTime<Utc>>,
    ) -> Result<KeyView, KmsError> {
        match self.0.store.set_state(id, from, to, deletion_date).await? {
            Some(_) => {
                self.0.caches.invalidate_key(id);
                self.key_view(id).await
            }
            None => {
                let current = self.0.store.key(id).await?.ok_or(KmsError::KeyNotFound)?;
                Err(match current.state {
                    KeyState::Deleted => KmsError::KeyDeleted,
                    KeyState::PendingDeletion => KmsError::KeyPendingDeletion,
                    state => KmsError::InvalidKeyState(format!(
                        "the key is {}; this change needs one of: {}",
                        state.as_str(),
                        from.iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                })
            }
        }
    }

    pub async fn disable_key(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        key: &str,
    ) -> Result<KeyView, KmsError> {
        self.set_enabled(caller, ctx, key, false).await
    }

    pub async fn enable_key(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        key: &str,
    ) -> Result<KeyView, KmsError> {
        self.set_enabled(caller, ctx, key, true).await
    }

    /// Enable or disable; both are idempotent between the two states.
    async fn set_enabled(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        key: &str,
        enable: bool,
    ) -> Result<KeyView, KmsError> {
        let (op, to) = if enable {
            (Operation::EnableKey, KeyState::Enabled)
        } else {
            (Operation::DisableKey, KeyState::Disabled)
        };
        self.admin_key_op(caller, ctx, op, key, |id| async move {
            let from = [KeyState::Enabled, KeyState::Disabled];
            Ok((self.transition(id, &from, to, None).await?, None))
        })
        .await
    }

    pub async fn schedule_key_deletion(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        key: &str,
        pending_window_days: Option<u32>,
    ) -> Result<KeyView, KmsError> {
        self.admin_key_op(
            caller,
            ctx,
            Operation::ScheduleKeyDeletion,
            key,
            |id| async move {
                let days = pending_window_days.unwrap_or(*DELETION_WINDOW_DAYS.end());
                if !DELETION_WINDOW_DAYS.contains(&days) {
                    return Err(KmsError::invalid("PendingWindowInDays must be 7..=30"));
                }
                let when = self.now() + Duration::days(i64::from(days));
                let from = [KeyState::Enabled, KeyState::Disabled];
                let view = self
                    .transition(id, &from, KeyState::PendingDeletion, Some(when))
                    .await?;
                Ok((view, None))
            },
        )
        .await
    }

    /// Retires every version below `min` (1..= the primary version): blobs
    /// sealed under one are refused as `KeyVersionRetired`. A lower `min`
    /// brings versions back; nothing is destroyed.
    pub async fn retire_versions(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        key: &str,
        min: u32,
    ) -> Result<KeyView, KmsError> {
        let mut ev = self.begin_audit(Operation::RetireVersions, ctx)?;
        ev.caller(caller);
        let result = async {
            let id = self.resolve_key_for(caller, Role::Admin, key).await?;
            ev.key(id, None);
            let record = self.0.store.key(id).await?.ok_or(KmsError::KeyNotFound)?;
            if record.state == KeyState::Deleted {
                return Err(KmsError::KeyDeleted);
            }
            if !(1..=record.primary_version).contains(&min) {
                return Err(KmsError::invalid(format!(
                    "MinDecryptionVersion must be 1..={} (the primary version cannot be retired)",
                    record.primary_version
                )));
            }
            crate::model::add_detail(
                &mut ev.record.detail,
                "PreviousMinDecryptionVersion",
                record.min_decryption_version,
            );
            crate::model::add_detail(&mut ev.record.detail, "MinDecryptionVersion", min);
            self.0
                .store
                .set_min_decryption_version(id, min)
                .await?
                .ok_or_else(|| {
                    KmsError::InvalidKeyState("the key changed meanwhile; retry".into())
                })?;
            self.0.caches.invalidate_key(id);
            self.key_view(id).await
        }
        .await;
        self.end_audit(ev, &result);
        result
    }

    /// Decrypts per version of a key over the last `days` days, from the
    /// audit trail: when a version shows none, retiring it is safe.
    pub async fn version_usage(
        &self,
        caller: &Caller,
        key: &str,
        days: u32,
    ) -> Result<(KeyView, Vec<crate::model::VersionUsage>), KmsError> {
        let id = self.resolve_key_for(caller, Role::Admin, key).await?;
        if !(1..=MAX_USAGE_WINDOW_DAYS).contains(&days) {
            return Err(KmsError::invalid(format!(
                "Days must be 1..={MAX_USAGE_WINDOW_DAYS}"
            )));
        }
        let view = self.key_view(id).await?;
        let since = self.now() - Duration::days(i64::from(days));
        let used = self.0.store.version_usage(id, since).await?;
        let usage = view
            .versions
            .iter()
            .map(|(version, _)| {
                used.iter()
                    .find(|u| u.version == *version)
                    .cloned()
                    .unwrap_or(crate::model::VersionUsage {
                        version: *version,
                        decrypts: 0,
                        last_decrypt: None,
                        refused_retired: 0,
                    })
            })
            .collect();
        Ok((view, usage))
    }

    /// Cancels a scheduled deletion. As in AWS KMS the key comes back Disabled,
    /// so nothing starts using it again by accident.
    pub async fn cancel_key_deletion(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        key: &str,
    ) -> Result<KeyView, KmsError> {
        self.admin_key_op(
            caller,
            ctx,
            Operation::CancelKeyDeletion,
            key,
            |id| async move {
                let from = [KeyState::PendingDeletion];
                Ok((
                    self.transition(id, &from, KeyState::Disabled, None).await?,
                    None,
                ))
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::validate_alias;

    #[test]
    fn alias_rules() {
        for ok in ["alias/vod", "alias/team/vod-1", "alias/a.b_c"] {
            assert!(validate_alias(ok).is_ok(), "{ok}");
        }
        for bad in [
            "vod",
            "alias/",
            "alias//x",
            "alias/x/",
            "alias/sp ace",
            "alias/ü",
            &format!("alias/{}", "a".repeat(300)),
        ] {
            assert!(validate_alias(bad).is_err(), "{bad}");
        }
    }
}
