//! Issue 14, first increment: three members in one Janus VideoRoom, each publishing the
//! test pattern (H.264 42e01f) and a tone (Opus) through a webrtc-rs connection built like
//! the mesh's, and each receiving both others through one subscriber connection
//! (multistream), every video frame decoded.
//!
//! Runs in a private network namespace with only `lo`: the outer test re-runs this binary
//! under `unshare -n` (root), where the inner test starts `scripts/janus` and the members.
//! Needs root, `unshare`, `ip` and Janus (`scripts/setup --test`); without them it fails
//! under CI and prints SKIPPED otherwise (`common::skip`).
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use meshcall::engine::{FeedCounts, JanusMember, JanusMemberConfig, create_janus_room};
use meshcall::sfu::janus::RoomConfig;

mod common;
use common::netns::repo;

/// Set in the environment of the copy of this binary that runs inside the namespace.
const INSIDE: &str = "MESHCALL_SFU_JANUS_NETNS";
/// Janus' WebSocket port inside the namespace (nothing else listens there).
const PORT: u16 = 8188;
/// How long media is counted.
const WINDOW: Duration = Duration::from_secs(10);
/// Video frames each member must receive, and decode, from each other publisher in
/// `WINDOW` (the sender makes 300 at 30 fps).
const MIN_FRAMES: u64 = 100;
/// Opus packets each member must receive from each other publisher in `WINDOW` (500 sent).
const MIN_AUDIO: u64 = 400;
/// The whole inner run, generously: Janus' start, three joins, ten seconds of media.
const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn three_members_receive_each_other_through_janus() {
    common::netns::run_in_namespace("inside_namespace_three_members", INSIDE, LIMIT);
}

/// Janus run by `scripts/janus`, killed (and waited for) on drop.
struct JanusProcess(Child);

impl Drop for JanusProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_janus(log: &Path) -> JanusProcess {
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    let child = Command::new(repo().join("scripts/janus"))
        .args(["--port", &PORT.to_string()])
        .env("TMPDIR", env!("CARGO_TARGET_TMPDIR"))
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap();
    JanusProcess(child)
}

async fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "Janus did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Per member, what it received from each feed.
fn snapshot(members: &[JanusMember]) -> Vec<Vec<FeedCounts>> {
    members.iter().map(JanusMember::counts).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by three_members_receive_each_other_through_janus inside a network namespace"]
async fn inside_namespace_three_members() {
    if std::env::var_os(INSIDE).is_none() {
        println!("only meaningful inside the namespace the outer test makes; nothing to do");
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "meshcall=info".into()),
        )
        .with_test_writer()
        .try_init();
    let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sfu_janus-janus.log");
    let janus = start_janus(&log);
    let url = format!("ws://127.0.0.1:{PORT}");
    let t0 = Instant::now();
    wait_for_port(PORT).await;
    println!(
        "Janus listening after {:.2} s (log: {})",
        t0.elapsed().as_secs_f64(),
        log.display()
    );

    let room = create_janus_room(&url, &RoomConfig::default())
        .await
        .unwrap();
    let config = |name: &str| JanusMemberConfig {
        url: url.clone(),
        room,
        pin: None,
        name: name.to_owned(),
        ice_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        width: 640,
        height: 360,
        fps: 30,
        decode: true,
    };
    // Ann and Bob first, each subscribing to the other; then Cyd, whom they add to their
    // running subscriptions (Janus re-offers, they answer again) while Cyd subscribes to
    // both: both ways a member meets a room.
    let mut members = Vec::new();
    for name in ["ann", "bob"] {
        let mut m = JanusMember::publish(config(name)).await.unwrap();
        m.wait_published().await.unwrap();
        members.push(m);
    }
    let (ann, bob) = (members[0].feed_id(), members[1].feed_id());
    members[0].subscribe(&[bob]).await.unwrap();
    members[1].subscribe(&[ann]).await.unwrap();
    println!("ann and bob up after {:.2} s", t0.elapsed().as_secs_f64());
    let mut cyd = JanusMember::publish(config("cyd")).await.unwrap();
    cyd.wait_published().await.unwrap();
    let present: Vec<u64> = cyd.publishers_at_join().iter().map(|p| p.id).collect();
    assert_eq!(
        present.len(),
        2,
        "Janus lists ann and bob to cyd: {present:?}"
    );
    cyd.subscribe(&present).await.unwrap();
    for m in &mut members {
        m.subscribe(&[cyd.feed_id()]).await.unwrap();
    }
    members.push(cyd);
    let feeds: Vec<u64> = members.iter().map(JanusMember::feed_id).collect();
    println!(
        "cyd up and everyone subscribed after {:.2} s",
        t0.elapsed().as_secs_f64()
    );

    // Count from the first decoded frame of every stream on, so the window measures flow,
    // not set-up.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all_flowing = snapshot(&members)
            .iter()
            .all(|feeds| feeds.len() == 2 && feeds.iter().all(|f| f.decoded_frames > 0));
        if all_flowing {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every stream decoded a frame within 10 s: {:#?}; sent (video, keyframe \
             requests): {:?}",
            snapshot(&members),
            members
                .iter()
                .map(|m| (
                    m.sent().video_frames.load(Ordering::Relaxed),
                    m.sent().keyframe_requests.load(Ordering::Relaxed)
                ))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "first frames everywhere after {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    let before = snapshot(&members);
    let sent_before: Vec<u64> = members
        .iter()
        .map(|m| m.sent().video_frames.load(Ordering::Relaxed))
        .collect();
    tokio::time::sleep(WINDOW).await;
    let after = snapshot(&members);

    let names = ["ann", "bob", "cyd"];
    let name_of = |feed: u64| {
        feeds
            .iter()
            .position(|f| *f == feed)
            .map_or("?", |i| names[i])
    };
    let mut failures = Vec::new();
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        for (fb, fa) in b.iter().zip(a) {
            let units = fa.video_units - fb.video_units;
            let decoded = fa.decoded_frames - fb.decoded_frames;
            let audio = fa.audio_packets - fb.audio_packets;
            println!(
                "{} <- {} ({}): {units} access units ({} keyframes), {decoded} decoded, \
                 {} decode errors, {audio} Opus packets, {} losses in {WINDOW:?}",
                names[i],
                name_of(fa.feed),
                fa.display,
                fa.keyframes - fb.keyframes,
                fa.decode_errors - fb.decode_errors,
                fa.losses - fb.losses,
            );
            if units < MIN_FRAMES || decoded < MIN_FRAMES || audio < MIN_AUDIO {
                failures.push(format!("{} <- {}", names[i], name_of(fa.feed)));
            }
        }
    }
    for (i, m) in members.iter().enumerate() {
        let sent = m.sent().video_frames.load(Ordering::Relaxed);
        println!(
            "{} sent {} video frames in the window, {} keyframe requests in all",
            names[i],
            sent - sent_before[i],
            m.sent().keyframe_requests.load(Ordering::Relaxed)
        );
    }
    let leave = Instant::now();
    for m in members {
        m.leave().await;
    }
    println!("all left in {:.2} s", leave.elapsed().as_secs_f64());
    drop(janus);
    assert!(
        failures.is_empty(),
        "below {MIN_FRAMES} frames or {MIN_AUDIO} Opus packets: {failures:?}"
    );
}
