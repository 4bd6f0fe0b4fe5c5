//! Which ICE server URLs are TURN over TCP, and where their server is.

/// RFC 5766's default TURN port (RFC 7065: the port when a `turn:` URL names none).
const DEFAULT_PORT: u16 = 3478;

/// The `host:port` a `turn:` URL asking for TCP (`?transport=tcp`) points at; `None` for
/// any other URL (`stun:`, TURN over UDP, and `turns:`, which is TLS and not bridged yet).
pub(crate) fn tcp_turn_server(url: &str) -> Option<String> {
    let scheme = url.get(..5)?;
    if !scheme.eq_ignore_ascii_case("turn:") {
        return None;
    }
    let (authority, query) = url[5..].split_once('?')?;
    let tcp = query.split('&').any(|param| {
        param.split_once('=').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("transport") && v.eq_ignore_ascii_case("tcp")
        })
    });
    if !tcp {
        return None;
    }
    // `[v6]:port`, `[v6]`, `host:port` or `host`.
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port = match after {
            "" => DEFAULT_PORT,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        (format!("[{v6}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port.parse().ok()?),
            None => (authority.to_owned(), DEFAULT_PORT),
        }
    };
    if host.is_empty() || host == "[]" {
        return None;
    }
    Some(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_turn_over_tcp_is_picked_out() {
        assert_eq!(
            tcp_turn_server("turn:turn.example.org:443?transport=tcp").as_deref(),
            Some("turn.example.org:443")
        );
        assert_eq!(
            tcp_turn_server("TURN:10.0.0.1?Transport=TCP").as_deref(),
            Some("10.0.0.1:3478")
        );
        assert_eq!(
            tcp_turn_server("turn:[::1]:5349?transport=tcp").as_deref(),
            Some("[::1]:5349")
        );
        assert_eq!(
            tcp_turn_server("turn:[2001:db8::1]?transport=tcp").as_deref(),
            Some("[2001:db8::1]:3478")
        );
        for other in [
            "turn:127.0.0.1:3478",
            "turn:127.0.0.1:3478?transport=udp",
            "turns:127.0.0.1:5349?transport=tcp",
            "stun:127.0.0.1:3478",
            "turn:?transport=tcp",
            "turn:host:notaport?transport=tcp",
            "turn:[::1?transport=tcp",
            "turn",
        ] {
            assert_eq!(tcp_turn_server(other), None, "{other}");
        }
    }
}
