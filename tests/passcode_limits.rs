//! Issue 12, item 10: passcodes that hold. The attack from the issue — 20 sockets from one
//! address, each sending wrong-passcode joins at 50 a second (inside the token bucket) to a
//! room with a 4-digit passcode — against a server with the default back-off, and the caps
//! on sockets per address and in total. Real sockets on 127.0.0.x (all of 127/8 is
//! loopback on Linux, so a second address is a second client).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Client, TestServer, WAIT};
use futures_util::{SinkExt, StreamExt};
use meshcall::server::{Backoff, PasscodeLimits, ServerConfig};
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio::time::Instant;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const ATTACKERS: usize = 20;
const JOINS_PER_SECOND: u64 = 50;
const ATTACK: Duration = Duration::from_secs(10);
const PASSCODE: &str = "4821";

/// A WebSocket to `server` from source address `src` (e.g. "127.0.0.2").
async fn connect_from(src: &str, server: SocketAddr) -> Result<Client, WsError> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{src}:0").parse().unwrap()).unwrap();
    let stream = socket.connect(server).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let url = format!("ws://{server}/ws");
    let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)).await?;
    Ok(Client { ws })
}

/// What one attacking socket saw.
#[derive(Debug, Default)]
struct Seen {
    wrong: u64,
    limited: u64,
    joined: Vec<String>,
    other: Vec<Value>,
}

/// Attacker `i` of [`ATTACKERS`] tries codes i, i + 20, i + 40, … one every 20 ms, so code
/// k goes out about k ms into the attack: [`PASSCODE`] at about 4.8 s.
async fn attacker(i: usize, server: SocketAddr, room: String) -> Seen {
    let client = connect_from("127.0.0.1", server).await.unwrap();
    let (mut tx, mut rx) = client.ws.split();
    let reader = tokio::spawn(async move {
        let mut seen = Seen::default();
        while let Some(Ok(msg)) = rx.next().await {
            let Message::Text(t) = msg else { continue };
            let v: Value = serde_json::from_str(&t).unwrap();
            match (v["type"].as_str(), v["code"].as_str()) {
                (Some("error"), Some("wrong-passcode")) => seen.wrong += 1,
                (Some("error"), Some("rate-limited")) => seen.limited += 1,
                (Some("joined"), _) => seen.joined.push(t.to_string()),
                _ => seen.other.push(v),
            }
        }
        seen
    });
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / JOINS_PER_SECOND));
    let start = Instant::now();
    let mut code = i;
    while start.elapsed() < ATTACK && code < 10_000 {
        tick.tick().await;
        let join = json!({"type": "join", "room": room, "name": format!("guess{i}"),
                          "passcode": format!("{code:04}")});
        tx.send(Message::text(join.to_string())).await.unwrap();
        code += ATTACKERS;
    }
    // Let the last answers arrive, then close.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = tx.close().await;
    tokio::time::timeout(WAIT, reader).await.unwrap().unwrap()
}

/// Runs the attack on `s`; returns what the attackers saw in all, and how long it ran.
async fn attack(s: &TestServer, room: &str) -> (Seen, Duration) {
    let start = Instant::now();
    let tasks: Vec<_> = (0..ATTACKERS)
        .map(|i| tokio::spawn(attacker(i, s.addr, room.to_owned())))
        .collect();
    let mut all = Seen::default();
    for t in tasks {
        let seen = t.await.unwrap();
        all.wrong += seen.wrong;
        all.limited += seen.limited;
        all.joined.extend(seen.joined);
        all.other.extend(seen.other);
    }
    (all, start.elapsed())
}

async fn owner(s: &TestServer, room: &str) -> Client {
    let mut c = connect_from("127.0.0.1", s.addr).await.unwrap();
    c.join(json!({"name": "owner", "room": room, "passcode": PASSCODE}))
        .await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issues_attack_checks_a_handful_of_codes_and_finds_nothing() {
    let s = TestServer::default().await;
    let _owner = owner(&s, "vault").await;
    let limits = PasscodeLimits::default();

    // Halfway through the attack, someone with the passcode arrives from another address.
    let addr = s.addr;
    let rightful = tokio::spawn(async move {
        tokio::time::sleep(ATTACK / 2).await;
        let mut c = connect_from("127.0.0.2", addr).await.unwrap();
        let sent = Instant::now();
        c.send(json!({"type": "join", "room": "vault", "name": "friend", "passcode": PASSCODE}))
            .await;
        let v = c.recv().await;
        (v, sent.elapsed(), c)
    });

    let (seen, took) = attack(&s, "vault").await;
    let checks = s.metric("meshcall_passcode_checks_total").await;
    let backoffs = s.metric("meshcall_passcode_backoffs_total").await;
    println!(
        "{} joins in {took:?}: {} wrong-passcode, {} rate-limited, {} joined; \
         {checks} passcode checks (one of them the rightful join), {backoffs} back-offs",
        seen.wrong + seen.limited,
        seen.wrong,
        seen.limited,
        seen.joined.len()
    );
    assert!(
        seen.joined.is_empty(),
        "the attack got in: {:?}",
        seen.joined
    );
    assert!(
        seen.other.is_empty(),
        "unexpected answers: {:?}",
        seen.other
    );
    // Every join was answered, nearly all without a check.
    assert!(
        seen.wrong + seen.limited > 9_000,
        "{}",
        seen.wrong + seen.limited
    );

    // The bound: what the per-address schedule allows one address in the attack's length
    // (with a second of slack for the attack's own start-up).
    let bound = limits
        .per_address
        .checks_within(took + Duration::from_secs(1))
        .len() as u64;
    let ten_minutes = limits
        .per_address
        .checks_within(Duration::from_secs(600))
        .len();
    println!(
        "bound for {took:?}: {bound} checks; in 10 minutes at most {ten_minutes} of 10,000 codes"
    );
    assert_eq!(bound, 8, "five at once, then at 1, 3 and 7 s");
    assert_eq!(ten_minutes, 14);
    assert!(seen.wrong <= bound, "{} wrong-passcode answers", seen.wrong);
    assert!(checks <= (bound + 1) as f64, "{checks} passcode checks");
    assert_eq!(backoffs as u64, seen.limited);

    // The rightful member got in at once, during the attack.
    let (v, waited, _friend) = rightful.await.unwrap();
    assert_eq!(v["type"], "joined", "{v}");
    assert!(waited < Duration::from_secs(1), "joined after {waited:?}");
    println!("rightful join from 127.0.0.2 answered in {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_back_off_the_same_attack_finds_the_passcode() {
    // The control: the attack as the issue measured it, with the back-off switched off.
    let off = Backoff {
        free: u32::MAX,
        base: Duration::ZERO,
        max: Duration::ZERO,
        forget: Duration::from_secs(3600),
    };
    let s = TestServer::start(ServerConfig {
        passcode: PasscodeLimits {
            per_address: off,
            per_room: off,
        },
        ..Default::default()
    })
    .await;
    let _owner = owner(&s, "vault").await;
    let (seen, took) = attack(&s, "vault").await;
    let checks = s.metric("meshcall_passcode_checks_total").await;
    println!(
        "no back-off: {checks} passcode checks in {took:?} ({:.0}/s), {} joined",
        checks / took.as_secs_f64(),
        seen.joined.len()
    );
    assert_eq!(seen.joined.len(), 1, "the attack should find the passcode");
    assert!(checks > 5_000.0, "{checks}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_beyond_the_caps_are_refused_and_counted() {
    let s = TestServer::start(ServerConfig {
        max_sockets: 8,
        max_sockets_per_ip: 5,
        ..Default::default()
    })
    .await;
    let mut local = Vec::new();
    for _ in 0..5 {
        local.push(connect_from("127.0.0.1", s.addr).await.unwrap());
    }
    let status = |r: Result<Client, WsError>| match r {
        Err(WsError::Http(resp)) => (
            resp.status().as_u16(),
            resp.headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned()),
            String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        Err(e) => panic!("refused without a status: {e}"),
        Ok(_) => panic!("admitted beyond the cap"),
    };
    let (code, retry, body) = status(connect_from("127.0.0.1", s.addr).await);
    println!("per-address refusal: {code} {body:?}");
    assert_eq!(code, 429);
    assert_eq!(retry.as_deref(), Some("10"));
    assert!(body.contains("at most 5"), "{body}");

    // Another address still gets in, up to the total.
    let mut other = Vec::new();
    for _ in 0..3 {
        other.push(connect_from("127.0.0.2", s.addr).await.unwrap());
    }
    let (code, _, body) = status(connect_from("127.0.0.3", s.addr).await);
    println!("total refusal: {code} {body:?}");
    assert_eq!(code, 503);

    assert_eq!(
        s.metric("meshcall_sockets_refused_total{cap=\"per-address\"}")
            .await,
        1.0
    );
    assert_eq!(
        s.metric("meshcall_sockets_refused_total{cap=\"total\"}")
            .await,
        1.0
    );
    assert_eq!(s.metric("meshcall_sockets").await, 8.0);

    // The admitted sockets work, and a closed one frees its place.
    let mut first = local.remove(0);
    first.join(json!({"name": "a", "room": "capped"})).await;
    first.send(json!({"type": "leave"})).await;
    first.expect_close(1000).await;
    drop(first);
    let deadline = Instant::now() + WAIT;
    loop {
        match connect_from("127.0.0.1", s.addr).await {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the place was not freed: {e}"),
        }
    }
}

#[tokio::test]
async fn a_join_during_a_back_off_is_rate_limited_and_the_socket_stays_usable() {
    let s = TestServer::default().await;
    let _owner = owner(&s, "vault").await;
    let mut c = connect_from("127.0.0.3", s.addr).await.unwrap();
    let join = |p: &str| json!({"type": "join", "room": "vault", "name": "x", "passcode": p});
    for _ in 0..5 {
        c.send(join("0000")).await;
        c.expect_error("wrong-passcode").await;
    }
    // Now even the right passcode is not checked: the answer says when to try again.
    c.send(join(PASSCODE)).await;
    let v = c.expect_error("rate-limited").await;
    assert!(
        v["message"].as_str().unwrap().contains("try again in 1 s"),
        "{v}"
    );
    // A room without a passcode is no passcode check: it still works from here.
    c.send(json!({"type": "join", "room": "open-door", "name": "x"}))
        .await;
    c.expect("joined").await;
    assert_eq!(
        s.metric("meshcall_messages_refused_total{code=\"rate-limited\"}")
            .await,
        1.0
    );
    assert_eq!(s.metric("meshcall_passcode_backoffs_total").await, 1.0);
    assert_eq!(s.metric("meshcall_passcode_checks_total").await, 5.0);
    // After the back-off, the right passcode is checked again and works.
    let mut d = connect_from("127.0.0.3", s.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    d.send(join(PASSCODE)).await;
    d.expect("joined").await;
}
