//! What can go wrong talking to Janus.

use std::time::Duration;

/// An error from the Janus client.
#[derive(Debug, thiserror::Error)]
pub enum JanusError {
    /// The WebSocket could not be opened (wrong URL, nothing listening, not Janus).
    #[error("cannot connect to Janus at {url}: {reason}")]
    Connect {
        /// Where we tried.
        url: String,
        /// What the WebSocket library said.
        reason: String,
    },
    /// The connection to Janus is gone; every request after this fails the same way.
    #[error("the connection to Janus is closed")]
    Closed,
    /// Janus did not answer a request in time.
    #[error("Janus did not answer `{request}` within {after:?}")]
    Timeout {
        /// The request (`create`, `attach`, a plugin request's name, ...).
        request: String,
        /// How long we waited.
        after: Duration,
    },
    /// The Janus core refused a request (`{"janus":"error"}`), e.g. 458 "No such session".
    #[error("Janus refused `{request}`: {code} {reason}")]
    Janus {
        /// The request refused.
        request: String,
        /// Janus' error code.
        code: i64,
        /// Janus' words.
        reason: String,
    },
    /// The VideoRoom plugin refused a request (`error_code` in its answer), e.g. 426
    /// "No such room".
    #[error("VideoRoom refused `{request}`: {code} {reason}")]
    Plugin {
        /// The request refused.
        request: String,
        /// The plugin's error code.
        code: i64,
        /// The plugin's words.
        reason: String,
    },
    /// Janus answered with something this client does not understand.
    #[error("unexpected answer to `{request}`: {detail}")]
    Protocol {
        /// The request answered.
        request: String,
        /// What was wrong with the answer.
        detail: String,
    },
}
