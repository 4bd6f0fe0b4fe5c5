//! The signaling client library against a real server on loopback.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/proxy.rs"]
mod proxy;

use std::time::Duration;

use common::{TestServer, WAIT, joined};
use meshcall::client::{
    Backoff, ClientConfig, ClientError, ClientEvent, ConnectionState, SignalClient,
};
use meshcall::proto::{
    ClientMessage, ErrorCode, JoinRequest, PeerPayload, ServerMessage, SessionDescription,
    StateUpdate,
};
use meshcall::server::ServerConfig;
use proxy::CutProxy;
use serde_json::json;

fn config(url: String, room: Option<&str>, name: &str) -> ClientConfig {
    let mut c = ClientConfig::new(
        url,
        JoinRequest {
            room: room.map(str::to_owned),
            name: name.to_owned(),
            ..Default::default()
        },
    );
    c.backoff = Backoff {
        base: Duration::from_millis(50),
        max: Duration::from_millis(400),
    };
    c
}

async fn next(c: &mut SignalClient) -> ClientEvent {
    tokio::time::timeout(WAIT, c.next_event())
        .await
        .expect("no event in time")
        .expect("client closed")
}

#[tokio::test]
async fn connect_join_and_exchange_typed_messages() {
    let s = TestServer::default().await;
    let (mut a, ja) = SignalClient::connect(config(s.ws_url(), None, "Ada"))
        .await
        .unwrap();
    assert_eq!(ja.room.len(), 12);
    let (b, jb) = SignalClient::connect(config(s.ws_url(), Some(&ja.room), "Linus"))
        .await
        .unwrap();
    let ServerMessage::Joined { peers, .. } = &jb.message else {
        panic!()
    };
    assert_eq!(peers[0].id, ja.self_id);
    let ClientEvent::Message(ServerMessage::PeerJoined { peer }) = next(&mut a).await else {
        panic!()
    };
    assert_eq!(peer.name, "Linus");
    let offer = PeerPayload::Sdp(SessionDescription {
        kind: "offer".into(),
        sdp: "v=0\r\n".into(),
    });
    assert!(
        b.send(ClientMessage::Signal {
            to: ja.self_id.clone(),
            payload: offer.to_payload()
        })
        .await
    );
    let ClientEvent::Message(ServerMessage::Signal { from, payload }) = next(&mut a).await else {
        panic!()
    };
    assert_eq!(from, jb.self_id);
    assert_eq!(PeerPayload::from_payload(&payload), Some(offer));
    b.leave().await;
    let ClientEvent::Message(ServerMessage::PeerLeft { id }) = next(&mut a).await else {
        panic!()
    };
    assert_eq!(id, jb.self_id);
}

#[tokio::test]
async fn refusals_are_typed_errors() {
    let s = TestServer::start(ServerConfig {
        max_room_size: 1,
        ..Default::default()
    })
    .await;
    let (_a, ja) = SignalClient::connect(config(s.ws_url(), Some("solo"), "a"))
        .await
        .unwrap();
    let err = SignalClient::connect(config(s.ws_url(), Some(&ja.room), "b"))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            ClientError::Refused {
                code: ErrorCode::RoomFull,
                ..
            }
        ),
        "{err}"
    );
    let err = SignalClient::connect(config(s.ws_url(), Some("x"), "b"))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            ClientError::Refused {
                code: ErrorCode::BadRoomCode,
                ..
            }
        ),
        "{err}"
    );
    // Nothing listens on a fresh port of a dropped listener.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let err = SignalClient::connect(config(format!("ws://{addr}"), None, "c"))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("cannot reach"), "{err}");
}

#[tokio::test]
async fn a_dropped_socket_resumes_with_the_same_id_and_nobody_notices() {
    let s = TestServer::default().await;
    let proxy = CutProxy::start(s.addr).await;
    let (mut a, ja) = SignalClient::connect(config(proxy.url(), Some("resume-room"), "a"))
        .await
        .unwrap();
    let (mut b, jb) = joined(&s, Some("resume-room"), "b").await;
    let _ = next(&mut a).await; // peer-joined
    proxy.refuse(true);
    proxy.cut();
    assert_eq!(
        next(&mut a).await,
        ClientEvent::State(ConnectionState::Reconnecting { attempt: 0 })
    );
    // While a is away, b signals it, and a changes its state.
    b.send(json!({"type": "signal", "to": ja.self_id, "payload": {"n": 1}}))
        .await;
    assert!(
        a.send(ClientMessage::State(StateUpdate {
            audio: Some(true),
            ..Default::default()
        }))
        .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.refuse(false);
    let mut saw_connected = false;
    let mut saw_signal = false;
    let mut saw_joined = false;
    while !(saw_connected && saw_signal && saw_joined) {
        match next(&mut a).await {
            ClientEvent::State(ConnectionState::Connected) => saw_connected = true,
            ClientEvent::State(ConnectionState::Reconnecting { .. }) => {}
            ClientEvent::Message(ServerMessage::Joined {
                self_id, resumed, ..
            }) => {
                assert!(resumed);
                assert_eq!(self_id, ja.self_id);
                saw_joined = true;
            }
            ClientEvent::Message(ServerMessage::Signal { from, payload }) => {
                assert_eq!(from, jb["self"].as_str().unwrap());
                assert_eq!(payload.as_str(), r#"{"n":1}"#);
                saw_signal = true;
            }
            other => panic!("{other:?}"),
        }
    }
    // b never saw a leave; it sees a's new state (folded into the resume join or sent after).
    let u = b.recv().await;
    assert_eq!(u["type"], "peer-updated", "{u}");
    assert_eq!(u["peer"]["audio"], true);
    b.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn after_the_grace_period_the_client_joins_afresh() {
    let s = TestServer::start(ServerConfig {
        grace: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let proxy = CutProxy::start(s.addr).await;
    let (mut a, ja) = SignalClient::connect(config(proxy.url(), Some("late-room"), "a"))
        .await
        .unwrap();
    let (mut b, _) = joined(&s, Some("late-room"), "b").await;
    let _ = next(&mut a).await;
    proxy.refuse(true);
    proxy.cut();
    let left = b.expect("peer-left").await;
    assert_eq!(left["id"], ja.self_id.as_str());
    proxy.refuse(false);
    loop {
        if let ClientEvent::Message(ServerMessage::Joined {
            self_id,
            resumed,
            room,
            ..
        }) = next(&mut a).await
        {
            assert!(!resumed);
            assert_ne!(self_id, ja.self_id);
            assert_eq!(room, "late-room");
            break;
        }
    }
    let pj = b.expect("peer-joined").await;
    assert_eq!(pj["peer"]["name"], "a");
}

#[tokio::test]
async fn being_replaced_by_another_socket_closes_the_client() {
    let s = TestServer::default().await;
    let (mut a, ja) = SignalClient::connect(config(s.ws_url(), None, "a"))
        .await
        .unwrap();
    let ServerMessage::Joined { token, .. } = &ja.message else {
        panic!()
    };
    let mut other = s.client().await;
    other
        .join(json!({"name": "a", "room": ja.room, "resume": {"id": ja.self_id, "token": token}}))
        .await;
    let ev = next(&mut a).await;
    assert!(
        matches!(ev, ClientEvent::State(ConnectionState::Closed { .. })),
        "{ev:?}"
    );
    assert!(
        tokio::time::timeout(WAIT, a.next_event())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn dropping_the_client_leaves_the_room() {
    let s = TestServer::default().await;
    let (a, ja) = SignalClient::connect(config(s.ws_url(), Some("drop-room"), "a"))
        .await
        .unwrap();
    let (mut b, _) = joined(&s, Some("drop-room"), "b").await;
    drop(a);
    let left = b.expect("peer-left").await;
    assert_eq!(left["id"], ja.self_id.as_str());
}
