//! The AWS environment every AWS client is built from: credentials, region and endpoint overrides from the
//! standard variables, with the timeouts and retries of a request path.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_smithy_http_client::tls;
use aws_sdk_dynamodb::config::SharedHttpClient;

/// Timeouts and retries for clients on the request path: a database that is down must become a quick `503`,
/// not a request that hangs until the client gives up.
pub fn client_settings() -> (TimeoutConfig, RetryConfig) {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
        .build();
    (timeouts, RetryConfig::standard().with_max_attempts(3))
}

/// The HTTP client every AWS client needs: the SDK builds in none (see Cargo.toml), so a client configured
/// without one cannot send. HTTPS through rustls on ring; plain HTTP for local endpoints.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https()
}

/// The standard AWS environment (credentials, region, endpoint overrides) with [`client_settings`], over HTTPS
/// through rustls on ring.
pub async fn aws_environment() -> aws_config::SdkConfig {
    let (timeouts, retries) = client_settings();
    let defaults = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https_client());
    defaults.timeout_config(timeouts).retry_config(retries).load().await
}

/// The text of a Secrets Manager secret (read with the standard AWS environment; `AWS_ENDPOINT_URL_SECRETS_MANAGER`
/// points elsewhere for local runs).
pub async fn secret_string(secret_id: &str) -> Result<String, String> {
    let client = aws_sdk_secretsmanager::Client::new(&aws_environment().await);
    let output = client.get_secret_value().secret_id(secret_id).send().await.map_err(|e| {
        format!("cannot read secret {secret_id}: {}", aws_sdk_secretsmanager::error::DisplayErrorContext(e))
    })?;
    output.secret_string().map(str::to_owned).ok_or_else(|| format!("secret {secret_id} holds no text"))
}
