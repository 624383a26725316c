//! Lambda function for the WebSocket API's `$connect`, `$default` and `$disconnect` routes; see
//! `liveness::lambda_websocket`. Loads the models once per container.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    liveness::lambda_websocket::run().await
}
