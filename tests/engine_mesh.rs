//! The call engine over real sockets and real peer connections on 127.0.0.1, with
//! synthetic encoded media (the codecs are tested on their own): full mesh, no glare,
//! mute, leave and clean-up.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/proxy.rs"]
mod proxy;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use bytes::Bytes;
use common::TestServer;
use meshcall::engine::{
    Command, CountingSinks, Engine, EngineConfig, Event, JoinParams, LinkState, MediaInput,
};
use proxy::CutProxy;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn config() -> EngineConfig {
    EngineConfig {
        ice_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        stats_interval: Duration::from_millis(500),
        ..Default::default()
    }
}

/// ICE that calls a silent path disconnected after 1 s and failed about 2 s later
/// (webrtc-rs's defaults, 5 s and 25 s, would make these tests wait half a minute).
fn quick_ice_config() -> EngineConfig {
    EngineConfig {
        ice_disconnected_timeout: Duration::from_secs(1),
        ice_failed_timeout: Duration::from_secs(2),
        ..config()
    }
}

/// A fake camera and microphone: 30 access units and 50 Opus packets a second, with a
/// keyframe whenever a peer asks for one.
fn drive_media(input: MediaInput, stop: CancellationToken) -> JoinHandle<u64> {
    tokio::spawn(async move {
        let mut frames = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut n = 0u64;
        loop {
            tokio::select! {
                () = stop.cancelled() => return frames,
                _ = tick.tick() => {}
            }
            n += 1;
            input.send_audio(&Bytes::from_static(&[0xfc, 0xff, 0xfe]));
            if !n.is_multiple_of(3) {
                continue; // video at ~16.7 fps keeps the test light
            }
            if !input.video_on() {
                continue;
            }
            let au = if input.take_keyframe_request() {
                let mut v = vec![
                    0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f, 0, 0, 0, 1, 0x68, 0xce, 0, 0, 0, 1, 0x65,
                ];
                v.resize(4000, 0x11);
                v
            } else {
                let mut v = vec![0, 0, 0, 1, 0x41, 0x9a];
                v.resize(800, 0x22);
                v
            };
            input.send_video(&Bytes::from(au), 90_000 / 16);
            frames += 1;
        }
    })
}

struct Participant {
    engine: Engine,
    sinks: CountingSinks,
    id: String,
    room: String,
    members: HashMap<String, LinkState>,
    stop: CancellationToken,
    driver: JoinHandle<u64>,
    /// Every member event seen since joining, in order.
    log: Vec<Event>,
}

impl Participant {
    async fn join(server: &TestServer, room: Option<&str>, name: &str) -> Self {
        Self::join_at(&server.ws_url(), room, name).await
    }

    /// Joins through any URL (a [`CutProxy`] in front of the server, say).
    async fn join_at(url: &str, room: Option<&str>, name: &str) -> Self {
        Self::join_with(config(), url, room, name).await
    }

    /// Joins with an engine configured by the test.
    async fn join_with(config: EngineConfig, url: &str, room: Option<&str>, name: &str) -> Self {
        let sinks = CountingSinks::default();
        let mut engine = Engine::spawn(config, &sinks);
        engine
            .send(Command::Join(JoinParams {
                server: url.to_owned(),
                room: room.map(str::to_owned),
                name: name.to_owned(),
                passcode: None,
                audio: true,
                video: true,
                relay_only: false,
            }))
            .await;
        let (room, id, members) = loop {
            match tokio::time::timeout(Duration::from_secs(10), engine.next_event())
                .await
                .unwrap()
            {
                Some(Event::Joined {
                    room,
                    self_id,
                    members,
                    ..
                }) => break (room, self_id, members),
                Some(Event::JoinFailed { message, .. }) => panic!("join failed: {message}"),
                Some(_) => continue,
                None => panic!("engine stopped"),
            }
        };
        let stop = CancellationToken::new();
        let driver = drive_media(engine.media_input(), stop.clone());
        Self {
            engine,
            sinks,
            id,
            room,
            members: members.into_iter().map(|m| (m.id, m.link)).collect(),
            stop,
            driver,
            log: Vec::new(),
        }
    }

    /// Applies waiting events; returns the ids that left.
    fn pump(&mut self) -> Vec<String> {
        let mut left = Vec::new();
        while let Some(ev) = self.engine.try_next_event() {
            if matches!(ev, Event::MemberUpdated(_) | Event::MemberLeft { .. }) {
                self.log.push(ev.clone());
            }
            match ev {
                Event::MemberUpdated(m) => {
                    self.members.insert(m.id, m.link);
                }
                Event::MemberLeft { id } => {
                    self.members.remove(&id);
                    left.push(id);
                }
                _ => {}
            }
        }
        left
    }

    fn connected_to(&self) -> usize {
        self.members
            .values()
            .filter(|l| **l == LinkState::Connected)
            .count()
    }

    fn video_from(&self, id: &str) -> u64 {
        self.sinks.get(id).map_or(0, |c| c.video_frames())
    }

    fn audio_from(&self, id: &str) -> u64 {
        self.sinks.get(id).map_or(0, |c| c.audio_packets())
    }

    async fn leave(self) -> u64 {
        self.stop.cancel();
        let frames = self.driver.await.unwrap();
        self.engine.shutdown().await;
        frames
    }
}

/// Asserts, after pumping events, that every link everyone has is in `state`.
fn assert_links(ps: &mut [Participant], state: LinkState) {
    for p in ps.iter_mut() {
        p.pump();
        assert!(
            p.members.values().all(|l| *l == state),
            "{}: {:?}",
            p.id,
            p.members
        );
    }
}

/// Waits until `check` holds for everyone, pumping events; panics after `secs`.
async fn until(
    ps: &mut [Participant],
    secs: u64,
    what: &str,
    check: impl Fn(&Participant, &[String]) -> bool,
) {
    let ids: Vec<String> = ps.iter().map(|p| p.id.clone()).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        for p in ps.iter_mut() {
            p.pump();
        }
        if ps.iter().all(|p| check(p, &ids)) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let state: Vec<String> = ps
                .iter()
                .map(|p| {
                    format!(
                        "{}: members {:?}, video {:?}, audio {:?}",
                        p.id,
                        p.members,
                        ids.iter().map(|i| p.video_from(i)).collect::<Vec<_>>(),
                        ids.iter().map(|i| p.audio_from(i)).collect::<Vec<_>>()
                    )
                })
                .collect();
            panic!("timed out waiting for {what}:\n{}", state.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_see_and_hear_each_other() {
    let s = TestServer::default().await;
    let a = Participant::join(&s, None, "a").await;
    let room = a.room.clone();
    let b = Participant::join(&s, Some(&room), "b").await;
    let c = Participant::join(&s, Some(&room), "c").await;
    let mut ps = vec![a, b, c];
    until(&mut ps, 15, "a full mesh", |p, _| p.connected_to() == 2).await;
    until(&mut ps, 15, "media both ways", |p, ids| {
        ids.iter()
            .filter(|i| **i != p.id)
            .all(|i| p.video_from(i) >= 30 && p.audio_from(i) >= 100)
    })
    .await;
    // Encode once: every frame went to both peers from one send.
    for p in &ps {
        assert_eq!(p.engine.media_input().video_peers(), 2);
    }
    for p in ps {
        let input = p.engine.media_input();
        let driven = p.leave().await;
        assert_eq!(
            input.video_frames_sent(),
            driven,
            "frames sent != frames encoded"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_joining_at_once_all_connect_without_glare() {
    let s = TestServer::default().await;
    let first = Participant::join(&s, Some("crowd-room"), "p0").await;
    let names: Vec<String> = (1..6).map(|i| format!("p{i}")).collect();
    let joins = names
        .iter()
        .map(|n| Participant::join(&s, Some("crowd-room"), n));
    let mut ps = vec![first];
    ps.extend(futures_util::future::join_all(joins).await);
    until(&mut ps, 30, "everyone connected to everyone", |p, _| {
        p.connected_to() == 5
    })
    .await;
    until(&mut ps, 20, "video from everyone", |p, ids| {
        ids.iter()
            .filter(|i| **i != p.id)
            .all(|i| p.video_from(i) >= 10)
    })
    .await;
    for p in ps {
        p.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mute_and_camera_off_stop_media_and_tell_the_others() {
    let s = TestServer::default().await;
    let a = Participant::join(&s, None, "a").await;
    let room = a.room.clone();
    let b = Participant::join(&s, Some(&room), "b").await;
    let mut ps = vec![a, b];
    until(&mut ps, 15, "media", |p, ids| {
        ids.iter()
            .filter(|i| **i != p.id)
            .all(|i| p.audio_from(i) >= 20 && p.video_from(i) >= 5)
    })
    .await;
    let a_id = ps[0].id.clone();
    ps[0].engine.send(Command::SetMic(false)).await;
    ps[0].engine.send(Command::SetCamera(false)).await;
    // b is told, and a's media stops.
    let mut told = (false, false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while told != (true, true) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "b was not told: {told:?}"
        );
        if let Ok(Some(Event::MemberUpdated(m))) =
            tokio::time::timeout(Duration::from_millis(100), ps[1].engine.next_event()).await
            && m.id == a_id
        {
            told = (!m.audio, !m.video);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (audio, video) = (ps[1].audio_from(&a_id), ps[1].video_from(&a_id));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        ps[1].audio_from(&a_id),
        audio,
        "audio kept flowing while muted"
    );
    assert_eq!(
        ps[1].video_from(&a_id),
        video,
        "video kept flowing with the camera off"
    );
    // Unmuting brings both back, video starting from a keyframe.
    let keyframes = ps[1].sinks.get(&a_id).unwrap().keyframes();
    ps[0].engine.send(Command::SetMic(true)).await;
    ps[0].engine.send(Command::SetCamera(true)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while ps[1].audio_from(&a_id) < audio + 20 || ps[1].video_from(&a_id) < video + 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "media did not resume"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ps[1].sinks.get(&a_id).unwrap().keyframes() > keyframes);
    for p in ps {
        p.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_frees_the_member_everywhere() {
    let s = TestServer::default().await;
    let a = Participant::join(&s, None, "a").await;
    let room = a.room.clone();
    let b = Participant::join(&s, Some(&room), "b").await;
    let c = Participant::join(&s, Some(&room), "c").await;
    let mut ps = vec![a, b, c];
    until(&mut ps, 15, "a full mesh", |p, _| p.connected_to() == 2).await;
    for p in &ps {
        assert_eq!(p.engine.live_peer_tasks(), 2);
    }
    let c = ps.pop().unwrap();
    let c_id = c.id.clone();
    let left_at = tokio::time::Instant::now();
    c.leave().await;
    until(&mut ps, 2, "c gone", |p, _| !p.members.contains_key(&c_id)).await;
    assert!(left_at.elapsed() < Duration::from_secs(2));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while ps
        .iter()
        .any(|p| p.engine.live_peer_tasks() != 1 || p.engine.media_input().video_peers() != 1)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "c's peer tasks or legs were not freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for p in ps {
        p.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_rtt_rates_and_a_bandwidth_estimate() {
    let s = TestServer::default().await;
    let mut a = Participant::join(&s, None, "a").await;
    let room = a.room.clone();
    let mut b = Participant::join(&s, Some(&room), "b").await;
    let b_id = b.id.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let stats = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no full stats for b"
        );
        b.pump();
        match tokio::time::timeout(Duration::from_millis(200), a.engine.next_event()).await {
            Ok(Some(Event::Stats { id, stats }))
                if id == b_id
                    && stats.rtt_ms.is_some()
                    && stats.target_bitrate.is_some()
                    && stats.fps > 0.0 =>
            {
                break stats;
            }
            _ => {}
        }
    };
    let rtt = stats.rtt_ms.unwrap();
    assert!((0.0..50.0).contains(&rtt), "loopback rtt {rtt} ms");
    assert!(stats.bitrate_in > 10_000.0, "{stats:?}");
    assert!(stats.bitrate_out > 10_000.0, "{stats:?}");
    assert!(
        stats.video_frames > 0 && stats.audio_packets > 0,
        "{stats:?}"
    );
    // The congestion controller's estimate reaches the stats, inside the configured range,
    // and the one layer this fake source declares is encoded for b.
    let estimate = stats.target_bitrate.unwrap();
    assert!((30_000.0..=2_500_000.0).contains(&estimate), "{estimate}");
    let orders = a.engine.media_input().video_orders();
    assert!(orders[0].active, "{orders:?}");
    assert!(
        (30_000..=2_500_000).contains(&orders[0].bitrate_bps),
        "{orders:?}"
    );
    a.leave().await;
    b.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_announces_who_joined_and_left_during_the_outage() {
    let s = TestServer::default().await;
    let proxy = CutProxy::start(s.addr).await;
    // Only a's signaling goes through the proxy, so only a's socket is cut.
    let a = Participant::join_at(&proxy.url(), None, "a").await;
    let room = a.room.clone();
    let b = Participant::join(&s, Some(&room), "b").await;
    let d = Participant::join(&s, Some(&room), "d").await;
    let mut ps = vec![a, b, d];
    until(&mut ps, 15, "a full mesh of three", |p, _| {
        p.connected_to() == 2
    })
    .await;

    // a's socket drops and stays down; inside the grace period the server keeps a.
    proxy.refuse(true);
    proxy.cut();
    let d = ps.pop().unwrap();
    let d_id = d.id.clone();
    d.leave().await;
    let c = Participant::join(&s, Some(&room), "c").await;
    let c_id = c.id.clone();
    ps.push(c);
    // e comes and goes while a is away: its offer to a is queued for a, but e is gone
    // by the time a is back, so a must not build a connection for it.
    let e = Participant::join(&s, Some(&room), "e").await;
    let e_id = e.id.clone();
    let mut pe = vec![e];
    until(&mut pe, 15, "e connected to b", |p, _| {
        p.members
            .values()
            .filter(|l| **l == LinkState::Connected)
            .count()
            >= 1
    })
    .await;
    pe.pop().unwrap().leave().await;
    // b and c meet while a cannot hear about it; c's offer to a waits in the server.
    let b_id = ps[1].id.clone();
    until(
        &mut ps[1..],
        15,
        "b and c connected, d gone from b",
        |p, _| {
            !p.members.contains_key(&d_id)
                && p.members
                    .get(&b_id)
                    .is_none_or(|l| *l == LinkState::Connected)
                && p.video_from(if p.id == b_id { &c_id } else { &b_id }) >= 5
        },
    )
    .await;
    ps[0].pump();
    assert!(
        !ps[0].members.contains_key(&c_id)
            && !ps[0].members.contains_key(&e_id)
            && ps[0].members.contains_key(&d_id),
        "a heard of the changes before resuming: {:?}",
        ps[0].members
    );

    // a resumes: the server answers with the current peers and then c's queued offer.
    let resumed_at = tokio::time::Instant::now();
    proxy.refuse(false);
    until(&mut ps, 20, "a complete view after the resume", |p, ids| {
        p.connected_to() == 2
            && !p.members.contains_key(&d_id)
            && ids
                .iter()
                .filter(|i| **i != p.id)
                .all(|i| p.video_from(i) >= 10)
    })
    .await;
    eprintln!(
        "a saw c connected {} ms after its signaling came back",
        resumed_at.elapsed().as_millis()
    );
    let a = &ps[0];
    assert!(
        a.log
            .iter()
            .any(|e| matches!(e, Event::MemberUpdated(m) if m.id == c_id && m.name == "c")),
        "a never announced c: {:?}",
        a.log
    );
    assert!(
        a.log
            .iter()
            .any(|e| matches!(e, Event::MemberLeft { id } if *id == d_id)),
        "a never announced that d left: {:?}",
        a.log
    );
    assert!(
        !a.members.contains_key(&e_id) && a.video_from(&e_id) == 0,
        "a took e, who left during the outage, for a member"
    );
    // One connection per member: c's queued offer and c's member entry share one task.
    for p in &ps {
        assert_eq!(p.engine.live_peer_tasks(), 2, "{}", p.id);
        assert_eq!(p.engine.media_input().video_peers(), 2, "{}", p.id);
    }
    for p in ps {
        p.leave().await;
    }
}

/// Two members; returns them with (impolite, polite) indices: the smaller id is impolite.
async fn pair_with_quick_ice(s: &TestServer) -> (Vec<Participant>, usize, usize) {
    pair_with(quick_ice_config(), s).await
}

/// Two participants with `config`, media flowing; returns them and which is impolite.
async fn pair_with(config: EngineConfig, s: &TestServer) -> (Vec<Participant>, usize, usize) {
    let a = Participant::join_with(config.clone(), &s.ws_url(), None, "a").await;
    let room = a.room.clone();
    let b = Participant::join_with(config, &s.ws_url(), Some(&room), "b").await;
    let mut ps = vec![a, b];
    until(&mut ps, 15, "media both ways", |p, ids| {
        p.connected_to() == 1
            && ids
                .iter()
                .filter(|i| **i != p.id)
                .all(|i| p.video_from(i) >= 10)
    })
    .await;
    let impolite = usize::from(ps[1].id.as_bytes() < ps[0].id.as_bytes());
    (ps, impolite, 1 - impolite)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_link_comes_back_with_an_ice_restart() {
    let s = TestServer::default().await;
    let (mut ps, impolite, polite) = pair_with_quick_ice(&s).await;
    let (a_id, b_id) = (ps[0].id.clone(), ps[1].id.clone());

    // a's media path goes dead (every datagram dropped both ways); signaling stays up.
    let cut_at = tokio::time::Instant::now();
    ps[0].engine.set_media_blocked(true);
    until(&mut ps, 5, "both see the link go down", |p, _| {
        p.members.values().all(|l| *l == LinkState::Reconnecting)
    })
    .await;
    // Stay down past ICE's failed point (about 3 s here), where consent checks stop for
    // good and only a restart can bring the link back, and let an attempt fail too.
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(cut_at.elapsed())).await;
    ps[0].pump();
    ps[1].pump();
    let frozen = ps[1].video_from(&a_id);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        ps[1].video_from(&a_id),
        frozen,
        "video crossed a blocked path"
    );
    assert!(
        ps[impolite].engine.ice_restarts() >= 1,
        "no ICE restart during the outage"
    );

    let back_at = tokio::time::Instant::now();
    ps[0].engine.set_media_blocked(false);
    let before = (ps[0].video_from(&b_id), ps[1].video_from(&a_id));
    until(
        &mut ps,
        15,
        "connected again with video both ways",
        |p, _| p.connected_to() == 1,
    )
    .await;
    let connected_after = back_at.elapsed();
    let (va, vb) = before;
    until(&mut ps, 10, "video both ways after the restart", |p, _| {
        if p.id == a_id {
            p.video_from(&b_id) >= va + 20
        } else {
            p.video_from(&a_id) >= vb + 20
        }
    })
    .await;
    eprintln!(
        "link connected {} ms and video flowing {} ms after the path came back; \
         restarts offered: impolite {}, polite {}",
        connected_after.as_millis(),
        back_at.elapsed().as_millis(),
        ps[impolite].engine.ice_restarts(),
        ps[polite].engine.ice_restarts(),
    );
    // Only the impolite side offers restarts: no glare to resolve.
    assert_eq!(ps[polite].engine.ice_restarts(), 0);
    assert!(ps[impolite].engine.ice_restarts() <= 3);
    // Still one connection each, and leaving after the recovery frees everything.
    for p in &ps {
        assert_eq!(p.engine.live_peer_tasks(), 1, "{}", p.id);
    }
    let b = ps.pop().unwrap();
    b.leave().await;
    until(&mut ps, 5, "b gone", |p, _| p.members.is_empty()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while ps[0].engine.live_peer_tasks() != 0 || ps[0].engine.media_input().video_peers() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "b's peer task outlived b after a recovery"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for p in ps {
        p.leave().await;
    }
}

/// A path that dies for good (a network change) can only come back through an ICE
/// restart. The impolite side must not wait for ICE to call the link failed (here 30 s
/// after it is disconnected) before trying one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_disconnection_is_restarted_before_ice_calls_it_failed() {
    let s = TestServer::default().await;
    let config = EngineConfig {
        ice_disconnected_timeout: Duration::from_secs(1),
        ice_failed_timeout: Duration::from_secs(30),
        ..config()
    };
    let (mut ps, impolite, polite) = pair_with(config, &s).await;
    let cut_at = tokio::time::Instant::now();
    ps[0].engine.set_media_blocked(true);
    let restarter = ps[impolite].id.clone();
    until(&mut ps, 15, "an ICE restart", |p, _| {
        p.id != restarter || p.engine.ice_restarts() > 0
    })
    .await;
    let restarted_after = cut_at.elapsed();
    assert_links(&mut ps, LinkState::Reconnecting);
    let back_at = tokio::time::Instant::now();
    ps[0].engine.set_media_blocked(false);
    until(&mut ps, 15, "connected again", |p, _| p.connected_to() == 1).await;
    eprintln!(
        "first restart {} ms after the cut; connected {} ms after the path came back",
        restarted_after.as_millis(),
        back_at.elapsed().as_millis()
    );
    assert_eq!(ps[polite].engine.ice_restarts(), 0);
    for p in ps {
        p.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_stays_dead_is_reported_failed_after_bounded_restarts() {
    let s = TestServer::default().await;
    let (mut ps, impolite, polite) = pair_with_quick_ice(&s).await;
    let cut_at = tokio::time::Instant::now();
    ps[0].engine.set_media_blocked(true);
    until(&mut ps, 40, "both report the link failed", |p, _| {
        p.members.values().all(|l| *l == LinkState::Failed)
    })
    .await;
    let failed_after = cut_at.elapsed();
    let restarts = ps[impolite].engine.ice_restarts();
    eprintln!(
        "both reported Failed {} ms after the cut, after {restarts} restarts",
        failed_after.as_millis()
    );
    assert_eq!(restarts, 3, "the impolite side's attempts");
    assert_eq!(ps[polite].engine.ice_restarts(), 0);
    // Having given up, nobody keeps trying.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(ps[impolite].engine.ice_restarts(), restarts);
    assert_links(&mut ps, LinkState::Failed);
    // A member leaving a failed link frees its task on the other side too.
    let b = ps.pop().unwrap();
    b.leave().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while ps[0].engine.live_peer_tasks() != 0 || ps[0].engine.media_input().video_peers() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failed link's peer task outlived the member"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for p in ps {
        p.leave().await;
    }
}

/// The m-lines of an SDP, in order ("audio", "video", ...).
fn m_lines(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("m="))
        .filter_map(|l| l.split(' ').next())
        .collect()
}

/// Our offers put audio first, then the camera's video (protocol.md: the first video
/// m-section is the camera), as browsers do. An aiortc 1.16 answerer with max-bundle and
/// audio as its first transceiver gathers no candidates for an offer that starts with video.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_offers_put_audio_first_then_the_camera() {
    let s = TestServer::default().await;
    // A bare protocol client is in the room first, so the engine that joins offers to it.
    let (mut raw, j) = common::joined(&s, None, "raw").await;
    let room = j["room"].as_str().unwrap().to_owned();
    let p = Participant::join(&s, Some(&room), "meshcall").await;
    let offer = loop {
        let v = raw.recv().await;
        if v["type"] == "signal" && v["payload"]["sdp"]["type"] == "offer" {
            assert_eq!(v["from"], p.id.as_str(), "{v}");
            break v["payload"]["sdp"]["sdp"].as_str().unwrap().to_owned();
        }
    };
    assert_eq!(m_lines(&offer), ["audio", "video"], "{offer}");
    let video = offer.split("\r\nm=").nth(2).unwrap();
    assert!(
        video.contains("a=msid:") && video.contains("-camera"),
        "the video m-section is the camera's: {video}"
    );
    p.leave().await;
}

/// An offer as a foreign stack sends it: audio then video, bundled, our codecs' numbers.
/// It has no candidates, so no packet is ever sent to the address it names.
fn foreign_offer() -> String {
    let fingerprint = ["AB"; 32].join(":");
    let mut sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
                   a=msid-semantic:WMS *\r\n"
        .to_owned();
    for (mid, kind, pt, rtpmap, fmtp) in [
        (0, "audio", 111, "opus/48000/2", ""),
        (
            1,
            "video",
            102,
            "H264/90000",
            "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n",
        ),
    ] {
        sdp += &format!(
            "m={kind} 9 UDP/TLS/RTP/SAVPF {pt}\r\nc=IN IP4 0.0.0.0\r\na=sendrecv\r\na=mid:{mid}\r\n\
             a=rtcp-mux\r\na=rtpmap:{pt} {rtpmap}\r\n{fmtp}a=ice-ufrag:abcd\r\n\
             a=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 {fingerprint}\r\n\
             a=setup:actpass\r\n"
        );
    }
    sdp
}

/// Answering the first offer is the whole negotiation: no offer of ours follows it.
/// Adding our tracks raised a negotiation-needed that could reach the engine after its
/// answer, and it then offered again at once. GStreamer 1.22's webrtcbin answered that
/// re-offer `a=setup:active` although it was already the DTLS server, so both ends were
/// DTLS clients and the call never came up; aiortc 1.16 threw on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answerer_makes_no_offer_of_its_own_after_answering() {
    let s = TestServer::default().await;
    let p = Participant::join(&s, None, "meshcall").await;
    let mut raw = s.client().await;
    let j = raw
        .join(serde_json::json!({"room": p.room, "name": "raw"}))
        .await;
    assert_eq!(j["peers"][0]["id"], p.id.as_str(), "{j}");
    raw.send(serde_json::json!({
        "type": "signal",
        "to": p.id,
        "payload": {"sdp": {"type": "offer", "sdp": foreign_offer()}},
    }))
    .await;
    let mut descriptions = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Some(frame) = raw
        .next_within(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        if let common::Frame::Json(v) = frame
            && v["type"] == "signal"
            && v["payload"]["sdp"].is_object()
        {
            descriptions.push(v["payload"]["sdp"]["type"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(descriptions, ["answer"]);
    p.leave().await;
}
