//! A microphone that fails mid-call, with real PulseAudio: the member's microphone is a
//! private null sink's monitor, which the test suspends (the source goes silent) while two
//! engines are in a call on 127.0.0.1, then resumes for the retry; and what unloading a
//! source does instead. Without a reachable PulseAudio the tests are skipped, saying why (a
//! failure under CI; see `common::skip`).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use common::TestServer;
use common::pulse::{load_null_sink, skip_reason, suspend_sink};
use meshcall::engine::{
    Command, CountingSinks, DeviceKind, Engine, EngineConfig, Event, JoinParams, Member,
};
use meshcall::media::audio::capture::Capture;
use meshcall::media::pipeline::{AudioChoice, LocalPipelines, VideoChoice, VideoFormat};

fn config() -> EngineConfig {
    EngineConfig {
        ice_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        ..Default::default()
    }
}

/// Small video: this test is about audio, the video only has to keep going.
const SMALL: VideoFormat = VideoFormat {
    width: 320,
    height: 180,
    fps: 15,
};

async fn join(server: &TestServer, room: Option<String>, name: &str) -> (Engine, String, String) {
    let sinks = CountingSinks::default();
    join_counting(server, room, name, &sinks).await
}

async fn join_counting(
    server: &TestServer,
    room: Option<String>,
    name: &str,
    sinks: &CountingSinks,
) -> (Engine, String, String) {
    let mut engine = Engine::spawn(config(), sinks);
    engine
        .send(Command::Join(JoinParams {
            server: server.ws_url(),
            room,
            name: name.into(),
            passcode: None,
            audio: true,
            video: true,
            relay_only: false,
        }))
        .await;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), engine.next_event())
            .await
            .unwrap()
        {
            Some(Event::Joined { room, self_id, .. }) => return (engine, room, self_id),
            Some(Event::JoinFailed { message, .. }) => panic!("join failed: {message}"),
            Some(_) => {}
            None => panic!("engine stopped"),
        }
    }
}

/// Waits up to `within` for an event `pick` accepts.
async fn until_event<T>(
    engine: &mut Engine,
    within: Duration,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> Option<T> {
    tokio::time::timeout(within, async {
        loop {
            let ev = engine.next_event().await?;
            if let Some(t) = pick(&ev) {
                return Some(t);
            }
        }
    })
    .await
    .ok()
    .flatten()
}

fn member_update(ev: &Event, id: &str) -> Option<Member> {
    match ev {
        Event::MemberUpdated(m) if m.id == id => Some(m.clone()),
        _ => None,
    }
}

/// How much a counter grows in `d`.
async fn growth(d: Duration, count: impl Fn() -> u64) -> u64 {
    let before = count();
    tokio::time::sleep(d).await;
    count() - before
}

/// Starts A's microphone on `source`, off the async threads (opening a device blocks).
async fn start_mic(a: &Engine, source: &str) -> LocalPipelines {
    let input = a.media_input();
    let audio = AudioChoice::Mic(Some(source.to_owned()));
    tokio::task::spawn_blocking(move || {
        LocalPipelines::start(&input, "A", &VideoChoice::None, &SMALL, &audio, None)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_microphone_gone_silent_mid_call_is_announced_muted_and_comes_back_on_retry() {
    if let Some(reason) = skip_reason() {
        common::skip::skip_or_fail(&reason);
        return;
    }
    let sink = format!("dfmic{}", std::process::id());
    let source = format!("{sink}.monitor");
    let _module = load_null_sink(&sink);
    let server = TestServer::default().await;
    let (mut a, room, a_id) = join(&server, None, "A").await;
    let b_sinks = CountingSinks::default();
    let (mut b, _, _) = join_counting(&server, Some(room), "B", &b_sinks).await;

    let input = a.media_input();
    let video = tokio::task::spawn_blocking(move || {
        LocalPipelines::start(
            &input,
            "A",
            &VideoChoice::TestPattern,
            &SMALL,
            &AudioChoice::None,
            None,
        )
    })
    .await
    .unwrap();
    assert!(video.is_running(), "{:?}", video.problems);
    let mic = start_mic(&a, &source).await;
    assert!(mic.is_running(), "{:?}", mic.problems);

    // B hears and sees A (the null sink's monitor delivers silence, coded all the same).
    let from_a = || b_sinks.get(&a_id);
    let audio_from_a = || from_a().map_or(0, |c| c.audio_packets());
    let video_from_a = || from_a().map_or(0, |c| c.video_frames());
    let deadline = Instant::now() + Duration::from_secs(15);
    while (audio_from_a() < 50 || video_from_a() < 10) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        audio_from_a() >= 50 && video_from_a() >= 10,
        "no call: {} audio packets, {} video frames",
        audio_from_a(),
        video_from_a()
    );

    // The microphone's source stops delivering (suspended), as a dead device would.
    let silenced = Instant::now();
    suspend_sink(&sink, true);
    let message = until_event(&mut a, Duration::from_secs(8), |ev| match ev {
        Event::DeviceFailed {
            kind: DeviceKind::Microphone,
            message,
        } => Some(message.clone()),
        _ => None,
    })
    .await
    .expect("A was not told its microphone failed");
    // cpal reports nothing for a suspended source: our watchdog (no samples for 2 s) does.
    eprintln!(
        "microphone failure noticed after {:?}: {message}",
        silenced.elapsed()
    );
    assert!(message.contains("no sound from it"), "{message}");
    // The capture thread has ended; a session drops what is left of it.
    drop(mic);

    // B is told A is muted, with video still on; A's audio stops, the video goes on.
    // (Earlier updates, of A's link, may still be queued: wait for the one that matters.)
    let m = until_event(&mut b, Duration::from_secs(5), |ev| {
        member_update(ev, &a_id).filter(|m| !m.audio)
    })
    .await
    .expect("B never heard that A's microphone is off");
    assert!(m.video, "the camera went off too: {m:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let audio_after = growth(Duration::from_secs(1), audio_from_a).await;
    let video_after = growth(Duration::from_secs(1), video_from_a).await;
    assert!(
        audio_after <= 2,
        "{audio_after} audio packets after the failure"
    );
    assert!(
        video_after >= 8,
        "video stalled too: {video_after} frames in 1 s"
    );

    // The device is back; turning the microphone on again (the retry) opens it afresh.
    suspend_sink(&sink, false);
    let mic = start_mic(&a, &source).await;
    assert!(mic.is_running(), "{:?}", mic.problems);
    a.send(Command::SetMic(true)).await;
    let m = until_event(&mut b, Duration::from_secs(5), |ev| {
        member_update(ev, &a_id).filter(|m| m.audio)
    })
    .await
    .expect("B never heard A unmute");
    assert!(m.video, "{m:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let before = audio_from_a();
    while audio_from_a() < before + 25 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        audio_from_a() >= before + 25,
        "audio did not come back: {} packets",
        audio_from_a() - before
    );

    drop(mic);
    drop(video);
    a.shutdown().await;
    b.shutdown().await;
    server.stop().await;
}

/// What unloading the microphone's source does with cpal 0.18's PulseAudio backend:
/// nothing we could call a failure. PulseAudio moves the stream to the default source (a
/// `RecordStreamMoved` that the `pulseaudio` crate ignores); cpal reports no error, and
/// after a gap of about a second samples flow again — from another device. So an unplugged
/// microphone is not a failure meshcall sees here; a silent one (suspended) is, through the
/// capture's watchdog. Should cpal start reporting the move, this test says so.
#[test]
fn an_unloaded_microphone_source_is_moved_by_pulseaudio_and_cpal_reports_nothing() {
    if let Some(reason) = skip_reason() {
        common::skip::skip_or_fail(&reason);
        return;
    }
    let sink = format!("dfgone{}", std::process::id());
    let module = load_null_sink(&sink);
    let (capture, frames) = Capture::open(Some(&format!("{sink}.monitor")), 50).unwrap();
    let first = frames.recv_timeout(Duration::from_secs(5));
    assert!(first.is_ok(), "no frames at all: {first:?}");
    drop(module);
    let unloaded = Instant::now();
    let mut after = 0;
    while unloaded.elapsed() < Duration::from_secs(5) && after < 50 {
        match frames.recv_timeout(Duration::from_millis(200)) {
            Ok(_) => after += 1,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => panic!(
                "the capture ended {:?} after the unload: {:?} (cpal now reports it: make this \
                 the failure test)",
                unloaded.elapsed(),
                capture.take_failure()
            ),
        }
    }
    assert!(after >= 50, "only {after} frames after the unload");
    assert!(capture.take_failure().is_none());
}

/// The desktop session's side: a microphone that goes silent in the lobby is closed and
/// reported; unmuting when it is back opens it again, and its level shows once more.
#[test]
fn the_desktop_session_closes_a_silent_microphone_and_unmuting_reopens_it() {
    use meshcall::media::pipeline::Speaker;
    use meshcall::session::{CallBackend, DeviceChoice, Notice, Request, Session};
    if let Some(reason) = skip_reason() {
        common::skip::skip_or_fail(&reason);
        return;
    }
    let sink = format!("dfsession{}", std::process::id());
    let _module = load_null_sink(&sink);
    let tone: Vec<f32> = (0..48_000 * 20)
        .map(|i| 0.5 * (std::f32::consts::TAU * 440.0 * i as f32 / 48_000.0).sin())
        .collect();
    let _player = common::pulse::play_into(&sink, &tone);
    let devices = DeviceChoice {
        video: VideoChoice::None,
        audio: AudioChoice::Mic(Some(format!("{sink}.monitor"))),
        speaker: Speaker::None,
        name: "Ada".into(),
        camera_on: false,
        mic_on: true,
    };
    let mut session = Session::start(config(), devices, std::sync::Arc::new(|| {})).unwrap();
    let until = |session: &mut Session, what: &str, f: &mut dyn FnMut(&mut Session) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !f(session) {
            assert!(Instant::now() < deadline, "{what}: not within 15 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    until(&mut session, "the tone heard", &mut |s| s.mic_level() > 0.1);

    suspend_sink(&sink, true);
    let mut message = None;
    until(&mut session, "the failure reported", &mut |s| {
        while let Some(n) = s.poll() {
            if let Notice::Engine(Event::DeviceFailed {
                kind: DeviceKind::Microphone,
                message: m,
            }) = n
            {
                message = Some(m);
            }
        }
        message.is_some()
    });
    // Closed: no level at all, not the last one frozen.
    until(&mut session, "the microphone closed", &mut |s| {
        s.mic_level() == 0.0
    });

    suspend_sink(&sink, false);
    session.request(Request::SetMic(true));
    until(&mut session, "the tone heard again", &mut |s| {
        s.mic_level() > 0.1
    });
}
