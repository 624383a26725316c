//! Relying parties: who is calling (authentication from a presented credential) and the operator's management of
//! tenants and their API keys (the CLI's `liveness tenants ...`).

use std::sync::Arc;

use super::{Clock, ServiceError};
use crate::credentials::{self, NewApiKey, Presented};
use crate::domain::Policy;
use crate::store::{ApiKeyRecord, MemoryStore, StoreError, Tenant, TenantStore};

/// Whether callers must present credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Everyone acts as the operator under the spec's permissive policy: only for a server bound to loopback.
    Off,
    /// Tenants present API keys, end users client tokens.
    ApiKeys,
}

impl AuthMode {
    /// The setting's name, as `LIVENESS_AUTH` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Off => "off",
            AuthMode::ApiKeys => "api_keys",
        }
    }
}

impl std::str::FromStr for AuthMode {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "off" => Ok(AuthMode::Off),
            "api_keys" => Ok(AuthMode::ApiKeys),
            other => Err(format!("{other:?} is neither api_keys nor off")),
        }
    }
}

/// Who is calling, once their credential is checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    /// Authentication is off: full access under the permissive policy.
    Operator,
    /// A relying party's backend, by one of its API keys.
    Tenant(Tenant),
    /// An end user, by the client token of one session (checked against that session when it is used).
    Client(String),
}

impl Caller {
    /// The tenant of a relying party's backend doing `action` (`None` for the operator); an end user's client
    /// token is refused, since only the backend may do it.
    pub fn backend(&self, action: &str) -> Result<Option<&Tenant>, ServiceError> {
        match self {
            Caller::Operator => Ok(None),
            Caller::Tenant(tenant) => Ok(Some(tenant)),
            Caller::Client(_) => Err(ServiceError::Unauthorized(format!("{action} needs the tenant's API key"))),
        }
    }
}

/// Tenants and their keys over a tenant store.
#[derive(Clone)]
pub struct Tenants {
    store: Arc<dyn TenantStore>,
    mode: AuthMode,
    clock: Arc<dyn Clock>,
}

impl Tenants {
    /// Tenants in `store`, callers authenticated as `mode` says.
    pub fn new(store: Arc<dyn TenantStore>, mode: AuthMode, clock: Arc<dyn Clock>) -> Self {
        Self { store, mode, clock }
    }

    /// No authentication and no tenants: every caller is the operator.
    pub fn off(clock: Arc<dyn Clock>) -> Self {
        Self::new(Arc::new(MemoryStore::new()), AuthMode::Off, clock)
    }

    /// The mode in force.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Checks a presented credential (`Authorization: Bearer` or `X-API-Key`). With authentication off every
    /// caller is the operator. A client token is only recognised here; the session it is used on checks it.
    pub async fn authenticate(&self, credential: Option<&str>) -> Result<Caller, ServiceError> {
        if self.mode == AuthMode::Off {
            return Ok(Caller::Operator);
        }
        let unauthorized = |why: &str| ServiceError::Unauthorized(why.to_owned());
        let credential = credential.ok_or_else(|| unauthorized("an API key or client token is required"))?;
        match Presented::parse(credential) {
            Some(Presented::ApiKey { key_id, secret }) => {
                let key = match self.store.key(key_id).await {
                    Ok(key) => key,
                    Err(StoreError::NotFound) => return Err(unauthorized("unknown API key")),
                    Err(other) => return Err(other.into()),
                };
                if !credentials::verify(secret, &key.digest) || key.revoked {
                    return Err(unauthorized("unknown API key"));
                }
                let tenant = match self.store.tenant(&key.tenant_id).await {
                    Ok(tenant) => tenant,
                    Err(StoreError::NotFound) => return Err(unauthorized("unknown API key")),
                    Err(other) => return Err(other.into()),
                };
                if tenant.disabled {
                    return Err(unauthorized("this tenant is disabled"));
                }
                Ok(Caller::Tenant(tenant))
            }
            Some(Presented::ClientToken(token)) => Ok(Caller::Client(token.to_owned())),
            None => Err(unauthorized("the credential is neither an API key nor a client token")),
        }
    }

    /// Creates a tenant with its first API key (the key is returned once, never stored).
    pub async fn create(&self, name: &str, policy: Policy) -> Result<(Tenant, NewApiKey), ServiceError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(ServiceError::InvalidParameter { name: "name", message: "must be 1 to 200 characters".into() });
        }
        policy.validate().map_err(ServiceError::PolicyViolation)?;
        let now = self.clock.now_ms();
        let tenant = Tenant {
            id: credentials::new_tenant_id(),
            name: name.to_owned(),
            policy,
            disabled: false,
            created_at_ms: now,
        };
        let key = NewApiKey::generate();
        self.store.create_tenant(&tenant, &self.record(&tenant.id, &key)).await?;
        tracing::info!(tenant = %tenant.id, key = %key.key_id, "tenant created");
        Ok((tenant, key))
    }

    /// One tenant.
    pub async fn find(&self, tenant_id: &str) -> Result<Tenant, ServiceError> {
        self.store.tenant(tenant_id).await.map_err(tenant_error(tenant_id))
    }

    /// Every tenant with its keys (digests only).
    pub async fn list(&self) -> Result<Vec<(Tenant, Vec<ApiKeyRecord>)>, ServiceError> {
        let mut listed = Vec::new();
        for tenant in self.store.tenants().await? {
            let keys = self.store.keys(&tenant.id).await?;
            listed.push((tenant, keys));
        }
        Ok(listed)
    }

    /// Adds a new key to a tenant; its other keys keep working until revoked.
    pub async fn rotate_key(&self, tenant_id: &str) -> Result<NewApiKey, ServiceError> {
        let key = NewApiKey::generate();
        self.store.add_key(&self.record(tenant_id, &key)).await.map_err(tenant_error(tenant_id))?;
        tracing::info!(tenant = %tenant_id, key = %key.key_id, "API key added");
        Ok(key)
    }

    /// Revokes one of a tenant's keys.
    pub async fn revoke_key(&self, tenant_id: &str, key_id: &str) -> Result<(), ServiceError> {
        self.store.revoke_key(tenant_id, key_id).await.map_err(tenant_error(tenant_id))?;
        tracing::info!(tenant = %tenant_id, key = %key_id, "API key revoked");
        Ok(())
    }

    /// Disables a tenant: none of its keys works any more.
    pub async fn disable(&self, tenant_id: &str) -> Result<(), ServiceError> {
        let mut tenant = self.store.tenant(tenant_id).await.map_err(tenant_error(tenant_id))?;
        tenant.disabled = true;
        self.store.update_tenant(&tenant).await.map_err(tenant_error(tenant_id))?;
        tracing::info!(tenant = %tenant_id, "tenant disabled");
        Ok(())
    }

    fn record(&self, tenant_id: &str, key: &NewApiKey) -> ApiKeyRecord {
        ApiKeyRecord {
            key_id: key.key_id.clone(),
            tenant_id: tenant_id.to_owned(),
            digest: key.digest.clone(),
            revoked: false,
            created_at_ms: self.clock.now_ms(),
        }
    }
}

/// A tenant store failure, a missing item reported as the tenant (or key) not found.
fn tenant_error(tenant_id: &str) -> impl Fn(StoreError) -> ServiceError + '_ {
    move |error| match error {
        StoreError::NotFound => ServiceError::TenantNotFound(tenant_id.to_owned()),
        other => ServiceError::from(other),
    }
}
