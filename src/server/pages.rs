//! The browser client: static files compiled into the binary and served with a strict
//! Content-Security-Policy, so the page can load nothing but its own files.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Only our own files and our own WebSocket (plus the SFU's, see [`csp`]); no inline
/// script, no framing.
const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   media-src 'self' blob: mediastream:; object-src 'none'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

/// The policy for the page: [`CSP`], with Janus' WebSocket (`sfu_url`, what members are
/// told in `move-to-sfu`) allowed too when rooms may move onto it. A URL that would break
/// the header's syntax is left out (the page then cannot reach Janus, and says so).
fn csp(sfu_url: Option<&str>) -> String {
    match sfu_url {
        Some(url)
            if !url.is_empty()
                && url
                    .chars()
                    .all(|c| c.is_ascii_graphic() && c != ';' && c != ',' && c != '\'') =>
        {
            CSP.replacen(
                "connect-src 'self'",
                &format!("connect-src 'self' {url}"),
                1,
            )
        }
        _ => CSP.to_owned(),
    }
}

const INDEX: &str = include_str!("../../assets/web/index.html");

/// The files under `/assets/`: name, Content-Type, body.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("../../assets/web/app.js")),
    (
        "signaling.js",
        JS,
        include_str!("../../assets/web/signaling.js"),
    ),
    ("peer.js", JS, include_str!("../../assets/web/peer.js")),
    ("codecs.js", JS, include_str!("../../assets/web/codecs.js")),
    ("slots.js", JS, include_str!("../../assets/web/slots.js")),
    ("media.js", JS, include_str!("../../assets/web/media.js")),
    ("ui.js", JS, include_str!("../../assets/web/ui.js")),
    ("sfu.js", JS, include_str!("../../assets/web/sfu.js")),
    ("janus.js", JS, include_str!("../../assets/web/janus.js")),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/web/style.css"),
    ),
];

const JS: &str = "text/javascript; charset=utf-8";

/// The page at `GET /`, or at `GET /r/<code>` with `room` already normalized (so it holds
/// only `a-z`, `0-9` and `-` and needs no escaping); `sfu_url`: Janus' WebSocket as
/// members reach it, when the server moves rooms onto it.
pub(crate) fn index(room: Option<&str>, sfu_url: Option<&str>) -> Response {
    let title = match room {
        Some(code) => format!("meshcall — room {code}"),
        None => "meshcall".to_owned(),
    };
    let body = INDEX
        .replace("{{TITLE}}", &title)
        .replace("{{ROOM}}", room.unwrap_or(""));
    respond("text/html; charset=utf-8", body, csp(sfu_url))
}

/// A file of the client by name, or 404.
pub(crate) fn asset(name: &str) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => respond(content_type, (*body).to_owned(), csp(None)),
        None => (StatusCode::NOT_FOUND, "No such file.").into_response(),
    }
}

fn respond(content_type: &str, body: String, csp: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            // The page is small and changes with the binary; always ask again.
            (header::CACHE_CONTROL, "no-cache".to_owned()),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_served() {
        for (_, _, body) in ASSETS {
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let name = line
                    .rsplit("'./")
                    .next()
                    .and_then(|s| s.split('\'').next())
                    .unwrap_or_default();
                assert!(ASSETS.iter().any(|(n, _, _)| *n == name), "{line}");
            }
        }
    }

    #[test]
    fn the_policy_lets_the_page_reach_the_sfu_and_nothing_else() {
        assert_eq!(csp(None), CSP);
        let with = csp(Some("wss://meet.example.org/janus"));
        assert!(
            with.contains("connect-src 'self' wss://meet.example.org/janus;"),
            "{with}"
        );
        // Something that would add a directive is not let in.
        assert_eq!(csp(Some("ws://x; script-src *")), CSP);
        assert_eq!(csp(Some("")), CSP);
    }

    #[test]
    fn the_room_code_is_filled_in() {
        let html = INDEX.replace("{{ROOM}}", "abc-defg-hij");
        assert!(html.contains("value=\"abc-defg-hij\""));
        assert!(
            !INDEX.contains("<script>"),
            "inline scripts would break the CSP"
        );
    }
}
