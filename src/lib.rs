//! Face liveness: active challenges judged over sequences of frames, plus passive anti-spoofing.
//!
//! See `DESIGN.md` in the shared folder for the architecture; [`vision`] turns frames into observations.

pub mod app;
pub mod aws;
pub mod config;
pub mod credentials;
pub mod domain;
pub mod http;
pub mod lambda;
pub mod lambda_websocket;
pub mod logging;
pub mod server;
pub mod service;
pub mod store;
pub mod verdicts;
pub mod vision;
pub mod websocket;
