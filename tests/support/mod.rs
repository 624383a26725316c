//! Helpers shared by the integration tests; each test binary uses what it needs.
#![allow(dead_code)]

pub mod attacks;
pub mod chromium;
pub mod contracts;
pub mod dynamo_local;
pub mod events;
pub mod genuine;
pub mod hooked_store;
pub mod performances;
pub mod real_models;
pub mod verifier;
pub mod ws_client;

use liveness::service::{Caller, FrameResult, LivenessService, ServiceError};

/// Submits `count` copies of `frame` to session `id` all at once; their results in submission order.
pub async fn race_frames(
    service: &LivenessService,
    id: uuid::Uuid,
    frame: &[u8],
    count: usize,
) -> Vec<Result<FrameResult, ServiceError>> {
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let (service, frame) = (service.clone(), frame.to_vec());
            tokio::spawn(async move { service.submit_frame(&Caller::Operator, id, frame).await })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("the frame task does not panic"));
    }
    results
}
