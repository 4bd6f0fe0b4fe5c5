//! One test per rule of shared/protocol.md, each over a real socket on 127.0.0.1.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Frame, TestServer, WAIT, joined, room_of};
use meshcall::server::ServerConfig;
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(300);

fn id(v: &Value) -> String {
    v["self"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------- transport

#[tokio::test]
async fn binary_frames_are_bad_messages_and_the_socket_stays_open() {
    let s = TestServer::default().await;
    let mut c = s.client().await;
    c.send_binary(b"{\"type\":\"join\",\"name\":\"a\"}".to_vec())
        .await;
    c.expect_error("bad-message").await;
    c.join(json!({"name": "Ada"})).await;
}

#[tokio::test]
async fn unknown_type_is_bad_message_and_the_socket_stays_open() {
    let s = TestServer::default().await;
    let mut c = s.client().await;
    c.send(json!({"type": "dance"})).await;
    c.expect_error("bad-message").await;
    let j = c.join(json!({"name": "Ada"})).await;
    c.send(json!({"type": "dance"})).await;
    c.expect_error("bad-message").await;
    c.send(json!({"type": "chat", "text": "still here"})).await;
    assert_eq!(c.expect("chat").await["from"], j["self"]);
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    let s = TestServer::default().await;
    let mut c = s.client().await;
    let j = c
        .join(json!({"name": "Ada", "future": {"x": 1}, "v": 2}))
        .await;
    assert_eq!(j["resumed"], false);
    c.send(json!({"type": "chat", "text": "hi", "color": "red"}))
        .await;
    c.expect("chat").await;
}

#[tokio::test]
async fn malformed_json_and_wrong_field_types_are_bad_messages() {
    let s = TestServer::default().await;
    let mut c = s.client().await;
    for bad in [
        "{",
        "[]",
        "\"join\"",
        "{\"name\":\"x\"}",
        "{\"type\":7}",
        "{\"type\":\"join\"}",
        "{\"type\":\"join\",\"name\":42}",
        "{\"type\":\"join\",\"name\":\"a\",\"room\":5}",
        "{\"type\":\"join\",\"name\":\"a\",\"audio\":\"on\"}",
        "{\"type\":\"join\",\"name\":\"a\",\"resume\":\"x\"}",
    ] {
        c.send_text(bad).await;
        c.expect_error("bad-message").await;
    }
    let (room, mut members) = room_of(&s, 2).await;
    let _ = room;
    let (a, _) = &mut members[0];
    for bad in [
        json!({"type": "signal", "to": "p2"}),
        json!({"type": "signal", "payload": {}}),
        json!({"type": "signal", "to": 2, "payload": {}}),
        json!({"type": "signal", "to": "p2", "payload": "offer"}),
        json!({"type": "chat"}),
        json!({"type": "chat", "text": ["x"]}),
        json!({"type": "state", "audio": "no"}),
        json!({"type": "state", "name": 1}),
    ] {
        a.send(bad.clone()).await;
        let e = a.recv().await;
        assert_eq!(e["code"], "bad-message", "{bad} -> {e}");
    }
}

#[tokio::test]
async fn a_frame_over_64_kib_gets_too_large_and_close_1009() {
    let s = TestServer::default().await;
    let mut c = s.client().await;
    // Exactly 64 KiB is allowed (it is answered, not closed).
    let pad = 65536 - r#"{"type":"dance","p":""}"#.len();
    c.send_text(format!(r#"{{"type":"dance","p":"{}"}}"#, "x".repeat(pad)))
        .await;
    c.expect_error("bad-message").await;
    c.send_text(format!(
        r#"{{"type":"dance","p":"{}"}}"#,
        "x".repeat(pad + 1)
    ))
    .await;
    let before = c.expect_close(1009).await;
    assert_eq!(before.len(), 1);
    assert_eq!(before[0]["code"], "too-large");
}

#[tokio::test]
async fn a_large_frame_is_refused_the_same_way() {
    let s = TestServer::default().await;
    let mut c = s.client().await;
    c.send_text("x".repeat(900 << 10)).await;
    let before = c.expect_close(1009).await;
    assert_eq!(before[0]["code"], "too-large");
}

#[tokio::test]
async fn a_huge_frame_drops_the_socket_and_harms_nothing() {
    let s = TestServer::default().await;
    let (mut a, ja) = joined(&s, None, "a").await;
    let room = ja["room"].as_str().unwrap().to_owned();
    let (mut b, _) = joined(&s, Some(&room), "b").await;
    a.expect("peer-joined").await;
    // Over the 1 MiB read cap the server does not read the frame at all: the socket ends
    // (1009 if the client reads it before the reset, otherwise a reset).
    let _ = futures_util::SinkExt::send(
        &mut b.ws,
        tokio_tungstenite::tungstenite::Message::text("x".repeat(4 << 20)),
    )
    .await;
    match b.next_within(WAIT).await {
        Some(Frame::Closed(code, _)) => assert!(code.is_none() || code == Some(1009), "{code:?}"),
        Some(Frame::Json(v)) => assert_eq!(v["code"], "too-large"),
        None => panic!("socket not closed"),
    }
    // The other member and new clients are unaffected.
    a.send(json!({"type": "chat", "text": "fine"})).await;
    a.expect("chat").await;
    joined(&s, None, "next").await;
}

#[tokio::test]
async fn permessage_deflate_is_not_negotiated() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::default().await;
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let req = "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
               Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
               Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(!head.contains("sec-websocket-extensions"), "{head}");
}

#[tokio::test]
async fn the_server_pings_and_drops_a_silent_client() {
    let s = TestServer::start(ServerConfig {
        ping_interval: Duration::from_millis(100),
        ping_timeout: Duration::from_millis(600),
        grace: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    // A client that reads sees pings (and answers them automatically).
    let (mut b, jb) = joined(&s, None, "reader").await;
    let room = jb["room"].as_str().unwrap().to_owned();
    let mut pings = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(450);
    while let Ok(Some(Ok(m))) =
        tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut b.ws)).await
    {
        if m.is_ping() {
            pings += 1;
        }
    }
    assert!(pings >= 2, "saw {pings} pings");
    // A client that never reads never answers: dropped after the timeout, then the grace.
    let (silent, js) = joined(&s, Some(&room), "silent").await;
    b.expect("peer-joined").await;
    let left = tokio::time::Instant::now();
    let v = b.recv().await;
    assert_eq!(v["type"], "peer-left");
    assert_eq!(v["id"], js["self"]);
    let took = left.elapsed();
    assert!(took >= Duration::from_millis(600), "{took:?}");
    drop(silent);
}

// ---------------------------------------------------------------- codes and names

#[tokio::test]
async fn created_rooms_get_unguessable_codes_of_the_documented_form() {
    let s = TestServer::default().await;
    let (_a, ja) = joined(&s, None, "a").await;
    let mut c = s.client().await;
    let jb = c.join(json!({"name": "b", "room": ""})).await;
    for j in [&ja, &jb] {
        let code = j["room"].as_str().unwrap();
        let groups: Vec<usize> = code.split('-').map(str::len).collect();
        assert_eq!(groups, [3, 4, 3], "{code}");
        assert!(
            code.chars().all(|c| c == '-' || c.is_ascii_lowercase()),
            "{code}"
        );
    }
    assert_ne!(ja["room"], jb["room"]);
}

#[tokio::test]
async fn room_codes_are_lower_cased_and_checked() {
    let s = TestServer::default().await;
    let (_a, ja) = joined(&s, Some("Team-Sync"), "a").await;
    assert_eq!(ja["room"], "team-sync");
    let (_b, jb) = joined(&s, Some("TEAM-SYNC"), "b").await;
    assert_eq!(jb["room"], "team-sync");
    assert_eq!(jb["peers"][0]["id"], ja["self"]);
    let mut c = s.client().await;
    for bad in [
        "ab",
        "-abc",
        "abc-",
        "a_b_c",
        "ab cd",
        &"a".repeat(65),
        "caféé",
    ] {
        c.send(json!({"type": "join", "name": "x", "room": bad}))
            .await;
        c.expect_error("bad-room-code").await;
    }
    // The same socket may still join after the refusals.
    let ok = c.join(json!({"name": "x", "room": "a".repeat(64)})).await;
    assert_eq!(ok["room"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn names_are_trimmed_and_bad_names_refused() {
    let s = TestServer::default().await;
    let mut c = s.client().await;
    for bad in [
        "",
        "   ",
        "\u{2003}",
        "a\u{0}b",
        "tab\there",
        &"n".repeat(65),
    ] {
        c.send(json!({"type": "join", "name": bad})).await;
        c.expect_error("bad-name").await;
    }
    let j = c.join(json!({"name": "  Grace Hopper  "})).await;
    let room = j["room"].as_str().unwrap().to_owned();
    let (_, j2) = joined(&s, Some(&room), &"é".repeat(64)).await;
    assert_eq!(j2["peers"][0]["name"], "Grace Hopper");
    c.expect("peer-joined").await;
    // A bad name in `state` is refused too, and the stored name is kept.
    c.send(json!({"type": "state", "name": "\u{7}"})).await;
    c.expect_error("bad-name").await;
}

#[tokio::test]
async fn null_optional_fields_count_as_absent() {
    let s = TestServer::default().await;
    let mut c = s.client().await;
    let j = c
        .join(json!({"name": "a", "room": null, "passcode": null, "audio": null, "video": null, "resume": null}))
        .await;
    assert_eq!(j["resumed"], false);
    let room = j["room"].as_str().unwrap();
    let (_b, jb) = joined(&s, Some(room), "b").await;
    assert_eq!(
        jb["peers"][0],
        json!({"id": j["self"], "name": "a", "audio": false, "video": false, "screen": false})
    );
}

#[tokio::test]
async fn peer_ids_are_unique_and_never_reused_in_a_room() {
    let s = TestServer::default().await;
    let (room, mut members) = room_of(&s, 3).await;
    let mut seen: Vec<String> = members.iter().map(|(_, id)| id.clone()).collect();
    for _ in 0..3 {
        let (mut c, _) = members.pop().unwrap();
        c.send(json!({"type": "leave"})).await;
        c.expect_close(1000).await;
        for (m, _) in &mut members {
            m.expect("peer-left").await;
        }
        let (c, j) = joined(&s, Some(&room), "again").await;
        for (m, _) in &mut members {
            m.expect("peer-joined").await;
        }
        assert!(!seen.contains(&id(&j)), "{} reused", id(&j));
        seen.push(id(&j));
        members.push((c, id(&j)));
    }
}

// ---------------------------------------------------------------- join rules

#[tokio::test]
async fn joined_lists_the_others_and_peer_joined_tells_them() {
    let s = TestServer::default().await;
    let (mut a, ja) = joined(&s, None, "Ada").await;
    assert_eq!(ja["peers"], json!([]));
    assert_eq!(ja["chat"], json!([]));
    assert_eq!(ja["iceServers"], json!([]));
    assert!(ja["token"].as_str().is_some_and(|t| t.len() >= 16));
    let room = ja["room"].as_str().unwrap();
    let mut b = s.client().await;
    let jb = b
        .join(json!({"name": "Linus", "room": room, "audio": true, "video": false}))
        .await;
    assert_eq!(jb["room"], room);
    assert_eq!(jb["resumed"], false);
    assert_eq!(
        jb["peers"],
        json!([{"id": ja["self"], "name": "Ada", "audio": false, "video": false, "screen": false}])
    );
    let pj = a.expect("peer-joined").await;
    assert_eq!(
        pj["peer"],
        json!({"id": jb["self"], "name": "Linus", "audio": true, "video": false, "screen": false})
    );
    b.expect_silence(QUIET).await;
}

#[tokio::test]
async fn a_chosen_code_creates_the_room_when_missing() {
    let s = TestServer::default().await;
    let (_a, ja) = joined(&s, Some("standup"), "a").await;
    assert_eq!(ja["room"], "standup");
    assert_eq!(ja["peers"], json!([]));
}

#[tokio::test]
async fn the_creating_join_sets_the_passcode() {
    let s = TestServer::default().await;
    let mut a = s.client().await;
    let ja = a
        .join(json!({"name": "a", "room": "secret-room", "passcode": "hunter2"}))
        .await;
    let mut b = s.client().await;
    b.send(json!({"type": "join", "name": "b", "room": "secret-room"}))
        .await;
    b.expect_error("wrong-passcode").await;
    b.send(json!({"type": "join", "name": "b", "room": "secret-room", "passcode": "nope"}))
        .await;
    b.expect_error("wrong-passcode").await;
    let jb = b
        .join(json!({"name": "b", "room": "secret-room", "passcode": "hunter2"}))
        .await;
    assert_eq!(jb["peers"][0]["id"], ja["self"]);
}

#[tokio::test]
async fn a_passcode_sent_to_a_room_without_one_is_ignored() {
    let s = TestServer::default().await;
    let (_a, _) = joined(&s, Some("open-room"), "a").await;
    let mut b = s.client().await;
    let jb = b
        .join(json!({"name": "b", "room": "open-room", "passcode": "whatever"}))
        .await;
    assert_eq!(jb["peers"].as_array().unwrap().len(), 1);
    // And an empty passcode on creation sets none.
    let mut c = s.client().await;
    c.join(json!({"name": "c", "room": "empty-pass", "passcode": ""}))
        .await;
    joined(&s, Some("empty-pass"), "d").await;
}

#[tokio::test]
async fn room_full_at_the_limit_and_the_socket_may_retry() {
    let s = TestServer::start(ServerConfig {
        max_room_size: 2,
        ..Default::default()
    })
    .await;
    let (room, mut members) = room_of(&s, 2).await;
    let mut c = s.client().await;
    c.send(json!({"type": "join", "name": "c", "room": room}))
        .await;
    c.expect_error("room-full").await;
    let (mut gone, _) = members.pop().unwrap();
    gone.send(json!({"type": "leave"})).await;
    members[0].0.expect("peer-left").await;
    c.join(json!({"name": "c", "room": room})).await;
}

#[tokio::test]
async fn join_errors_take_the_documented_precedence() {
    let s = TestServer::start(ServerConfig {
        max_room_size: 1,
        ..Default::default()
    })
    .await;
    let mut owner = s.client().await;
    owner
        .join(json!({"name": "o", "room": "locked", "passcode": "pw"}))
        .await;
    let mut c = s.client().await;
    let cases = [
        // bad-message beats everything.
        (
            json!({"type": "join", "name": 1, "room": "-x"}),
            "bad-message",
        ),
        // bad-room-code beats bad-name, bad-resume, wrong-passcode, room-full.
        (
            json!({"type": "join", "name": "", "room": "-x", "resume": {"id": "p9", "token": "t"}}),
            "bad-room-code",
        ),
        // bad-name beats bad-resume.
        (
            json!({"type": "join", "name": "", "room": "locked", "resume": {"id": "p9", "token": "t"}}),
            "bad-name",
        ),
        // bad-resume beats wrong-passcode and room-full.
        (
            json!({"type": "join", "name": "c", "room": "locked", "resume": {"id": "p9", "token": "t"}}),
            "bad-resume",
        ),
        // wrong-passcode beats room-full.
        (
            json!({"type": "join", "name": "c", "room": "locked", "passcode": "no"}),
            "wrong-passcode",
        ),
        (
            json!({"type": "join", "name": "c", "room": "locked", "passcode": "pw"}),
            "room-full",
        ),
    ];
    for (msg, code) in cases {
        c.send(msg.clone()).await;
        let e = c.recv().await;
        assert_eq!(e["code"], code, "{msg} -> {e}");
    }
}

#[tokio::test]
async fn only_join_before_joined() {
    let s = TestServer::default().await;
    let mut c = s.client().await;
    for msg in [
        json!({"type": "chat", "text": "hi"}),
        json!({"type": "state", "audio": true}),
        json!({"type": "signal", "to": "p1", "payload": {}}),
        json!({"type": "leave"}),
    ] {
        c.send(msg).await;
        c.expect_error("not-joined").await;
    }
    // A malformed message first is bad-message, not not-joined.
    c.send(json!({"type": "chat"})).await;
    c.expect_error("bad-message").await;
    c.join(json!({"name": "a"})).await;
}

#[tokio::test]
async fn a_second_join_is_already_joined() {
    let s = TestServer::default().await;
    let (mut a, ja) = joined(&s, None, "a").await;
    a.send(json!({"type": "join", "name": "a", "room": ja["room"]}))
        .await;
    a.expect_error("already-joined").await;
    a.send(json!({"type": "join", "name": "a"})).await;
    a.expect_error("already-joined").await;
}

// ---------------------------------------------------------------- signal

#[tokio::test]
async fn signals_are_relayed_unchanged_with_a_server_stamped_from() {
    let s = TestServer::default().await;
    let (_room, mut m) = room_of(&s, 2).await;
    let b_id = m[1].1.clone();
    let a_id = m[0].1.clone();
    let payload = r#"{"sdp":{"type":"offer","sdp":"v=0\r\nö"},"z":[1,2.5,null],"a":{}}"#;
    m[0].0
        .send_text(format!(
            r#"{{"type":"signal","to":"{b_id}","from":"forged","payload":{payload}}}"#
        ))
        .await;
    let got = m[1].0.expect("signal").await;
    assert_eq!(got["from"], a_id.as_str());
    assert_eq!(
        got["payload"].to_string(),
        serde_json::from_str::<Value>(payload).unwrap().to_string()
    );
    m[0].0.expect_silence(QUIET).await;
}

#[tokio::test]
async fn signals_from_one_sender_arrive_in_order() {
    let s = TestServer::default().await;
    let (_room, mut m) = room_of(&s, 2).await;
    let b_id = m[1].1.clone();
    for i in 0..90 {
        m[0].0
            .send(json!({"type": "signal", "to": b_id, "payload": {"seq": i}}))
            .await;
    }
    for i in 0..90 {
        assert_eq!(m[1].0.expect("signal").await["payload"]["seq"], i);
    }
}

#[tokio::test]
async fn a_payload_over_32_kib_is_too_large_and_not_relayed() {
    let s = TestServer::default().await;
    let (_room, mut m) = room_of(&s, 2).await;
    let b_id = m[1].1.clone();
    let big = "x".repeat(33 * 1024);
    m[0].0
        .send(json!({"type": "signal", "to": b_id, "payload": {"blob": big}}))
        .await;
    m[0].0.expect_error("too-large").await;
    m[1].0.expect_silence(QUIET).await;
    // Just under the limit passes, and the socket stayed open.
    let fits = "x".repeat(32 * 1024 - 20);
    m[0].0
        .send(json!({"type": "signal", "to": b_id, "payload": {"blob": fits}}))
        .await;
    m[1].0.expect("signal").await;
}

#[tokio::test]
async fn a_signal_to_a_stranger_or_to_yourself_is_unknown_peer() {
    let s = TestServer::default().await;
    let (_room, mut m) = room_of(&s, 2).await;
    let a_id = m[0].1.clone();
    // Someone in another room is a stranger too.
    let (_other, jo) = joined(&s, None, "elsewhere").await;
    for to in ["p999", a_id.as_str(), jo["self"].as_str().unwrap()] {
        if to == jo["self"] && jo["self"] == json!(m[1].1) {
            continue;
        }
        m[0].0
            .send(json!({"type": "signal", "to": to, "payload": {}}))
            .await;
        m[0].0.expect_error("unknown-peer").await;
    }
    m[1].0.expect_silence(QUIET).await;
}

// ---------------------------------------------------------------- state, chat, leave

#[tokio::test]
async fn state_is_announced_to_the_others_only_when_it_changes() {
    let s = TestServer::default().await;
    let (_room, mut m) = room_of(&s, 3).await;
    let a_id = m[0].1.clone();
    m[0].0
        .send(json!({"type": "state", "audio": true, "name": " Ada L. "}))
        .await;
    for (c, _) in &mut m[1..] {
        let u = c.expect("peer-updated").await;
        assert_eq!(
            u["peer"],
            json!({"id": a_id, "name": "Ada L.", "audio": true, "video": false, "screen": false})
        );
    }
    m[0].0.send(json!({"type": "state", "audio": true})).await;
    m[0].0.send(json!({"type": "state", "screen": true})).await;
    for (c, _) in &mut m[1..] {
        let u = c.expect("peer-updated").await;
        assert_eq!(u["peer"]["screen"], true);
    }
    m[0].0.expect_silence(QUIET).await;
    // A newcomer sees the stored state.
    let (_d, jd) = joined(&s, Some(&_room), "d").await;
    assert_eq!(jd["peers"][0]["name"], "Ada L.");
    assert_eq!(jd["peers"][0]["audio"], true);
}

#[tokio::test]
async fn chat_is_echoed_stamped_and_length_checked() {
    let s = TestServer::default().await;
    let (_room, mut m) = room_of(&s, 2).await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    m[0].0
        .send(json!({"type": "chat", "text": "héllo", "ts": 1}))
        .await;
    for (c, _) in &mut m {
        let msg = c.expect("chat").await;
        assert_eq!(msg["text"], "héllo");
        assert_eq!(msg["name"], "m0");
        let ts = msg["ts"].as_u64().unwrap();
        assert!(ts >= before && ts < before + 5000, "{ts}");
    }
    m[1].0.expect_silence(QUIET).await;
    m[0].0.send(json!({"type": "chat", "text": ""})).await;
    m[0].0.expect_error("bad-message").await;
    m[0].0
        .send(json!({"type": "chat", "text": "é".repeat(2001)}))
        .await;
    m[0].0.expect_error("bad-message").await;
    m[0].0
        .send(json!({"type": "chat", "text": "é".repeat(2000)}))
        .await;
    m[0].0.expect("chat").await;
}

#[tokio::test]
async fn joined_carries_the_last_50_chat_messages_oldest_first() {
    let s = TestServer::default().await;
    let (mut a, ja) = joined(&s, None, "a").await;
    let room = ja["room"].as_str().unwrap().to_owned();
    for i in 0..60 {
        a.send(json!({"type": "chat", "text": format!("m{i}")}))
            .await;
        a.expect("chat").await;
    }
    let (_b, jb) = joined(&s, Some(&room), "b").await;
    let chat = jb["chat"].as_array().unwrap();
    assert_eq!(chat.len(), 50);
    assert_eq!(chat[0]["text"], "m10");
    assert_eq!(chat[49]["text"], "m59");
    assert_eq!(chat[0]["from"], ja["self"]);
    assert!(chat[0].get("type").is_none());
}

#[tokio::test]
async fn leave_tells_the_others_and_closes_the_socket() {
    let s = TestServer::default().await;
    let (_room, mut m) = room_of(&s, 3).await;
    let (mut c, c_id) = m.pop().unwrap();
    c.send(json!({"type": "leave"})).await;
    c.expect_close(1000).await;
    for (o, _) in &mut m {
        let v = o.expect("peer-left").await;
        assert_eq!(v["id"], c_id.as_str());
    }
}

#[tokio::test]
async fn a_room_ends_with_its_last_member() {
    let s = TestServer::default().await;
    let mut a = s.client().await;
    a.join(json!({"name": "a", "room": "ephemeral", "passcode": "pw"}))
        .await;
    a.send(json!({"type": "chat", "text": "remember me"})).await;
    a.expect("chat").await;
    assert_eq!(s.metric("meshcall_rooms").await, 1.0);
    a.send(json!({"type": "leave"})).await;
    a.expect_close(1000).await;
    assert_eq!(s.metric("meshcall_rooms").await, 0.0);
    // Same code later: a new room, without the old passcode or history.
    let (_b, jb) = joined(&s, Some("ephemeral"), "b").await;
    assert_eq!(jb["chat"], json!([]));
    assert_eq!(jb["self"], "p1");
}

// ---------------------------------------------------------------- rate limit

#[tokio::test]
async fn messages_beyond_the_rate_are_dropped_with_one_error_a_second() {
    let s = TestServer::default().await;
    let (mut a, _) = joined(&s, None, "a").await;
    for i in 0..150 {
        a.send(json!({"type": "chat", "text": format!("{i}")}))
            .await;
    }
    let mut chats = 0;
    let mut limited = 0;
    while let Some(Frame::Json(v)) = a.next_within(QUIET).await {
        match v["type"].as_str() {
            Some("chat") => chats += 1,
            Some("error") if v["code"] == "rate-limited" => limited += 1,
            _ => panic!("{v}"),
        }
    }
    // The join took one token of the burst of 100.
    assert!((99..=110).contains(&chats), "{chats} processed");
    assert_eq!(limited, 1);
}

#[tokio::test]
async fn ten_seconds_of_flooding_closes_with_1008() {
    let s = TestServer::default().await;
    let (mut a, _) = joined(&s, None, "a").await;
    let start = tokio::time::Instant::now();
    let closed = loop {
        // 200 messages a second: four times the allowed rate.
        for _ in 0..10 {
            if futures_util::SinkExt::send(
                &mut a.ws,
                tokio_tungstenite::tungstenite::Message::text(r#"{"type":"state"}"#),
            )
            .await
            .is_err()
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut code = None;
        while let Some(f) = a.next_within(Duration::ZERO).await {
            if let Frame::Closed(c, _) = f {
                code = Some(c);
                break;
            }
        }
        if let Some(c) = code {
            break c;
        }
        assert!(start.elapsed() < Duration::from_secs(14), "never closed");
    };
    assert_eq!(closed, Some(1008));
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(10), "{took:?}");
}

// ---------------------------------------------------------------- resume

#[tokio::test]
async fn a_dropped_socket_is_invisible_within_the_grace_and_resumes() {
    let s = TestServer::default().await;
    let (room, mut m) = room_of(&s, 2).await;
    let (a, a_id) = m.remove(0);
    drop(a);
    let (mut b, b_id) = m.remove(0);
    b.expect_silence(Duration::from_millis(700)).await;
    // Newcomers still see the absent member.
    let (_c, jc) = joined(&s, Some(&room), "c").await;
    let ids: Vec<&str> = jc["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&a_id.as_str()) && ids.contains(&b_id.as_str()),
        "{ids:?}"
    );
    b.expect("peer-joined").await;
}

#[tokio::test]
async fn resume_keeps_the_id_announces_nothing_and_delivers_queued_signals() {
    let s = TestServer::default().await;
    let (mut a, ja) = joined(&s, None, "a").await;
    let room = ja["room"].as_str().unwrap().to_owned();
    let (mut b, jb) = joined(&s, Some(&room), "b").await;
    a.expect("peer-joined").await;
    drop(a);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..3 {
        b.send(json!({"type": "signal", "to": ja["self"], "payload": {"n": i}}))
            .await;
    }
    let mut a2 = s.client().await;
    let j2 = a2
        .join(
            json!({"name": "a", "room": room, "resume": {"id": ja["self"], "token": ja["token"]}}),
        )
        .await;
    assert_eq!(j2["resumed"], true);
    assert_eq!(j2["self"], ja["self"]);
    assert_ne!(j2["token"], ja["token"]);
    assert_eq!(j2["peers"][0]["id"], jb["self"]);
    for i in 0..3 {
        let sig = a2.expect("signal").await;
        assert_eq!(sig["payload"]["n"], i);
        assert_eq!(sig["from"], jb["self"]);
    }
    b.expect_silence(QUIET).await;
}

#[tokio::test]
async fn resume_with_changed_state_announces_peer_updated() {
    let s = TestServer::default().await;
    let (a, ja) = joined(&s, None, "a").await;
    let room = ja["room"].as_str().unwrap().to_owned();
    let (mut b, _) = joined(&s, Some(&room), "b").await;
    drop(a);
    let mut a2 = s.client().await;
    a2.join(json!({"name": "a", "room": room, "audio": true, "resume": {"id": ja["self"], "token": ja["token"]}}))
        .await;
    let u = b.expect("peer-updated").await;
    assert_eq!(u["peer"]["audio"], true);
    assert_eq!(u["peer"]["id"], ja["self"]);
}

#[tokio::test]
async fn resume_replaces_an_open_socket_with_4001() {
    let s = TestServer::default().await;
    let (mut a, ja) = joined(&s, None, "a").await;
    let room = ja["room"].as_str().unwrap().to_owned();
    let (mut b, _) = joined(&s, Some(&room), "b").await;
    a.expect("peer-joined").await;
    let mut a2 = s.client().await;
    a2.join(json!({"name": "a", "room": room, "resume": {"id": ja["self"], "token": ja["token"]}}))
        .await;
    a.expect_close(4001).await;
    // The replaced socket's end neither starts a grace period nor tells anyone.
    b.expect_silence(QUIET).await;
    b.send(json!({"type": "chat", "text": "still there?"}))
        .await;
    a2.expect("chat").await;
}

#[tokio::test]
async fn bad_resumes_are_refused_and_the_client_may_join_afresh() {
    let s = TestServer::default().await;
    let (mut a, ja) = joined(&s, None, "a").await;
    let room = ja["room"].as_str().unwrap().to_owned();
    let (_other, jo) = joined(&s, Some("other-room"), "o").await;
    let mut c = s.client().await;
    let good = json!({"id": ja["self"], "token": ja["token"]});
    let cases = [
        json!({"name": "a", "room": room, "resume": {"id": "p77", "token": ja["token"]}}),
        json!({"name": "a", "room": room, "resume": {"id": ja["self"], "token": "wrong"}}),
        json!({"name": "a", "room": "other-room", "resume": good}),
        json!({"name": "a", "resume": good}),
        json!({"name": "a", "room": "no-such-room", "resume": good}),
    ];
    for mut case in cases {
        case["type"] = json!("join");
        c.send(case.clone()).await;
        let e = c.recv().await;
        assert_eq!(e["code"], "bad-resume", "{case} -> {e}");
    }
    let _ = jo;
    // After leave, the ticket is dead.
    a.send(json!({"type": "leave"})).await;
    a.expect_close(1000).await;
    c.send(json!({"type": "join", "name": "a", "room": room, "resume": good}))
        .await;
    c.expect_error("bad-resume").await;
    let fresh = c.join(json!({"name": "a", "room": room})).await;
    assert_eq!(fresh["resumed"], false);
}

#[tokio::test]
async fn only_the_latest_token_works() {
    let s = TestServer::default().await;
    let (a, ja) = joined(&s, None, "a").await;
    let room = ja["room"].as_str().unwrap().to_owned();
    drop(a);
    let mut a2 = s.client().await;
    let j2 = a2
        .join(
            json!({"name": "a", "room": room, "resume": {"id": ja["self"], "token": ja["token"]}}),
        )
        .await;
    let mut a3 = s.client().await;
    a3.send(json!({"type": "join", "name": "a", "room": room, "resume": {"id": ja["self"], "token": ja["token"]}}))
        .await;
    a3.expect_error("bad-resume").await;
    a3.join(json!({"name": "a", "room": room, "resume": {"id": ja["self"], "token": j2["token"]}}))
        .await;
}

#[tokio::test]
async fn a_valid_resume_needs_no_passcode_and_is_never_room_full() {
    let s = TestServer::start(ServerConfig {
        max_room_size: 2,
        ..Default::default()
    })
    .await;
    let mut a = s.client().await;
    let ja = a
        .join(json!({"name": "a", "room": "vip", "passcode": "pw"}))
        .await;
    let mut b = s.client().await;
    b.join(json!({"name": "b", "room": "vip", "passcode": "pw"}))
        .await;
    drop(a);
    // The absent member still counts toward the size.
    let mut c = s.client().await;
    c.send(json!({"type": "join", "name": "c", "room": "vip", "passcode": "pw"}))
        .await;
    c.expect_error("room-full").await;
    let mut a2 = s.client().await;
    let j = a2
        .join(
            json!({"name": "a", "room": "vip", "resume": {"id": ja["self"], "token": ja["token"]}}),
        )
        .await;
    assert_eq!(j["resumed"], true);
}

#[tokio::test]
async fn grace_expiry_sends_peer_left_and_drops_the_queue() {
    let s = TestServer::start(ServerConfig {
        grace: Duration::from_millis(500),
        ..Default::default()
    })
    .await;
    let (a, ja) = joined(&s, None, "a").await;
    let room = ja["room"].as_str().unwrap().to_owned();
    let (mut b, _) = joined(&s, Some(&room), "b").await;
    drop(a);
    b.send(json!({"type": "signal", "to": ja["self"], "payload": {"lost": true}}))
        .await;
    b.expect_silence(Duration::from_millis(300)).await;
    let left = b.expect("peer-left").await;
    assert_eq!(left["id"], ja["self"]);
    let mut a2 = s.client().await;
    a2.send(json!({"type": "join", "name": "a", "room": room, "resume": {"id": ja["self"], "token": ja["token"]}}))
        .await;
    a2.expect_error("bad-resume").await;
    b.send(json!({"type": "signal", "to": ja["self"], "payload": {}}))
        .await;
    b.expect_error("unknown-peer").await;
}

#[tokio::test]
async fn the_grace_queue_keeps_the_newest_256_signals() {
    let s = TestServer::start(ServerConfig {
        rate: meshcall::server::RateLimits {
            per_second: 10_000.0,
            burst: 10_000.0,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let (a, ja) = joined(&s, None, "a").await;
    let room = ja["room"].as_str().unwrap().to_owned();
    let (mut b, _) = joined(&s, Some(&room), "b").await;
    drop(a);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..300 {
        b.send(json!({"type": "signal", "to": ja["self"], "payload": {"n": i}}))
            .await;
    }
    // Let the relay finish before resuming.
    b.send(json!({"type": "chat", "text": "sync"})).await;
    b.expect("chat").await;
    let mut a2 = s.client().await;
    a2.join(json!({"name": "a", "room": room, "resume": {"id": ja["self"], "token": ja["token"]}}))
        .await;
    for i in 44..300 {
        assert_eq!(a2.expect("signal").await["payload"]["n"], i);
    }
    a2.expect_silence(QUIET).await;
}

// ---------------------------------------------------------------- ICE servers

#[tokio::test]
async fn ice_servers_and_turn_credentials_are_handed_out() {
    use meshcall::proto::IceServer;
    use meshcall::server::TurnConfig;
    let s = TestServer::start(ServerConfig {
        ice_servers: vec![IceServer {
            urls: vec!["stun:127.0.0.1:3478".into()],
            username: None,
            credential: None,
        }],
        turn: Some(TurnConfig {
            urls: vec!["turn:127.0.0.1:3478".into()],
            secret: "s3cret".into(),
            ttl_secs: 3600,
        }),
        ..Default::default()
    })
    .await;
    let (_a, j) = joined(&s, None, "a").await;
    let servers = j["iceServers"].as_array().unwrap();
    assert_eq!(servers[0], json!({"urls": ["stun:127.0.0.1:3478"]}));
    assert_eq!(servers[1]["urls"], json!(["turn:127.0.0.1:3478"]));
    let user = servers[1]["username"].as_str().unwrap();
    let (expiry, peer) = user.split_once(':').unwrap();
    assert_eq!(peer, j["self"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        expiry > now + 3500 && expiry <= now + 3601,
        "{expiry} vs {now}"
    );
    let (_, cred) = meshcall::server::turn_credentials("s3cret", peer, expiry);
    assert_eq!(servers[1]["credential"], cred.as_str());
}

// ---------------------------------------------------------------- HTTP and shutdown

#[tokio::test]
async fn http_pages_health_and_metrics() {
    let s = TestServer::default().await;
    let (status, body) = s.get("/").await;
    assert_eq!(status, 200);
    assert!(body.contains("<html"), "{body}");
    let (status, body) = s.get("/r/kqz-mfwa-tpe").await;
    assert_eq!(status, 200);
    assert!(body.contains("kqz-mfwa-tpe"), "{body}");
    assert_eq!(s.get("/r/NOT_A_CODE!").await.0, 404);
    assert_eq!(s.get("/healthz").await, (200, "ok".to_owned()));
    assert_eq!(s.get("/nowhere").await.0, 404);

    let (_room, mut m) = room_of(&s, 2).await;
    let b_id = m[1].1.clone();
    m[0].0
        .send(json!({"type": "signal", "to": b_id, "payload": {}}))
        .await;
    m[1].0.expect("signal").await;
    m[0].0
        .send(json!({"type": "signal", "to": "p404", "payload": {}}))
        .await;
    m[0].0.expect_error("unknown-peer").await;
    m[0].0.send(json!({"type": "nope"})).await;
    m[0].0.expect_error("bad-message").await;
    assert_eq!(s.metric("meshcall_rooms").await, 1.0);
    assert_eq!(s.metric("meshcall_members").await, 2.0);
    assert_eq!(s.metric("meshcall_sockets").await, 2.0);
    assert_eq!(s.metric("meshcall_messages_relayed_total").await, 1.0);
    assert_eq!(
        s.metric("meshcall_messages_refused_total{code=\"unknown-peer\"}")
            .await,
        1.0
    );
    assert_eq!(
        s.metric("meshcall_messages_refused_total{code=\"bad-message\"}")
            .await,
        1.0
    );
    assert_eq!(
        s.metric("meshcall_messages_refused_total{code=\"room-full\"}")
            .await,
        0.0
    );
}

#[tokio::test]
async fn shutdown_closes_every_socket_with_1001() {
    let s = TestServer::default().await;
    let (_room, mut m) = room_of(&s, 3).await;
    let (mut idle, _) = (s.client().await, ());
    // A member inside its grace period must not hold shutdown up either.
    let (gone, _) = m.pop().unwrap();
    drop(gone);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stop = s.stop.clone();
    stop.cancel();
    for (c, _) in &mut m {
        c.expect_close(1001).await;
    }
    idle.expect_close(1001).await;
    tokio::time::timeout(WAIT, s.task)
        .await
        .expect("serve did not return")
        .unwrap();
}
