//! Lambda function for `POST /api/v1/liveness/sessions/{id}/frame`; see `liveness::lambda`. Loads the models
//! once per container.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    liveness::lambda::run_function(liveness::lambda::Models::Load).await
}
