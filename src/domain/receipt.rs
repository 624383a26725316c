//! Receipts of applied frames, kept in the session so that a client retrying a frame (same idempotency key) gets
//! the answer it missed instead of the frame being counted twice.

use serde::{Deserialize, Serialize};

/// How many frames' receipts a session keeps, newest last. A client retries a frame before it sends the next, so
/// a few suffice; each is written with every frame, so they are kept small.
pub const MAX_RECEIPTS: usize = 8;

/// One applied frame's answer, recorded by the write that applied it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameReceipt {
    /// The client's idempotency key.
    pub key: String,
    /// A digest of the frame's bytes, so a key reused for another frame is told apart from a retry.
    pub frame_digest: String,
    /// The answer the transport gave, exactly (the domain stores it and never reads it).
    pub answer: String,
}

/// The receipts of a session, oldest first, at most [`MAX_RECEIPTS`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Receipts(Vec<FrameReceipt>);

impl Receipts {
    /// The receipt of key `key`, if it is still kept.
    pub fn find(&self, key: &str) -> Option<&FrameReceipt> {
        self.0.iter().find(|receipt| receipt.key == key)
    }

    /// Keeps `receipt`, forgetting the oldest beyond [`MAX_RECEIPTS`].
    pub fn record(&mut self, receipt: FrameReceipt) {
        self.0.push(receipt);
        let excess = self.0.len().saturating_sub(MAX_RECEIPTS);
        self.0.drain(..excess);
    }

    /// How many are kept.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(key: &str) -> FrameReceipt {
        FrameReceipt { key: key.into(), frame_digest: "d".into(), answer: format!("answer {key}") }
    }

    #[test]
    fn keeps_the_newest_receipts_only() {
        let mut receipts = Receipts::default();
        for i in 0..MAX_RECEIPTS + 3 {
            receipts.record(receipt(&i.to_string()));
        }
        assert_eq!(receipts.len(), MAX_RECEIPTS);
        assert!(receipts.find("0").is_none() && receipts.find("2").is_none());
        assert_eq!(receipts.find("3").map(|r| r.answer.as_str()), Some("answer 3"));
        assert!(receipts.find(&(MAX_RECEIPTS + 2).to_string()).is_some());
    }
}
