//! Small signaling messages sent back to back must travel at once. With Nagle's algorithm
//! on, a second small write waits for the ACK of the first, which the peer delays by up to
//! ~40 ms; so these tests fail by about 40 ms wherever a socket lacks `TCP_NODELAY`.
//! Server sockets are checked with raw clients (which set nodelay themselves), the client's
//! socket with a raw server that does.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use common::{Client, TestServer};
use futures_util::{SinkExt, StreamExt};
use meshcall::client::{ClientConfig, SignalClient};
use meshcall::proto::{ClientMessage, JoinRequest};
use meshcall::server::{ServerConfig, TlsFiles, serve};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::{Instant, sleep};
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Loopback plus scheduling on two busy cores; a delayed ACK costs 40 ms.
const PROMPT: Duration = Duration::from_millis(15);
/// Repetitions; the worst one is judged.
const ROUNDS: usize = 5;
/// Messages per back-to-back burst.
const BURST: usize = 8;
/// Long enough for every ACK of the last round to be out, so each round starts idle.
const PAUSE: Duration = Duration::from_millis(100);

fn worst_of(lags: &[Duration]) -> Duration {
    lags.iter().copied().max().unwrap_or_default()
}

/// Members join `room` back to back on sockets from `connect`; for each newcomer, how long
/// after its `joined` the first member got its `peer-joined`.
async fn announcement_lags<F, Fut>(connect: F, room: &str) -> Vec<Duration>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Client>,
{
    let mut first = connect().await;
    first.join(json!({"name": "first", "room": room})).await;
    let newcomers = ServerConfig::default().max_room_size - 1;
    let announced = tokio::spawn(async move {
        let mut at = HashMap::new();
        while at.len() < newcomers {
            let v = first.expect("peer-joined").await;
            at.insert(v["peer"]["id"].as_str().unwrap().to_owned(), Instant::now());
        }
        at
    });
    let mut members = Vec::new();
    let mut joined_at = HashMap::new();
    for i in 0..newcomers {
        let mut c = connect().await;
        let j = c.join(json!({"name": format!("m{i}"), "room": room})).await;
        joined_at.insert(j["self"].as_str().unwrap().to_owned(), Instant::now());
        members.push(c);
    }
    let announced = announced.await.unwrap();
    joined_at
        .iter()
        .map(|(id, t)| announced[id].saturating_duration_since(*t))
        .collect()
}

#[tokio::test]
async fn back_to_back_joins_are_announced_at_once() {
    let s = TestServer::default().await;
    let mut lags = Vec::new();
    for round in 0..ROUNDS {
        let room = format!("nodelay-join-{round}");
        lags.extend(announcement_lags(|| s.client(), &room).await);
        sleep(PAUSE).await;
    }
    let worst = worst_of(&lags);
    println!("peer-joined after the newcomer's joined: worst {worst:?} of {lags:?}");
    assert!(
        worst <= PROMPT,
        "peer-joined came {worst:?} after joined (want ≤ {PROMPT:?})"
    );
}

#[tokio::test]
async fn announcements_and_relays_are_prompt_over_tls() {
    meshcall::tls::ensure_crypto_provider();
    let dir = std::env::temp_dir().join(format!("meshcall-nodelay-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = CancellationToken::new();
    let s = stop.clone();
    let server = tokio::spawn(async move {
        let tls = Some(TlsFiles { cert, key });
        serve(listener, ServerConfig::default(), tls, async move {
            s.cancelled().await;
        })
        .await
        .unwrap();
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let tls = Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let connect = || async {
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
            format!("wss://localhost:{port}/ws"),
            None,
            true,
            Some(Connector::Rustls(Arc::clone(&tls))),
        )
        .await
        .unwrap();
        Client { ws }
    };
    let mut announced = Vec::new();
    for round in 0..ROUNDS {
        announced.extend(announcement_lags(connect, &format!("nodelay-tls-{round}")).await);
        sleep(PAUSE).await;
    }
    let relayed = relay_lags(connect, "nodelay-tls-relay").await;
    let (announced, relayed) = (worst_of(&announced), worst_of(&relayed));
    println!("over TLS: peer-joined worst {announced:?}, signal relay worst {relayed:?}");
    assert!(
        announced <= PROMPT && relayed <= PROMPT,
        "over TLS peer-joined came {announced:?} after joined and a signal took {relayed:?} \
         (want ≤ {PROMPT:?})"
    );
    stop.cancel();
    server.await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two members in `room`: A offers, B answers at once (as a browser would), then A sends a
/// burst of candidates. Answering within the ACK delay is what makes B's side delay its
/// ACKs, so the burst is what pays for a missing nodelay. Returns each candidate's time
/// from A's send to B's receipt, over [`ROUNDS`] rounds.
async fn relay_lags<F, Fut>(connect: F, room: &str) -> Vec<Duration>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Client>,
{
    let (mut a, mut b) = (connect().await, connect().await);
    let ja = a.join(json!({"name": "a", "room": room})).await;
    let jb = b.join(json!({"name": "b", "room": room})).await;
    a.expect("peer-joined").await;
    let (to_a, to_b) = (ja["self"].clone(), jb["self"].clone());
    let mut lags = Vec::new();
    for _ in 0..ROUNDS {
        let to_a = to_a.clone();
        let answering = tokio::spawn(async move {
            let offer = b.expect("signal").await;
            assert!(offer["payload"]["sdp"].is_object(), "{offer}");
            let answer = json!({"sdp": {"type": "answer", "sdp": "v=0"}});
            b.send(json!({"type": "signal", "to": to_a, "payload": answer}))
                .await;
            let mut at = Vec::new();
            while at.len() < BURST {
                let v = b.expect("signal").await;
                at.push((v["payload"]["n"].as_u64().unwrap(), Instant::now()));
            }
            (b, at)
        });
        let offer = json!({"sdp": {"type": "offer", "sdp": "v=0"}});
        a.send(json!({"type": "signal", "to": to_b, "payload": offer}))
            .await;
        a.expect("signal").await;
        let mut sent = Vec::new();
        for n in 0..BURST {
            let candidate =
                json!({"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"});
            sent.push(Instant::now());
            let payload = json!({"n": n, "candidate": candidate});
            a.send(json!({"type": "signal", "to": to_b, "payload": payload}))
                .await;
        }
        let (back, at) = answering.await.unwrap();
        b = back;
        lags.extend(
            at.iter()
                .map(|&(n, t)| t.saturating_duration_since(sent[n as usize])),
        );
        sleep(PAUSE).await;
    }
    lags
}

#[tokio::test]
async fn back_to_back_signals_are_relayed_at_once() {
    let s = TestServer::default().await;
    let lags = relay_lags(|| s.client(), "nodelay-relay").await;
    let worst = worst_of(&lags);
    println!("signal relay: worst {worst:?} of {lags:?}");
    assert!(
        worst <= PROMPT,
        "a relayed signal took {worst:?} (want ≤ {PROMPT:?})"
    );
}

#[tokio::test]
async fn the_client_sends_back_to_back_messages_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let total = ROUNDS * BURST;
    // A raw server that answers the join and timestamps every message after it.
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let join = ws.next().await.unwrap().unwrap();
        assert!(join.to_text().unwrap().contains("\"join\""), "{join:?}");
        let joined = json!({"type": "joined", "room": "raw-room", "self": "p1", "token": "t",
            "peers": [], "iceServers": [], "chat": [], "resumed": false});
        ws.send(Message::text(joined.to_string())).await.unwrap();
        let mut at = HashMap::new();
        while at.len() < total {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    at.insert(v["text"].as_str().unwrap().to_owned(), Instant::now());
                }
                Some(Ok(_)) => {}
                other => panic!("client socket ended: {other:?}"),
            }
        }
        at
    });
    let join = JoinRequest {
        name: "client".into(),
        ..Default::default()
    };
    let (client, _) = SignalClient::connect(ClientConfig::new(format!("ws://{addr}"), join))
        .await
        .unwrap();
    let mut sent = HashMap::new();
    for round in 0..ROUNDS {
        sleep(PAUSE).await;
        for i in 0..BURST {
            let text = format!("{round}-{i}");
            sent.insert(text.clone(), Instant::now());
            assert!(client.send(ClientMessage::Chat { text }).await);
        }
    }
    let at = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the raw server did not get every message")
        .unwrap();
    let lags: Vec<_> = sent
        .iter()
        .map(|(text, t)| at[text].saturating_duration_since(*t))
        .collect();
    let worst = worst_of(&lags);
    println!("client to raw server: worst {worst:?}");
    assert!(
        worst <= PROMPT,
        "a message from the client took {worst:?} (want ≤ {PROMPT:?})"
    );
    drop(client);
}
