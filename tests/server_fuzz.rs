//! Bad input at volume: 10,000 random or mutated frames from several sockets at once.
//! Afterwards the server must still serve a fresh client correctly, hold no rooms or
//! sockets, and its memory must be back near where it started. (Alone in its own test
//! binary so the process's memory is the server's.)
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{TestServer, joined};
use futures_util::{SinkExt, StreamExt};
use meshcall::server::{RateLimits, ServerConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const SOCKETS: u64 = 8;
const FRAMES_PER_SOCKET: usize = 1250;
const FRAMES_WANTED: f64 = 10_000.0;

const TEMPLATES: &[&str] = &[
    r#"{"type":"join","name":"fuzz","room":"fuzz-room"}"#,
    r#"{"type":"join","name":"fuzz","room":"fuzz-room","passcode":"p","audio":true,"video":false}"#,
    r#"{"type":"join","name":"fuzz","room":"fuzz-room","resume":{"id":"p1","token":"00"}}"#,
    r#"{"type":"join","name":"fuzz"}"#,
    r#"{"type":"signal","to":"p1","payload":{"sdp":{"type":"offer","sdp":"v=0"}}}"#,
    r#"{"type":"signal","to":"p2","payload":{"candidate":null}}"#,
    r#"{"type":"state","name":"x","audio":true,"video":true,"screen":false}"#,
    r#"{"type":"chat","text":"hello"}"#,
    r#"{"type":"leave"}"#,
];

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn mutate(rng: &mut StdRng, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..rng.random_range(1..6) {
        let at = rng.random_range(0..=bytes.len());
        match rng.random_range(0..4) {
            0 if at < bytes.len() => {
                bytes.remove(at);
            }
            1 => bytes.insert(at, rng.random()),
            2 if at < bytes.len() => bytes[at] = b"{}[]\":,0-1nulltrue\\"[rng.random_range(0..19)],
            _ => bytes.insert(at, b' '),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Frames after which the server closes the socket; the fuzzer waits for that close
/// instead of sending into a dead socket.
fn may_close(frame: &Message) -> bool {
    match frame {
        Message::Text(t) => t.len() > 65536 || t.contains("leave"),
        _ => false,
    }
}

fn random_frame(rng: &mut StdRng) -> Message {
    match rng.random_range(0..100) {
        0..=39 => {
            let template = TEMPLATES[rng.random_range(0..TEMPLATES.len())];
            Message::text(mutate(rng, template))
        }
        40..=54 => Message::text(TEMPLATES[rng.random_range(0..TEMPLATES.len())]),
        55..=64 => {
            let len = rng.random_range(0..300);
            Message::text((0..len).map(|_| rng.random::<char>()).collect::<String>())
        }
        65..=74 => {
            let len = rng.random_range(0..300);
            Message::binary((0..len).map(|_| rng.random::<u8>()).collect::<Vec<u8>>())
        }
        75..=84 => {
            // Right shape, wrong types.
            let v = match rng.random_range(0..4) {
                0 => json!({"type": "join", "name": rng.random::<u32>(), "room": [1]}),
                1 => json!({"type": "signal", "to": {"x": 1}, "payload": 3}),
                2 => json!({"type": "state", "audio": "yes", "name": null}),
                _ => json!({"type": rng.random::<u8>(), "text": false}),
            };
            Message::text(v.to_string())
        }
        85..=94 => {
            // Deep or wide JSON.
            let depth = rng.random_range(1..2000);
            Message::text(format!("{}{}", "[".repeat(depth), "]".repeat(depth)))
        }
        _ => Message::text("x".repeat(rng.random_range(60_000..70_000))),
    }
}

async fn fuzz_socket(url: String, seed: u64) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sent = 0;
    while sent < FRAMES_PER_SOCKET {
        let (ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        let (mut tx, mut rx) = ws.split();
        // Read everything the server says so its queue for us never fills.
        let reader = tokio::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
        while sent < FRAMES_PER_SOCKET {
            sent += 1;
            let frame = random_frame(&mut rng);
            let closing = may_close(&frame);
            if tx.send(frame).await.is_err() {
                break;
            }
            if closing {
                for _ in 0..50 {
                    if reader.is_finished() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            if reader.is_finished() {
                break;
            }
        }
        let _ = tx.close().await;
        let _ = reader.await;
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_bad_frames_leave_the_server_healthy() {
    let s = TestServer::start(ServerConfig {
        grace: Duration::from_millis(100),
        // Let the frames reach the parser instead of the rate limiter.
        rate: RateLimits {
            per_second: 1e6,
            burst: 1e6,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    // Warm up allocations the server keeps anyway (tokio, axum, first sockets).
    for _ in 0..3 {
        let (mut c, _) = joined(&s, None, "warm").await;
        c.send(json!({"type": "leave"})).await;
        c.expect_close(1000).await;
    }
    let before = rss_bytes();

    // Rounds of fuzzing until the server has read 10,000 frames (frames in flight when
    // the server closes a socket never arrive, so count what it read, not what was sent).
    let start = s.metric("meshcall_frames_received_total").await;
    let mut round = 0;
    while s.metric("meshcall_frames_received_total").await - start < FRAMES_WANTED {
        assert!(round < 20, "server read too few frames");
        let tasks: Vec<_> = (0..SOCKETS)
            .map(|i| tokio::spawn(fuzz_socket(s.ws_url(), 0x5eed + 100 * round + i)))
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        round += 1;
    }
    let read = s.metric("meshcall_frames_received_total").await - start;
    println!("server read {read} fuzz frames in {round} rounds");

    // Everything the fuzzers held is released once their grace periods end.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (rooms, sockets) = (
            s.metric("meshcall_rooms").await,
            s.metric("meshcall_sockets").await,
        );
        if rooms == 0.0 && sockets == 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rooms {rooms}, sockets {sockets} left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A fresh pair of clients is served correctly.
    let (mut a, ja) = joined(&s, None, "after").await;
    let room = ja["room"].as_str().unwrap().to_owned();
    let (mut b, jb) = joined(&s, Some(&room), "check").await;
    assert_eq!(jb["peers"][0]["name"], "after");
    a.expect("peer-joined").await;
    b.send(json!({"type": "signal", "to": ja["self"], "payload": {"ok": true}}))
        .await;
    let sig = a.expect("signal").await;
    assert_eq!(sig["from"], jb["self"]);
    assert_eq!(sig["payload"], json!({"ok": true}));

    // The frames reached the protocol layer: thousands were refused, some relayed.
    let refused = s
        .metric("meshcall_messages_refused_total{code=\"bad-message\"}")
        .await;
    let too_large = s
        .metric("meshcall_messages_refused_total{code=\"too-large\"}")
        .await;
    println!("refused: bad-message {refused}, too-large {too_large}");
    assert!(refused > 4000.0, "only {refused} bad-message refusals");
    assert!(too_large > 50.0, "only {too_large} too-large refusals");

    let after = rss_bytes();
    let growth = after.saturating_sub(before);
    println!(
        "rss before {} KiB, after {} KiB, growth {} KiB",
        before / 1024,
        after / 1024,
        growth / 1024
    );
    assert!(growth < 16 << 20, "memory grew by {} KiB", growth / 1024);
}
