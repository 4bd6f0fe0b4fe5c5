//! Flooding sockets are closed with 1008 *and a close frame* (protocol.md), not just dropped
//! (which a client sees as 1006): many at once on a busy machine, and a flooder that stops
//! reading so the server's writes to it back up. Alone in its own binary because it loads
//! both cores on purpose.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Client, TestServer};
use futures_util::{SinkExt, StreamExt};
use meshcall::server::{RateLimits, ServerConfig};
use serde_json::json;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Flooders at once; each floods as fast as its socket takes frames.
const FLOODERS: usize = 48;
/// Shorter than protocol.md's 10 s so the test runs in seconds; the rule is the same.
const FLOOD_CLOSE_AFTER: Duration = Duration::from_secs(1);
/// Far beyond any close: a flooder still open by then was never closed.
const GIVE_UP: Duration = Duration::from_secs(20);

fn config() -> ServerConfig {
    ServerConfig {
        rate: RateLimits {
            flood_close_after: FLOOD_CLOSE_AFTER,
            ..Default::default()
        },
        // Pings due just as the flood rule fires: the client's pong then races the close.
        ping_interval: FLOOD_CLOSE_AFTER,
        ..Default::default()
    }
}

/// How a flooder's socket ended, as its client saw it.
#[derive(Debug, PartialEq)]
enum Seen {
    /// A close frame with this code.
    Closed(u16),
    /// No close frame: reset, EOF or an IO error (a browser reports 1006).
    Abnormal(String),
}

/// Reads until the socket ends; what ended it.
async fn read_to_end<S>(rx: &mut S) -> Seen
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match timeout(GIVE_UP, rx.next()).await {
            Err(_) => return Seen::Abnormal("still open".into()),
            Ok(None) => return Seen::Abnormal("stream ended without a close frame".into()),
            Ok(Some(Err(e))) => return Seen::Abnormal(e.to_string()),
            Ok(Some(Ok(Message::Close(f)))) => {
                return Seen::Closed(f.map_or(1005, |f| u16::from(f.code)));
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Floods `room` with `state` messages (100 frames per flush) while reading what the
/// server says, until the server ends the socket.
async fn flood_while_reading(url: String, room: String) -> Seen {
    let mut c = Client::connect(&url).await;
    c.join(json!({"name": "flood", "room": room})).await;
    let (mut tx, mut rx) = c.ws.split();
    let reader = tokio::spawn(async move { read_to_end(&mut rx).await });
    let start = Instant::now();
    while !reader.is_finished() && start.elapsed() < GIVE_UP {
        for _ in 0..100 {
            if tx.feed(Message::text(r#"{"type":"state"}"#)).await.is_err() {
                break;
            }
        }
        if tx.flush().await.is_err() {
            break;
        }
        tokio::task::yield_now().await;
    }
    reader.await.unwrap()
}

/// Floods as protocol.md's own test does: 10 frames every 50 ms (four times the rate),
/// reading whatever has arrived in between.
async fn flood_paced(url: String, room: String) -> Seen {
    let mut c = Client::connect(&url).await;
    c.join(json!({"name": "flood", "room": room})).await;
    let start = Instant::now();
    while start.elapsed() < GIVE_UP {
        for _ in 0..10 {
            if c.ws
                .send(Message::text(r#"{"type":"state"}"#))
                .await
                .is_err()
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        loop {
            match timeout(Duration::ZERO, c.ws.next()).await {
                Err(_) => break,
                Ok(None) => return Seen::Abnormal("stream ended without a close frame".into()),
                Ok(Some(Err(e))) => return Seen::Abnormal(e.to_string()),
                Ok(Some(Ok(Message::Close(f)))) => {
                    return Seen::Closed(f.map_or(1005, |f| u16::from(f.code)));
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }
    Seen::Abnormal("still open".into())
}

/// Starts [`FLOODERS`] sockets at once, each running `flood` (url, name), and requires
/// every one of them to end with a 1008 close frame.
async fn all_flooders_get_1008<F, Fut>(what: &str, flood: F)
where
    F: Fn(String, String) -> Fut,
    Fut: std::future::Future<Output = Seen> + Send + 'static,
{
    let s = TestServer::start(config()).await;
    let tasks: Vec<_> = (0..FLOODERS)
        .map(|i| tokio::spawn(flood(s.ws_url(), format!("{what}-{}", i % 8))))
        .collect();
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap());
    }
    let abnormal: Vec<_> = seen.iter().filter(|s| **s != Seen::Closed(1008)).collect();
    println!(
        "{} of {FLOODERS} {what} flooders closed with 1008; others: {abnormal:?}",
        FLOODERS - abnormal.len()
    );
    assert!(abnormal.is_empty(), "not closed with 1008: {abnormal:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_paced_flooders_at_once_all_get_1008() {
    all_flooders_get_1008("paced", flood_paced).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_flooders_at_once_all_get_1008() {
    all_flooders_get_1008("flood", flood_while_reading).await;
}

/// Sends the member `to` a 30 KB signal every 25 ms (under the rate limit) until stopped.
async fn talk_to(mut talker: Client, to: String, stop: CancellationToken) {
    let payload = json!({"pad": "x".repeat(30_000)});
    while !stop.is_cancelled() {
        talker
            .send(json!({"type": "signal", "to": to, "payload": payload}))
            .await;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooder_whose_writes_back_up_still_gets_1008() {
    let s = TestServer::start(config()).await;
    let mut flooder = s.client().await;
    let j = flooder.join(json!({"name": "flood"})).await;
    let room = j["room"].as_str().unwrap().to_owned();
    let mut talker = s.client().await;
    talker.join(json!({"name": "talker", "room": room})).await;
    let stop = CancellationToken::new();
    let talking = tokio::spawn(talk_to(
        talker,
        j["self"].as_str().unwrap().to_owned(),
        stop.clone(),
    ));
    // The flooder reads nothing: after ~2 s of 1.2 MB/s the server's writes to it block.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Then it floods, still not reading, for twice what the close rule needs.
    let start = Instant::now();
    while start.elapsed() < 2 * FLOOD_CLOSE_AFTER {
        let sent = timeout(
            Duration::from_millis(200),
            flooder.ws.send(Message::text(r#"{"type":"state"}"#)),
        )
        .await;
        if let Ok(Err(e)) = sent {
            panic!("the server ended the socket before the flooder read anything: {e}");
        }
    }
    stop.cancel();
    talking.await.unwrap();
    // Now it reads: everything the server still had for it, then the close frame.
    let seen = read_to_end(&mut flooder.ws).await;
    assert_eq!(seen, Seen::Closed(1008));
}
