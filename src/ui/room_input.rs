//! Understanding what a person types or pastes into the room field: a bare code, or a
//! whole invite link (`http://host:8787/r/abc-defg-hij`), which also says which server.

use crate::proto::normalize_room_code;

/// A room to join, read from the room field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInput {
    /// The room code, normalised.
    pub code: String,
    /// The server the link points at, when a link was given.
    pub server: Option<String>,
}

/// Reads a code or a link; `Err` says, for people, what is wrong with it.
pub fn parse_room_input(text: &str) -> Result<RoomInput, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("Type a room code, or press New room.".into());
    }
    let (code, server) = match split_link(text) {
        Some((base, code)) => (code, Some(base)),
        None => (text, None),
    };
    let code = normalize_room_code(code)
        .ok_or_else(|| format!("\"{code}\" is not a room code (they look like abc-defg-hij)."))?;
    Ok(RoomInput { code, server })
}

/// `http://host:port/r/CODE` → (`ws://host:port`, `CODE`).
fn split_link(text: &str) -> Option<(String, &str)> {
    let (scheme, rest) = text.split_once("://")?;
    let ws_scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        _ => return None,
    };
    let (authority, path) = rest.split_once('/')?;
    let code = path.strip_prefix("r/")?;
    // Anything after the code (a query, a fragment, a trailing slash) is not part of it.
    let code = code.split(['?', '#', '/']).next().unwrap_or(code);
    Some((format!("{ws_scheme}://{authority}"), code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_codes_are_normalised() {
        let r = parse_room_input("  ABC-DEFG-HIJ ").unwrap();
        assert_eq!(r.code, "abc-defg-hij");
        assert_eq!(r.server, None);
    }

    #[test]
    fn links_give_code_and_server() {
        let r = parse_room_input("http://192.168.1.20:8787/r/abc-defg-hij").unwrap();
        assert_eq!(r.code, "abc-defg-hij");
        assert_eq!(r.server.as_deref(), Some("ws://192.168.1.20:8787"));
        let r = parse_room_input("https://meet.example.org/r/abc-defg-hij?x=1#y").unwrap();
        assert_eq!(r.code, "abc-defg-hij");
        assert_eq!(r.server.as_deref(), Some("wss://meet.example.org"));
    }

    #[test]
    fn bad_input_says_why() {
        assert!(parse_room_input("").unwrap_err().contains("room code"));
        assert!(
            parse_room_input("no spaces allowed")
                .unwrap_err()
                .contains("not a room code")
        );
        assert!(parse_room_input("http://host:8787/r/").is_err());
        // A link to something other than a room is read as a (bad) code, not a server.
        assert!(parse_room_input("http://host:8787/metrics").is_err());
    }
}
