//! Lambda function for one REST endpoint; see `liveness::lambda`. Loads no models.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    liveness::lambda::run_function(liveness::lambda::Models::Skip).await
}
