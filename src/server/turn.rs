//! Time-limited TURN credentials as coturn's `use-auth-secret` checks them
//! (the "TURN REST API"): username `expiry:peerid`, credential base64(HMAC-SHA1(secret, username)).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// A TURN server that shares a secret with this signaling server.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// `turn:` / `turns:` URLs handed to clients.
    pub urls: Vec<String>,
    /// coturn's `static-auth-secret`.
    pub secret: String,
    /// How long a credential stays valid, in seconds.
    pub ttl_secs: u64,
}

/// The username and credential for `peer_id`, valid until `now_unix + ttl`.
pub fn turn_credentials(secret: &str, peer_id: &str, expires_unix: u64) -> (String, String) {
    let username = format!("{expires_unix}:{peer_id}");
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, credential)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_an_independent_hmac() {
        // printf '1700000000:p1' | openssl dgst -sha1 -hmac s3cret -binary | base64
        let (user, cred) = turn_credentials("s3cret", "p1", 1_700_000_000);
        assert_eq!(user, "1700000000:p1");
        assert_eq!(cred, "qgMGazZqfg3Xj1eyXcWMv9x2jo4=");
    }
}
