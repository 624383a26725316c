//! The DynamoDB adapter of the session store: one item per session, conditional writes on a version number,
//! and the table's TTL attribute `expires_at` (epoch seconds).
//!
//! Item layout: `session_id` (S, partition key), `version` (N), `expires_at` (N, the TTL attribute), `state` (S,
//! for people reading the table), `session` (S, the whole session as JSON).
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

use super::{ConnectionBinding, ConnectionStore, SessionStore, StoreError, StoreFuture};
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
