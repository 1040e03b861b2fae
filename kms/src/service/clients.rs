//! API clients: creation (token shown once), listing, revocation, bootstrap.

use std::sync::Arc;

use rand::rngs::OsRng;
use uuid::Uuid;

use super::{AuditEvent, Caller, Clock, Kms, KmsError, RequestContext};
use crate::crypto::ApiToken;
use crate::model::{AuditRecord, ClientRecord, Operation, Role, Roles};
use crate::store::Store;

pub const MAX_CLIENT_NAME_LEN: usize = 128;
pub const MAX_CLIENT_KEY_IDS: usize = 1000;

#[derive(Debug, Clone)]
pub struct NewClient {
    pub name: String,
    pub roles: Roles,
    /// Key ids or aliases; resolved to ids when the client is created.
    pub key_ids: Option<Vec<String>>,
}

/// A created client and its token, which is never shown again.
#[derive(Debug)]
pub struct ClientCreated {
    pub client: ClientRecord,
    pub token: ApiToken,
}

fn validate_name(name: &str) -> Result<(), KmsError> {
    if name.trim().is_empty()
        || name.chars().count() > MAX_CLIENT_NAME_LEN
        || name.chars().any(char::is_control)
    {
        return Err(KmsError::invalid(format!(
            "Name must be 1..={MAX_CLIENT_NAME_LEN} printable characters"
        )));
    }
    Ok(())
}

fn new_client(
    name: String,
    roles: Roles,
    key_ids: Option<Vec<Uuid>>,
    clock: &dyn Clock,
) -> ClientCreated {
    let token = ApiToken::generate(&mut OsRng);
    ClientCreated {
        client: ClientRecord {
            id: Uuid::new_v4(),
            name,
            roles,
            key_ids,
            token_digest: token.digest(),
            created_at: clock.now(),
            revoked_at: None,
        },
        token,
    }
}

fn client_detail(c: &ClientRecord) -> serde_json::Value {
    serde_json::json!({ "ClientId": c.id, "Name": c.name, "Role": c.roles.as_string(), "KeyIds": c.key_ids })
}

impl Kms {
    pub async fn create_client(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        req: NewClient,
    ) -> Result<ClientCreated, KmsError> {
        let mut ev = self.begin_audit(Operation::CreateClient, ctx)?;
        ev.caller(caller);
        let result = self.create_client_inner(caller, req, &mut ev).await;
        self.end_audit(ev, &result);
        result
    }

    async fn create_client_inner(
        &self,
        caller: &Caller,
        req: NewClient,
        ev: &mut AuditEvent,
    ) -> Result<ClientCreated, KmsError> {
        caller.require(Role::Admin, None)?;
        validate_name(&req.name)?;
        let key_ids = match req.key_ids {
            None => None,
            Some(keys) if keys.len() > MAX_CLIENT_KEY_IDS => {
                return Err(KmsError::invalid(format!(
                    "KeyIds may list at most {MAX_CLIENT_KEY_IDS} keys"
                )))
            }
            Some(keys) => {
                let mut ids = Vec::with_capacity(keys.len());
                for k in &keys {
                    let id = self.resolve_key_id(k).await?;
                    self.0.store.key(id).await?.ok_or(KmsError::KeyNotFound)?;
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                Some(ids)
            }
        };
        let created = new_client(req.name, req.roles, key_ids, self.0.clock.as_ref());
        ev.record.detail = Some(client_detail(&created.client));
        self.0.store.create_client(&created.client).await?;
        self.0
            .caches
            .add_known([created.client.token_digest.0], [], false);
        Ok(created)
    }

    pub async fn list_clients(&self, caller: &Caller) -> Result<Vec<ClientRecord>, KmsError> {
        caller.require(Role::Admin, None)?;
        Ok(self.0.store.list_clients().await?)
    }

    /// Revokes at once here, and in other processes when they hear the change.
    pub async fn revoke_client(
        &self,
        caller: &Caller,
        ctx: &RequestContext,
        id: Uuid,
    ) -> Result<(), KmsError> {
        let mut ev = self.begin_audit(Operation::RevokeClient, ctx)?;
        ev.caller(caller);
        ev.record.detail = Some(serde_json::json!({ "ClientId": id }));
        let result = async {
            caller.require(Role::Admin, None)?;
            let revoked = self.0.store.revoke_client(id, self.now()).await?;
            self.0.caches.invalidate_client(id);
            if revoked {
                Ok(())
            } else {
                Err(KmsError::ClientNotFound)
            }
        }
        .await;
        self.end_audit(ev, &result);
        result
    }

    /// Audit records for admins, newest first.
    pub async fn query_audit(
        &self,
        caller: &Caller,
        filter: &crate::model::AuditFilter,
    ) -> Result<Vec<(i64, AuditRecord)>, KmsError> {
        caller.require(Role::Admin, None)?;
        Ok(self.0.store.query_audit(filter).await?)
    }
}

/// Creates the first admin client (CLI `vodkms bootstrap`). Refuses when an
/// active admin exists, unless `force`. Audited directly: no server runs.
pub async fn bootstrap_admin(
    store: Arc<dyn Store>,
    clock: &dyn Clock,
    name: String,
    force: bool,
    chain: Option<&foundation::audit::ChainConfig>,
) -> Result<ClientCreated, KmsError> {
    validate_name(&name)?;
    if !force && store.any_active_admin().await? {
        return Err(KmsError::AdminExists);
    }
    let created = new_client(name, Roles::one(Role::Admin), None, clock);
    store.create_client(&created.client).await?;
    let record = AuditRecord {
        id: Uuid::now_v7(),
        time: clock.now(),
        client_id: None,
        operation: Operation::CreateClient,
        key_id: None,
        key_version: None,
        encryption_context: None,
        outcome: crate::model::OUTCOME_SUCCESS.to_owned(),
        request_id: "bootstrap".to_owned(),
        protocol: None,
        access_key_id: None,
        link: None,
        detail: Some(client_detail(&created.client)),
    };
    super::audit::write_directly(store, chain, vec![record])
        .await
        .map_err(crate::store::StoreError::from)?;
    Ok(created)
}
