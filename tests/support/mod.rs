//! Helpers shared by the integration tests; each test binary uses what it needs.
#![allow(dead_code)]

pub mod attacks;
pub mod chromium;
pub mod dynamo_local;
pub mod events;
pub mod performances;
pub mod ws_client;
