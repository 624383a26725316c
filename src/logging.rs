//! Where the service's logs go and which are kept: one set-up for the local server, its commands and the Lambda
//! functions.
//!
//! The filter is `RUST_LOG`'s target-and-level syntax (`warn`, `info,liveness::service=debug`), read by
//! `tracing_subscriber`'s `Targets`; span and field filters are not supported, which keeps the regex engine that
//! `EnvFilter` needs out of the build.

use std::str::FromStr;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter `spec` describes, or `default`'s when `spec` is absent or unreadable.
fn filter(spec: Option<&str>, default: &str) -> Targets {
    spec.and_then(|spec| Targets::from_str(spec).ok())
        .unwrap_or_else(|| Targets::from_str(default).expect("default log filters are valid"))
}

/// Logs to stderr (a command's answers alone go to stdout), filtered by `RUST_LOG`, else by `default`.
pub fn init_local(default: &str) {
    let spec = std::env::var("RUST_LOG").ok();
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter(spec.as_deref(), default))
        .init();
}

/// Logs for a Lambda function, to stdout for CloudWatch, which stamps each line's time itself. The level follows
/// Lambda's advanced logging controls (`AWS_LAMBDA_LOG_LEVEL`, its `FATAL` read as `error`), else `RUST_LOG`, else
/// `info`; lines are JSON objects when `AWS_LAMBDA_LOG_FORMAT` is `JSON`.
pub fn init_lambda() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().map(|level| {
        if level.eq_ignore_ascii_case("fatal") {
            "error".to_owned()
        } else {
            level.to_ascii_lowercase()
        }
    });
    let spec = level.or_else(|| std::env::var("RUST_LOG").ok());
    let filter = filter(spec.as_deref(), "info");
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stdout).with_ansi(false).without_time();
    if json {
        tracing_subscriber::registry().with(lines.json()).with(filter).init();
    } else {
        tracing_subscriber::registry().with(lines).with(filter).init();
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::filter;

    #[test]
    fn reads_targets_and_levels_like_rust_log() {
        let targets = filter(Some("warn,liveness::service=debug"), "info");
        assert!(targets.would_enable("liveness::service", &Level::DEBUG));
        assert!(!targets.would_enable("liveness::store", &Level::INFO));
        assert!(targets.would_enable("hyper", &Level::WARN));
    }

    #[test]
    fn falls_back_to_the_default_when_absent_or_unreadable() {
        for spec in [None, Some("liveness=loud")] {
            let targets = filter(spec, "info");
            assert!(targets.would_enable("liveness", &Level::INFO));
            assert!(!targets.would_enable("liveness", &Level::DEBUG));
        }
    }
}
