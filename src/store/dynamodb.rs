//! The DynamoDB adapter of the session store: one item per session, conditional writes on a version number,
//! and the table's TTL attribute `expires_at` (epoch seconds).
//!
//! Item layout: `session_id` (S, partition key), `version` (N), `expires_at` (N, the TTL attribute), `state` (S,
//! for people reading the table), `session` (S, the whole session as JSON).
//!
//! A session's reference image (at most 100 KB, well inside DynamoDB's 400 KB item limit) is an `image#<session id>`
//! item: `sha256` (S), `jpeg` (B) and the session's `expires_at`.
//! Usage shares it as `usage#<tenant>#<date>` items with numeric counters updated by `ADD` (atomic); rate counters
//! as `counter#<bucket>` (with `expires_at`); subject lockouts as `subject#<tenant>#<reference>` (versioned).
//! Tenants and API keys share it too, as `tenant#<id>` and `apikey#<key id>` items with the record as JSON in
//! `body` (keys also carry `tenant_id`); they have no `expires_at`, so they never expire.
//!
//! A WebSocket connection's binding shares the table: `session_id` is `connection#<connection id>` (never a
//! UUID, so it cannot collide with a session), `bound_session` (S) the session's id, `feedback` (BOOL), and the
//! same `expires_at`.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValuesOnConditionCheckFailure,
    ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use uuid::Uuid;

use super::{
    ApiKeyRecord, ConnectionBinding, ConnectionStore, ImageStore, MeteringStore, SessionStore, StoreError, StoreFuture,
    SubjectRecord, Tenant, TenantStore, UsageDay, UsageDelta,
};
use crate::aws::aws_environment;
use crate::domain::Session;

const KEY: &str = "session_id";
const VERSION: &str = "version";
const EXPIRES_AT: &str = "expires_at";
const STATE: &str = "state";
const BODY: &str = "session";
const CONNECTION_PREFIX: &str = "connection#";
const BOUND_SESSION: &str = "bound_session";
const FEEDBACK: &str = "feedback";
const TENANT_PREFIX: &str = "tenant#";
const API_KEY_PREFIX: &str = "apikey#";
const RECORD: &str = "body";
const TENANT_ID: &str = "tenant_id";
const USAGE_PREFIX: &str = "usage#";
const COUNTER_PREFIX: &str = "counter#";
const SUBJECT_PREFIX: &str = "subject#";
const IMAGE_PREFIX: &str = "image#";
const SHA256: &str = "sha256";
const JPEG: &str = "jpeg";
const DATE: &str = "date";
const COUNT: &str = "count";
const USAGE_COUNTERS: [&str; 4] = ["sessions_created", "sessions_live", "sessions_not_live", "frames_analysed"];

/// Sessions in a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// A store over `table` with a ready client.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// A store configured from the standard AWS environment (credentials, region, and `AWS_ENDPOINT_URL_DYNAMODB`
    /// for a local DynamoDB), over `table`.
    pub async fn from_env(table: impl Into<String>) -> Self {
        Self::new(Client::new(&aws_environment().await), table)
    }

    /// Creates the table (on-demand, keyed by `session_id`) with TTL on `expires_at`, if it does not exist. For
    /// local runs and tests; on AWS the SAM template creates it.
    pub async fn ensure_table(&self) -> Result<(), StoreError> {
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(KEY)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(unavailable)?,
            )
            .key_schema(
                KeySchemaElement::builder().attribute_name(KEY).key_type(KeyType::Hash).build().map_err(unavailable)?,
            )
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => return Ok(()),
            Err(e) => return Err(sdk_unavailable(e)),
        }
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(EXPIRES_AT)
                    .enabled(true)
                    .build()
                    .map_err(unavailable)?,
            )
            .send()
            .await
            .map_err(sdk_unavailable)?;
        Ok(())
    }

    fn item(session: &Session) -> Result<HashMap<String, AttributeValue>, StoreError> {
        let body = serde_json::to_string(session).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(HashMap::from([
            (KEY.to_owned(), AttributeValue::S(session.id.to_string())),
            (VERSION.to_owned(), AttributeValue::N(session.version.to_string())),
            (EXPIRES_AT.to_owned(), AttributeValue::N(session.expires_at_ms.div_euclid(1000).to_string())),
            (STATE.to_owned(), AttributeValue::S(session.state.as_str().to_owned())),
            (BODY.to_owned(), AttributeValue::S(body)),
        ]))
    }

    fn session(item: &HashMap<String, AttributeValue>) -> Result<Session, StoreError> {
        let body = item.get(BODY).and_then(|v| v.as_s().ok()).ok_or_else(|| corrupt("no session attribute"))?;
        serde_json::from_str(body).map_err(|e| corrupt(&e.to_string()))
    }
}

fn corrupt(message: &str) -> StoreError {
    StoreError::Unavailable(format!("stored session is unreadable: {message}"))
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

/// Every SDK failure that is not a condition we asked for: connection refused, timeouts, throttling, a missing
/// table. All leave the session as it was, and all are worth a retry later.
fn sdk_unavailable<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(error: SdkError<E, R>) -> StoreError {
    let detail = match &error {
        SdkError::ServiceError(service) => {
            format!("{}: {}", service.err().code().unwrap_or("error"), service.err().message().unwrap_or(""))
        }
        SdkError::TimeoutError(_) => "timed out".to_owned(),
        SdkError::DispatchFailure(_) => "cannot reach DynamoDB".to_owned(),
        other => format!("{other:?}").chars().take(200).collect(),
    };
    tracing::warn!(%detail, "DynamoDB request failed");
    StoreError::Unavailable(detail)
}

/// A conditional write's outcome: its failed condition becomes `on_failed_condition`, any other failure
/// [`StoreError::Unavailable`].
fn unless_condition_failed<O, E, R>(
    result: Result<O, SdkError<E, R>>,
    on_failed_condition: StoreError,
) -> Result<(), StoreError>
where
    E: ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error().and_then(ProvideErrorMetadata::code) == Some("ConditionalCheckFailedException") =>
        {
            Err(on_failed_condition)
        }
        Err(e) => Err(sdk_unavailable(e)),
    }
}

impl SessionStore for DynamoStore {
    fn create<'a>(&'a self, session: &'a Session) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(Self::item(session)?))
                .condition_expression("attribute_not_exists(#key)")
                .expression_attribute_names("#key", KEY)
                .send()
                .await;
            unless_condition_failed(result, StoreError::AlreadyExists)
        })
    }

    fn get(&self, id: Uuid) -> StoreFuture<'_, Session> {
        Box::pin(async move { Self::session(&self.read(AttributeValue::S(id.to_string())).await?) })
    }

    fn update<'a>(&'a self, session: &'a Session, expected_version: u64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(Self::item(session)?))
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", VERSION)
                .expression_attribute_values(":expected", AttributeValue::N(expected_version.to_string()))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            match result {
                Ok(_) => Ok(()),
                Err(e) => match e.as_service_error() {
                    // The failed condition returns the stored item, if there is one: gone means not found.
                    Some(s) if s.is_conditional_check_failed_exception() => match s {
                        aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c)
                            if c.item().is_none() =>
                        {
                            Err(StoreError::NotFound)
                        }
                        _ => Err(StoreError::Conflict),
                    },
                    _ => Err(sdk_unavailable(e)),
                },
            }
        })
    }

    fn delete(&self, id: Uuid) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let result = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key(KEY, AttributeValue::S(id.to_string()))
                .condition_expression("attribute_exists(#key)")
                .expression_attribute_names("#key", KEY)
                .send()
                .await;
            unless_condition_failed(result, StoreError::NotFound)
        })
    }
}

impl DynamoStore {
    /// The item under `key`, read strongly consistently; [`StoreError::NotFound`] if there is none.
    async fn read(&self, key: AttributeValue) -> Result<HashMap<String, AttributeValue>, StoreError> {
        let read = self.client.get_item().table_name(&self.table).key(KEY, key).consistent_read(true);
        let output = read.send().await.map_err(sdk_unavailable)?;
        output.item.ok_or(StoreError::NotFound)
    }

    fn connection_key(connection_id: &str) -> AttributeValue {
        AttributeValue::S(format!("{CONNECTION_PREFIX}{connection_id}"))
    }

    /// Writes a tenant or key record under `key`; with `must_be_new`, only if the key is free, else only if the
    /// item exists.
    async fn put_record(
        &self,
        key: String,
        record: &impl serde::Serialize,
        tenant_id: Option<&str>,
        must_be_new: bool,
    ) -> Result<(), StoreError> {
        let body = serde_json::to_string(record).map_err(unavailable)?;
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, AttributeValue::S(key))
            .item(RECORD, AttributeValue::S(body))
            .condition_expression(if must_be_new { "attribute_not_exists(#key)" } else { "attribute_exists(#key)" })
            .expression_attribute_names("#key", KEY);
        if let Some(tenant_id) = tenant_id {
            request = request.item(TENANT_ID, AttributeValue::S(tenant_id.to_owned()));
        }
        let failed = if must_be_new { StoreError::AlreadyExists } else { StoreError::NotFound };
        unless_condition_failed(request.send().await, failed)
    }

    async fn record<T: serde::de::DeserializeOwned>(&self, key: String) -> Result<T, StoreError> {
        let item = self.read(AttributeValue::S(key)).await?;
        let body = item.get(RECORD).and_then(|v| v.as_s().ok()).ok_or_else(|| corrupt("no record body"))?;
        serde_json::from_str(body).map_err(|e| corrupt(&e.to_string()))
    }

    /// Every record whose key starts with `prefix` (and, when given, of `tenant_id`): a scan, for the operator's
    /// listings only, never on a request path.
    async fn scan_records<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
        tenant_id: Option<&str>,
    ) -> Result<Vec<T>, StoreError> {
        let mut records = Vec::new();
        let mut start = None;
        loop {
            let mut request = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .expression_attribute_names("#key", KEY)
                .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_owned()))
                .set_exclusive_start_key(start);
            request = match tenant_id {
                Some(id) => request
                    .filter_expression("begins_with(#key, :prefix) AND #tenant = :tenant")
                    .expression_attribute_names("#tenant", TENANT_ID)
                    .expression_attribute_values(":tenant", AttributeValue::S(id.to_owned())),
                None => request.filter_expression("begins_with(#key, :prefix)"),
            };
            let output = request.send().await.map_err(sdk_unavailable)?;
            for item in output.items() {
                let body = item.get(RECORD).and_then(|v| v.as_s().ok()).ok_or_else(|| corrupt("no record body"))?;
                records.push(serde_json::from_str(body).map_err(|e| corrupt(&e.to_string()))?);
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(records),
            }
        }
    }
}

impl TenantStore for DynamoStore {
    fn create_tenant<'a>(&'a self, tenant: &'a Tenant, key: &'a ApiKeyRecord) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.put_record(format!("{TENANT_PREFIX}{}", tenant.id), tenant, None, true).await?;
            self.put_record(format!("{API_KEY_PREFIX}{}", key.key_id), key, Some(&key.tenant_id), true).await
        })
    }

    fn tenant<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Tenant> {
        Box::pin(self.record(format!("{TENANT_PREFIX}{id}")))
    }

    fn tenants(&self) -> StoreFuture<'_, Vec<Tenant>> {
        Box::pin(async move {
            let mut tenants: Vec<Tenant> = self.scan_records(TENANT_PREFIX, None).await?;
            tenants.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
            Ok(tenants)
        })
    }

    fn update_tenant<'a>(&'a self, tenant: &'a Tenant) -> StoreFuture<'a, ()> {
        Box::pin(self.put_record(format!("{TENANT_PREFIX}{}", tenant.id), tenant, None, false))
    }

    fn add_key<'a>(&'a self, key: &'a ApiKeyRecord) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.tenant(&key.tenant_id).await?;
            self.put_record(format!("{API_KEY_PREFIX}{}", key.key_id), key, Some(&key.tenant_id), true).await
        })
    }

    fn key<'a>(&'a self, key_id: &'a str) -> StoreFuture<'a, ApiKeyRecord> {
        Box::pin(self.record(format!("{API_KEY_PREFIX}{key_id}")))
    }

    fn keys<'a>(&'a self, tenant_id: &'a str) -> StoreFuture<'a, Vec<ApiKeyRecord>> {
        Box::pin(async move {
            let mut keys: Vec<ApiKeyRecord> = self.scan_records(API_KEY_PREFIX, Some(tenant_id)).await?;
            keys.sort_by(|a, b| (a.created_at_ms, &a.key_id).cmp(&(b.created_at_ms, &b.key_id)));
            Ok(keys)
        })
    }

    fn revoke_key<'a>(&'a self, tenant_id: &'a str, key_id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut key: ApiKeyRecord = self.record(format!("{API_KEY_PREFIX}{key_id}")).await?;
            if key.tenant_id != tenant_id {
                return Err(StoreError::NotFound);
            }
            key.revoked = true;
            self.put_record(format!("{API_KEY_PREFIX}{key_id}"), &key, Some(tenant_id), false).await
        })
    }
}

impl ConnectionStore for DynamoStore {
    fn bind<'a>(&'a self, connection_id: &'a str, binding: &'a ConnectionBinding) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.client
                .put_item()
                .table_name(&self.table)
                .item(KEY, Self::connection_key(connection_id))
                .item(BOUND_SESSION, AttributeValue::S(binding.session_id.to_string()))
                .item(FEEDBACK, AttributeValue::Bool(binding.feedback))
                .item(EXPIRES_AT, AttributeValue::N(binding.expires_at_ms.div_euclid(1000).to_string()))
                .send()
                .await
                .map_err(sdk_unavailable)?;
            Ok(())
        })
    }

    fn binding<'a>(&'a self, connection_id: &'a str) -> StoreFuture<'a, ConnectionBinding> {
        Box::pin(async move {
            let item = self.read(Self::connection_key(connection_id)).await?;
            let session_id = item
                .get(BOUND_SESSION)
                .and_then(|v| v.as_s().ok())
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| corrupt("connection binding without a session"))?;
            let feedback = item.get(FEEDBACK).and_then(|v| v.as_bool().ok()).copied().unwrap_or(false);
            let expires_at_s: i64 = item
                .get(EXPIRES_AT)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| corrupt("connection binding without expires_at"))?;
            Ok(ConnectionBinding { session_id, feedback, expires_at_ms: expires_at_s * 1000 })
        })
    }

    fn unbind<'a>(&'a self, connection_id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let request =
                self.client.delete_item().table_name(&self.table).key(KEY, Self::connection_key(connection_id));
            request.send().await.map_err(sdk_unavailable)?;
            Ok(())
        })
    }
}

impl MeteringStore for DynamoStore {
    fn add_usage<'a>(&'a self, tenant_id: &'a str, date: &'a str, delta: UsageDelta) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let counts = [delta.sessions_created, delta.sessions_live, delta.sessions_not_live, delta.frames_analysed];
            let mut request = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(KEY, AttributeValue::S(format!("{USAGE_PREFIX}{tenant_id}#{date}")))
                .update_expression("SET #tenant = :tenant, #date = :date ADD #c0 :c0, #c1 :c1, #c2 :c2, #c3 :c3")
                .expression_attribute_names("#tenant", TENANT_ID)
                .expression_attribute_names("#date", DATE)
                .expression_attribute_values(":tenant", AttributeValue::S(tenant_id.to_owned()))
                .expression_attribute_values(":date", AttributeValue::S(date.to_owned()));
            for (i, (name, count)) in USAGE_COUNTERS.iter().zip(counts).enumerate() {
                request = request
                    .expression_attribute_names(format!("#c{i}"), *name)
                    .expression_attribute_values(format!(":c{i}"), AttributeValue::N(count.to_string()));
            }
            request.send().await.map_err(sdk_unavailable)?;
            Ok(())
        })
    }

    fn usage<'a>(&'a self, tenant_id: &'a str, from: &'a str, to: &'a str) -> StoreFuture<'a, Vec<UsageDay>> {
        Box::pin(async move {
            let mut days = Vec::new();
            let mut start = None;
            loop {
                let output = self
                    .client
                    .scan()
                    .table_name(&self.table)
                    .consistent_read(true)
                    .filter_expression(
                        "#tenant = :tenant AND begins_with(#key, :prefix) AND #date BETWEEN :from AND :to",
                    )
                    .expression_attribute_names("#tenant", TENANT_ID)
                    .expression_attribute_names("#key", KEY)
                    .expression_attribute_names("#date", DATE)
                    .expression_attribute_values(":tenant", AttributeValue::S(tenant_id.to_owned()))
                    .expression_attribute_values(":prefix", AttributeValue::S(USAGE_PREFIX.to_owned()))
                    .expression_attribute_values(":from", AttributeValue::S(from.to_owned()))
                    .expression_attribute_values(":to", AttributeValue::S(to.to_owned()))
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(sdk_unavailable)?;
                for item in output.items() {
                    let number = |name: &str| item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok());
                    days.push(UsageDay {
                        date: item.get(DATE).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default(),
                        sessions_created: number(USAGE_COUNTERS[0]).unwrap_or(0),
                        sessions_live: number(USAGE_COUNTERS[1]).unwrap_or(0),
                        sessions_not_live: number(USAGE_COUNTERS[2]).unwrap_or(0),
                        frames_analysed: number(USAGE_COUNTERS[3]).unwrap_or(0),
                    });
                }
                match output.last_evaluated_key {
                    Some(key) if !key.is_empty() => start = Some(key),
                    _ => break,
                }
            }
            days.sort_by(|a, b| a.date.cmp(&b.date));
            Ok(days)
        })
    }

    fn count<'a>(&'a self, bucket: &'a str, expires_at_ms: i64) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let output = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(KEY, AttributeValue::S(format!("{COUNTER_PREFIX}{bucket}")))
                .update_expression("SET #expires = :expires ADD #count :one")
                .expression_attribute_names("#expires", EXPIRES_AT)
                .expression_attribute_names("#count", COUNT)
                .expression_attribute_values(":expires", AttributeValue::N(expires_at_ms.div_euclid(1000).to_string()))
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
                .send()
                .await
                .map_err(sdk_unavailable)?;
            let count = output.attributes().and_then(|a| a.get(COUNT)).and_then(|v| v.as_n().ok());
            count.and_then(|n| n.parse().ok()).ok_or_else(|| corrupt("no counter value"))
        })
    }

    fn subject<'a>(&'a self, tenant_id: &'a str, reference: &'a str) -> StoreFuture<'a, Option<SubjectRecord>> {
        Box::pin(async move {
            match self.record(format!("{SUBJECT_PREFIX}{tenant_id}#{reference}")).await {
                Ok(record) => Ok(Some(record)),
                Err(StoreError::NotFound) => Ok(None),
                Err(other) => Err(other),
            }
        })
    }

    fn put_subject<'a>(
        &'a self,
        tenant_id: &'a str,
        reference: &'a str,
        record: &'a SubjectRecord,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let body = serde_json::to_string(record).map_err(unavailable)?;
            let request = self
                .client
                .put_item()
                .table_name(&self.table)
                .item(KEY, AttributeValue::S(format!("{SUBJECT_PREFIX}{tenant_id}#{reference}")))
                .item(RECORD, AttributeValue::S(body))
                .item(VERSION, AttributeValue::N(record.version.to_string()))
                .expression_attribute_names("#key", KEY);
            let request = if record.version <= 1 {
                request.condition_expression("attribute_not_exists(#key)")
            } else {
                request
                    .condition_expression("attribute_exists(#key) AND #version = :previous")
                    .expression_attribute_names("#version", VERSION)
                    .expression_attribute_values(":previous", AttributeValue::N((record.version - 1).to_string()))
            };
            unless_condition_failed(request.send().await, StoreError::Conflict)
        })
    }
}

impl ImageStore for DynamoStore {
    fn put_image<'a>(
        &'a self,
        session_id: Uuid,
        sha256: &'a str,
        jpeg: &'a [u8],
        expires_at_ms: i64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.client
                .put_item()
                .table_name(&self.table)
                .item(KEY, AttributeValue::S(format!("{IMAGE_PREFIX}{session_id}")))
                .item(SHA256, AttributeValue::S(sha256.to_owned()))
                .item(JPEG, AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(jpeg)))
                .item(EXPIRES_AT, AttributeValue::N(expires_at_ms.div_euclid(1000).to_string()))
                .send()
                .await
                .map_err(sdk_unavailable)?;
            Ok(())
        })
    }

    fn image<'a>(&'a self, session_id: Uuid, sha256: &'a str) -> StoreFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let item = self.read(AttributeValue::S(format!("{IMAGE_PREFIX}{session_id}"))).await?;
            if item.get(SHA256).and_then(|v| v.as_s().ok()).map(String::as_str) != Some(sha256) {
                return Err(StoreError::NotFound);
            }
            let jpeg = item.get(JPEG).and_then(|v| v.as_b().ok()).ok_or_else(|| corrupt("no image bytes"))?;
            Ok(jpeg.as_ref().to_vec())
        })
    }

    fn delete_images(&self, session_id: Uuid) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let key = AttributeValue::S(format!("{IMAGE_PREFIX}{session_id}"));
            self.client.delete_item().table_name(&self.table).key(KEY, key).send().await.map_err(sdk_unavailable)?;
            Ok(())
        })
    }
}
