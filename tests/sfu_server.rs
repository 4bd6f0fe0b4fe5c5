//! Issue 14, the server's side of moving a room onto Janus (`docs/protocol-sfu.md`), checked
//! from the outside with raw WebSocket clients: who gets `move-to-sfu`, `sfu-required`,
//! `move-cancelled` on `sfu-failed` and on timeout, and that the Janus room the server makes
//! is real (pinned, joinable with the pin) and destroyed when the room empties.
//!
//! The Janus tests run in a private network namespace with only `lo` (root, `unshare`,
//! `ip`, Janus: `scripts/setup --test`), as `tests/sfu_janus.rs` does; without them they
//! fail under CI and print SKIPPED otherwise. One test needs no Janus at all.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use meshcall::server::{ServerConfig, SfuConfig};
use meshcall::sfu::janus::{Janus, JanusError, VideoRoom};
use serde_json::{Value, json};

mod common;
use common::netns::repo;
use common::{Client, TestServer};

/// Set in the environment of the copy of this binary that runs inside the namespace.
const INSIDE: &str = "MESHCALL_SFU_SERVER_NETNS";
/// Janus' WebSocket port inside the namespace.
const PORT: u16 = 8188;
const LIMIT: Duration = Duration::from_secs(90);

/// Runs `inner` (an ignored test of this binary) inside a fresh namespace.
fn run_in_namespace(inner: &str) {
    common::netns::run_in_namespace(inner, INSIDE, LIMIT);
}

struct JanusProcess(Child);

impl Drop for JanusProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_janus(name: &str) -> JanusProcess {
    let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-janus.log"));
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(repo().join("scripts/janus"))
        .args(["--port", &PORT.to_string()])
        .env("TMPDIR", env!("CARGO_TARGET_TMPDIR"))
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let janus = JanusProcess(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(("127.0.0.1", PORT))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "Janus did not listen (log: {})",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    janus
}

fn inside() -> bool {
    if std::env::var_os(INSIDE).is_none() {
        println!("only meaningful inside the namespace the outer test makes; nothing to do");
        return false;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "meshcall=info".into()),
        )
        .with_test_writer()
        .try_init();
    true
}

fn janus_url() -> String {
    format!("ws://127.0.0.1:{PORT}")
}

/// A server that moves rooms of more than two onto `url`.
async fn sfu_server(url: &str, ready_timeout: Duration) -> TestServer {
    TestServer::start(ServerConfig {
        sfu: Some(SfuConfig {
            above: 2,
            max_room_size: 12,
            ready_timeout,
            ..SfuConfig::new(url)
        }),
        ..ServerConfig::default()
    })
    .await
}

const SFU: [&str; 1] = ["sfu-janus"];

/// Joins `room` (None: a new one) as `name`, declaring `features`.
async fn join(
    server: &TestServer,
    room: Option<&str>,
    name: &str,
    features: &[&str],
) -> (Client, Value) {
    let mut c = server.client().await;
    let mut j = json!({"name": name, "features": features});
    if let Some(room) = room {
        j["room"] = json!(room);
    }
    let v = c.join(j).await;
    (c, v)
}

/// A mesh room of two members who declared `sfu-janus` (or not, for the second).
async fn pair(server: &TestServer, second: &[&str]) -> (String, Client, Client) {
    let (mut a, ja) = join(server, None, "ann", &SFU).await;
    let room = ja["room"].as_str().unwrap().to_owned();
    let (b, _) = join(server, Some(&room), "bob", second).await;
    a.expect("peer-joined").await;
    (room, a, b)
}

/// Tries to join Janus room `room` as a publisher with `pin`.
async fn janus_join(room: u64, pin: &str) -> Result<(), JanusError> {
    let janus = Janus::connect(&janus_url()).await?;
    let session = janus.create_session().await?;
    let handle = VideoRoom::attach(&session).await?;
    let joined = handle.join_as_publisher(room, Some(pin), "probe").await;
    session.destroy().await?;
    joined.map(drop)
}

#[test]
fn room_moves_onto_janus_past_the_limit() {
    run_in_namespace("inside_room_moves_onto_janus");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by room_moves_onto_janus_past_the_limit inside a network namespace"]
async fn inside_room_moves_onto_janus() {
    if !inside() {
        return;
    }
    let _janus = start_janus("sfu_server-move").await;
    let server = sfu_server(&janus_url(), Duration::from_secs(15)).await;
    let (room, mut a, mut b) = pair(&server, &SFU).await;

    // Cyd is the third: admitted as in a mesh (joined, peer-joined), then everyone moves.
    let (mut c, jc) = join(&server, Some(&room), "cyd", &SFU).await;
    assert!(
        jc.get("sfu").is_none(),
        "the mover's joined is a mesh joined: {jc}"
    );
    assert_eq!(jc["peers"].as_array().unwrap().len(), 2);
    a.expect("peer-joined").await;
    b.expect("peer-joined").await;
    let mut moves = Vec::new();
    for client in [&mut a, &mut b, &mut c] {
        moves.push(client.expect("move-to-sfu").await);
    }
    let sfu = moves[0]["sfu"].clone();
    assert!(
        moves.iter().all(|m| m["sfu"] == sfu),
        "one room for all: {moves:?}"
    );
    assert_eq!(sfu["kind"], "janus-videoroom");
    assert_eq!(sfu["url"], janus_url());
    let janus_room = sfu["room"].as_u64().unwrap();
    assert!(
        janus_room < 1 << 53,
        "a room number a browser reads exactly"
    );
    let pin = sfu["pin"].as_str().unwrap();
    assert!(pin.len() >= 16, "{pin}");
    assert!(moves[0]["iceServers"].is_array());

    // The room is real, and pinned.
    janus_join(janus_room, pin).await.unwrap();
    let wrong = janus_join(janus_room, "not-the-pin").await;
    assert!(wrong.is_err(), "a wrong pin is refused: {wrong:?}");

    // Everyone ready: nobody is cancelled.
    for (i, client) in [&mut a, &mut b, &mut c].into_iter().enumerate() {
        client
            .send(json!({"type": "sfu-ready", "feed": 100 + i}))
            .await;
    }
    for client in [&mut a, &mut b, &mut c] {
        client.expect_silence(Duration::from_millis(300)).await;
    }

    // A client without the feature is refused with sfu-required, and may try again.
    let mut old = server.client().await;
    old.send(json!({"type": "join", "room": room, "name": "old"}))
        .await;
    old.expect_error("sfu-required").await;
    // One that has it joins straight into the SFU room: its joined names it.
    let (mut d, jd) = join(&server, Some(&room), "dee", &SFU).await;
    assert_eq!(jd["sfu"], sfu, "{jd}");
    for client in [&mut a, &mut b, &mut c] {
        client.expect("peer-joined").await;
    }
    d.expect_silence(Duration::from_millis(300)).await;

    // The room ends with its last member, and its Janus room with it.
    for mut client in [a, b, c, d] {
        client.send(json!({"type": "leave"})).await;
        client.expect_close(1000).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match janus_join(janus_room, pin).await {
            Err(JanusError::Plugin { .. }) => break,
            other => assert!(
                Instant::now() < deadline,
                "the Janus room still exists after the room emptied: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}

#[test]
fn a_failed_or_late_move_is_cancelled() {
    run_in_namespace("inside_failed_or_late_move");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_failed_or_late_move_is_cancelled inside a network namespace"]
async fn inside_failed_or_late_move() {
    if !inside() {
        return;
    }
    let _janus = start_janus("sfu_server-cancel").await;

    // sfu-failed from one member calls the move off for everyone.
    let server = sfu_server(&janus_url(), Duration::from_secs(15)).await;
    let (room, mut a, mut b) = pair(&server, &SFU).await;
    let (mut c, jc) = join(&server, Some(&room), "cyd", &SFU).await;
    let cyd = jc["self"].as_str().unwrap().to_owned();
    for client in [&mut a, &mut b] {
        client.expect("peer-joined").await;
    }
    for client in [&mut a, &mut b, &mut c] {
        client.expect("move-to-sfu").await;
    }
    // Mid-move a newcomer is asked to come back (and may, on the same socket); one
    // without the feature is told it needs it, as for a room already on Janus.
    let mut dan = server.client().await;
    dan.send(json!({"type": "join", "room": room, "name": "dan", "features": SFU}))
        .await;
    dan.expect_error("room-moving").await;
    dan.send(json!({"type": "join", "room": room, "name": "dan", "features": SFU}))
        .await;
    dan.expect_error("room-moving").await;
    let mut old = server.client().await;
    old.send(json!({"type": "join", "room": room, "name": "old"}))
        .await;
    old.expect_error("sfu-required").await;
    a.send(json!({"type": "sfu-ready", "feed": 1})).await;
    b.send(json!({"type": "sfu-failed", "reason": "no route to the SFU"}))
        .await;
    for client in [&mut a, &mut b] {
        client.expect("move-cancelled").await;
        assert_eq!(client.expect("peer-left").await["id"], cyd);
    }
    // The mover is told room-full, and its socket closes.
    let last = c.expect_close(1000).await;
    assert_eq!(last.len(), 2, "{last:?}");
    assert_eq!(last[0]["type"], "move-cancelled");
    assert_eq!(last[1]["code"], "room-full");
    // The room is a mesh again: it may move again later.
    let (_c2, j2) = join(&server, Some(&room), "cyd", &SFU).await;
    assert!(j2.get("sfu").is_none());
    a.expect("peer-joined").await;
    let moving = a.expect("move-to-sfu").await;
    // Shutting down destroys the Janus rooms still in use.
    server.stop().await;
    let (janus_room, pin) = (
        moving["sfu"]["room"].as_u64().unwrap(),
        moving["sfu"]["pin"].as_str().unwrap(),
    );
    let gone = janus_join(janus_room, pin).await;
    assert!(
        matches!(gone, Err(JanusError::Plugin { .. })),
        "the Janus room outlived the server: {gone:?}"
    );

    // Nobody ready within the limit: cancelled as well.
    let server = sfu_server(&janus_url(), Duration::from_millis(1500)).await;
    let (room, mut a, mut b) = pair(&server, &SFU).await;
    let (mut c, _) = join(&server, Some(&room), "cyd", &SFU).await;
    for client in [&mut a, &mut b] {
        client.expect("peer-joined").await;
    }
    let t0 = Instant::now();
    for client in [&mut a, &mut b, &mut c] {
        client.expect("move-to-sfu").await;
    }
    a.send(json!({"type": "sfu-ready", "feed": 1})).await;
    a.expect("move-cancelled").await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(1200),
        "cancelled after {waited:?}"
    );
    b.expect("move-cancelled").await;
    c.expect_close(1000).await;

    // A member without the feature keeps the room a mesh (nobody is told to move) up to
    // the mesh limit, where the newcomer gets room-full saying why.
    let (room, mut a, mut b) = pair(&server, &[]).await;
    let (mut c, jc) = join(&server, Some(&room), "cyd", &SFU).await;
    assert!(jc.get("sfu").is_none());
    for client in [&mut a, &mut b] {
        client.expect("peer-joined").await;
    }
    for client in [&mut a, &mut b, &mut c] {
        client.expect_silence(Duration::from_millis(300)).await;
    }
    server.stop().await;
    let server = TestServer::start(ServerConfig {
        max_room_size: 2,
        sfu: Some(SfuConfig {
            above: 1,
            ..SfuConfig::new(janus_url())
        }),
        ..ServerConfig::default()
    })
    .await;
    let (room, _a, _b) = pair(&server, &[]).await;
    let mut c = server.client().await;
    c.send(json!({"type": "join", "room": room, "name": "cyd", "features": SFU}))
        .await;
    let refused = c.expect_error("room-full").await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("media server"),
        "{refused}"
    );
    server.stop().await;
}

/// No Janus at all (nothing listens on the port): the move is called off at once.
#[tokio::test]
async fn an_unreachable_sfu_cancels_the_move() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = sfu_server(&format!("ws://127.0.0.1:{port}"), Duration::from_secs(15)).await;
    let (room, mut a, mut b) = pair(&server, &SFU).await;
    let (mut c, _) = join(&server, Some(&room), "cyd", &SFU).await;
    for client in [&mut a, &mut b] {
        client.expect("peer-joined").await;
        client.expect("move-cancelled").await;
        client.expect("peer-left").await;
    }
    let last = c.expect_close(1000).await;
    assert_eq!(last.last().unwrap()["code"], "room-full", "{last:?}");
    server.stop().await;
}

/// Limits that make no sense are refused before the server starts.
#[tokio::test]
async fn an_sfu_limit_not_above_the_mesh_limit_is_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = ServerConfig {
        sfu: Some(SfuConfig {
            above: 4,
            max_room_size: 4,
            ..SfuConfig::new("ws://127.0.0.1:8188")
        }),
        ..ServerConfig::default()
    };
    let err = meshcall::server::serve(listener, config, None, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--sfu-above"), "{err}");
}

/// Without `--sfu` nothing changes: features are ignored and room-full applies.
#[tokio::test]
async fn without_an_sfu_rooms_stay_meshes() {
    let server = TestServer::start(ServerConfig {
        max_room_size: 2,
        ..ServerConfig::default()
    })
    .await;
    let (room, _a, _b) = pair(&server, &SFU).await;
    let mut c = server.client().await;
    c.send(json!({"type": "join", "room": room, "name": "cyd", "features": SFU}))
        .await;
    c.expect_error("room-full").await;
    server.stop().await;
}
