//! The HTML pages served over plain HTTP. The browser client has its own issue; until then
//! these pages say how to join with the desktop app.

/// The page at `GET /` and `GET /r/<code>`.
pub(crate) fn placeholder(room: Option<&str>) -> String {
    let (title, body) = match room {
        Some(code) => (
            format!("meshcall — room {code}"),
            format!(
                "<p>You were invited to the meshcall room <code>{code}</code>.</p>\
                 <p>Joining from the browser is coming soon. For now, join with the desktop app:</p>\
                 <pre>meshcall --room {code}</pre>"
            ),
        ),
        None => (
            "meshcall".to_owned(),
            "<p>This is a meshcall signaling server.</p>\
             <p>Start or join a meeting with the desktop app: <code>meshcall</code>.</p>"
                .to_owned(),
        ),
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>"
    )
}
