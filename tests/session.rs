//! The desktop app's call worker without a window: real engine, real sockets on
//! loopback, synthetic sources (the machine has no camera), headless playout.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::TestServer;
use meshcall::engine::{Command, DeviceKind, EngineConfig, Event, JoinParams};
use meshcall::media::pipeline::{AudioChoice, Speaker, VideoChoice};
use meshcall::session::{CallBackend, DeviceChoice, Notice, Request, Session};

fn config() -> EngineConfig {
    EngineConfig {
        ice_ips: vec!["127.0.0.1".parse().expect("ip")],
        ..EngineConfig::default()
    }
}

fn choice(name: &str) -> DeviceChoice {
    DeviceChoice {
        video: VideoChoice::TestPattern,
        audio: AudioChoice::Tone { beep_every: None },
        speaker: Speaker::None,
        name: name.into(),
        camera_on: true,
        mic_on: true,
    }
}

/// Polls `session` (as the UI does on each frame) until `f` accepts a notice.
fn wait_for<T>(session: &mut Session, what: &str, mut f: impl FnMut(&Notice) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        while let Some(n) = session.poll() {
            if let Some(t) = f(&n) {
                return t;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no {what} within 15 s");
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within 15 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asks to join `room` (a new one when `None`) on `url` with camera and mic on.
fn join(url: &str, room: Option<String>, name: &str) -> Request {
    Request::Join {
        params: JoinParams {
            server: url.to_owned(),
            room,
            name: name.into(),
            passcode: None,
            audio: true,
            video: true,
            relay_only: false,
        },
        lan: false,
    }
}

/// Ada opens a room on `url` and Bob joins it: their sessions, then Bob's id as Ada knows
/// it and Ada's as Bob knows it.
fn ada_and_bob_in_a_call(url: &str) -> (Session, Session, String, String) {
    ada_with_bob(url, choice("Ada"))
}

/// [`ada_and_bob_in_a_call`] with Ada's devices chosen by the test.
fn ada_with_bob(url: &str, adas: DeviceChoice) -> (Session, Session, String, String) {
    let mut a = Session::start(config(), adas, Arc::new(|| {})).expect("session a");
    let mut b = Session::start(config(), choice("Bob"), Arc::new(|| {})).expect("session b");
    a.request(join(url, None, "Ada"));
    let room = wait_for(&mut a, "joined", |n| match n {
        Notice::Engine(Event::Joined { room, .. }) => Some(room.clone()),
        Notice::Engine(Event::JoinFailed { message, .. }) => panic!("join failed: {message}"),
        _ => None,
    });
    b.request(join(url, Some(room), "Bob"));
    let bob = wait_for(&mut a, "Bob", |n| match n {
        Notice::Engine(Event::MemberUpdated(m)) if m.name == "Bob" => Some(m.id.clone()),
        _ => None,
    });
    let ada = wait_for(&mut b, "Ada", |n| match n {
        Notice::Engine(Event::Joined { members, .. }) => members.first().map(|m| m.id.clone()),
        _ => None,
    });
    (a, b, bob, ada)
}

/// The tests count the process's threads, so they run one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// Waits (up to 15 s) until the process has no more threads than `before`, naming the
/// ones left when it does not.
fn assert_threads_back_to(before: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while threads() > before {
        assert!(
            Instant::now() < deadline,
            "{} threads left of {before}: {:?}",
            threads(),
            thread_names()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The names of this process's threads, to tell which did not end.
fn thread_names() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect()
}

#[test]
fn two_sessions_call_each_other_and_end_cleanly() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = rt.block_on(TestServer::default());
    let url = format!("ws://{}", server.addr);
    // The process's one PulseAudio connection (and its reader thread) lives as long as the
    // process; open it first so the count below sees only what the sessions start.
    let _ = meshcall::media::audio::devices::list();
    let threads_before = threads();

    let wakes = Arc::new(AtomicU64::new(0));
    let wake = {
        let w = Arc::clone(&wakes);
        Arc::new(move || {
            w.fetch_add(1, Ordering::Relaxed);
        })
    };
    let mut a = Session::start(config(), choice("Ada"), wake).expect("session a");
    let mut b = Session::start(config(), choice("Bob"), Arc::new(|| {})).expect("session b");
    wait_for(&mut a, "device list", |n| {
        matches!(n, Notice::Devices(_)).then_some(())
    });

    // The lobby's self-check: preview frames and a mic level before any call.
    wait_until("self-preview", || a.preview().is_some());
    wait_until("mic level", || a.mic_level() > 0.1);
    // Camera off closes the source: no preview at all.
    a.request(Request::SetCamera(false));
    wait_until("preview gone", || a.preview().is_none());
    a.request(Request::SetCamera(true));
    wait_until("preview back", || a.preview().is_some());
    // Another source in the lobby: only the capture changes, the engine stays.
    let mut adas = choice("Ada");
    adas.video = VideoChoice::None;
    a.request(Request::UseDevices(adas.clone()));
    wait_until("no source, no preview", || a.preview().is_none());
    adas.video = VideoChoice::TestPattern;
    a.request(Request::UseDevices(adas));
    wait_until("the pattern's preview", || a.preview().is_some());

    a.request(join(&url, None, "Ada"));
    let room = wait_for(&mut a, "joined", |n| match n {
        Notice::Engine(Event::Joined { room, .. }) => Some(room.clone()),
        Notice::Engine(Event::JoinFailed { message, .. }) => panic!("join failed: {message}"),
        _ => None,
    });
    b.request(join(&url, Some(room), "Bob"));
    let bob = wait_for(&mut a, "Bob", |n| match n {
        Notice::Engine(Event::MemberUpdated(m)) if m.name == "Bob" => Some(m.id.clone()),
        _ => None,
    });
    // Frames from Bob reach Ada's texture path, and his tone her speaking detector.
    let mut frames = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    while frames < 30 && Instant::now() < deadline {
        if a.take_frame(&bob).is_some() {
            frames += 1;
        }
        while a.poll().is_some() {}
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(frames >= 30, "only {frames} new frames from Bob");
    wait_until("Bob heard", || a.level(&bob) > 0.05);
    assert!(
        wakes.load(Ordering::Relaxed) > 30,
        "the UI was not woken for new frames"
    );

    // Bob's camera off reaches Ada as state, and his frames stop.
    b.request(Request::SetCamera(false));
    wait_for(&mut a, "Bob's camera off", |n| match n {
        Notice::Engine(Event::MemberUpdated(m)) if m.id == bob && !m.video => Some(()),
        _ => None,
    });
    std::thread::sleep(Duration::from_millis(300));
    let _ = a.take_frame(&bob);
    std::thread::sleep(Duration::from_millis(500));
    assert!(a.take_frame(&bob).is_none(), "frames after camera off");

    a.request(Request::Engine(Command::Leave));
    wait_for(&mut a, "left", |n| {
        matches!(n, Notice::Engine(Event::Left { .. })).then_some(())
    });
    wait_for(&mut b, "Ada gone", |n| {
        matches!(n, Notice::Engine(Event::MemberLeft { .. })).then_some(())
    });
    drop(a);
    drop(b);
    // Every thread the sessions started (runtimes, capture, decoders, audio clocks) ended.
    assert_threads_back_to(threads_before);
    rt.block_on(server.stop());
}

/// The window's camera path when the camera dies mid-call: the session closes it, the
/// engine tells the room, the window hears why; turning the camera on reopens it.
#[test]
fn a_camera_that_fails_in_a_call_is_closed_and_turning_it_on_reopens_it() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = rt.block_on(TestServer::default());
    let url = format!("ws://{}", server.addr);
    let _ = meshcall::media::audio::devices::list();
    let threads_before = threads();
    // 90 frames: 3 s at 30 fps, time enough to be in the call before it fails.
    let adas = DeviceChoice {
        video: VideoChoice::FailingTestPattern(90),
        ..choice("Ada")
    };
    let (mut a, mut b, _bob, ada) = ada_with_bob(&url, adas);
    let failed = |n: &Notice| match n {
        Notice::Engine(Event::DeviceFailed {
            kind: DeviceKind::Camera,
            message,
        }) => Some(message.clone()),
        _ => None,
    };
    let message = wait_for(&mut a, "the camera failure", failed);
    assert!(message.contains("stopped after 90 frames"), "{message}");
    wait_until("the failed camera closed", || a.preview().is_none());
    let audio = wait_for(&mut b, "Ada's camera off", |n| match n {
        Notice::Engine(Event::MemberUpdated(m)) if m.id == ada && !m.video => Some(m.audio),
        _ => None,
    });
    assert!(audio, "Ada's microphone went off too");
    std::thread::sleep(Duration::from_millis(300));
    // The last frame from before is still waiting to be shown; none may follow it.
    let _ = b.take_frame(&ada);
    assert_eq!(frames_from(&mut b, &ada, Duration::from_millis(500)), 0);

    // The retry: a fresh capture, announced on again, frames flowing to Bob.
    a.request(Request::SetCamera(true));
    wait_until("the camera reopened", || a.preview().is_some());
    wait_for(&mut b, "Ada's camera on", |n| match n {
        Notice::Engine(Event::MemberUpdated(m)) if m.id == ada && m.video => Some(()),
        _ => None,
    });
    let frames = frames_from(&mut b, &ada, Duration::from_secs(1));
    assert!(frames >= 10, "only {frames} frames after the retry");

    drop(a);
    drop(b);
    // The failed capture's threads ended too.
    assert_threads_back_to(threads_before);
    rt.block_on(server.stop());
}

/// Frames from `id` that reach `session`'s texture path within `within`.
fn frames_from(session: &mut Session, id: &str, within: Duration) -> u32 {
    let mut frames = 0;
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if session.take_frame(id).is_some() {
            frames += 1;
        }
        while session.poll().is_some() {}
        std::thread::sleep(Duration::from_millis(10));
    }
    frames
}

/// A restarted server refuses both resumes, so both sessions join afresh, and the new
/// server hands out ids again from p1, often the very ids the old connections had. The old
/// connections' teardown must not take the new ones' media with it: seconds later both
/// still see and hear each other.
#[test]
fn after_a_server_restart_both_sessions_rejoin_and_still_see_and_hear_each_other() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = rt.block_on(TestServer::default());
    let addr = server.addr;
    let url = format!("ws://{addr}");
    let (mut a, mut b, bob, ada) = ada_and_bob_in_a_call(&url);
    wait_until("Bob heard", || a.level(&bob) > 0.05);

    rt.block_on(server.stop());
    let server = rt.block_on(TestServer::start_on(addr, Default::default()));
    // Each learns of its fresh join by the old member leaving, then comes back to them.
    let rejoined = |s: &mut Session, old_id: &str, name: &str| {
        wait_for(s, "the old connection gone", |n| match n {
            Notice::Engine(Event::MemberLeft { id }) if id == old_id => Some(()),
            _ => None,
        });
        let self_id = wait_for(s, "our new id", |n| match n {
            Notice::Engine(Event::Rejoined { self_id }) => Some(self_id.clone()),
            _ => None,
        });
        let other = wait_for(s, "the other back", |n| match n {
            Notice::Engine(Event::MemberUpdated(m))
                if m.name == name && m.link == meshcall::engine::LinkState::Connected =>
            {
                Some(m.id.clone())
            }
            _ => None,
        });
        (self_id, other)
    };
    let (ada_self, bob_now) = rejoined(&mut a, &bob, "Bob");
    let (bob_self, ada_now) = rejoined(&mut b, &ada, "Ada");
    assert_eq!(
        (ada_self.as_str(), bob_self.as_str()),
        (ada_now.as_str(), bob_now.as_str())
    );
    eprintln!("Bob was {bob}, is {bob_now}");
    // Long enough for the old connections' teardown (close, then their tasks) to be over.
    std::thread::sleep(Duration::from_secs(3));
    let from_bob = frames_from(&mut a, &bob_now, Duration::from_secs(2));
    let from_ada = frames_from(&mut b, &ada_now, Duration::from_secs(2));
    assert!(from_bob >= 20, "Ada got {from_bob} frames from Bob in 2 s");
    assert!(from_ada >= 20, "Bob got {from_ada} frames from Ada in 2 s");
    assert!(a.level(&bob_now) > 0.05, "Ada no longer hears Bob");
    assert!(b.level(&ada_now) > 0.05, "Bob no longer hears Ada");
    drop(a);
    drop(b);
    rt.block_on(server.stop());
}

/// How much of `within` member `id` sounded loud to `session` (sampled every 20 ms).
fn loud_fraction(session: &mut Session, id: &str, within: Duration) -> f32 {
    let (mut loud, mut samples) = (0u32, 0u32);
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        while session.poll().is_some() {}
        samples += 1;
        if session.level(id) > 0.05 {
            loud += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    loud as f32 / samples.max(1) as f32
}

/// The loudest 20 ms heard on `monitor` within `within` (linear RMS).
fn loudest_on(monitor: &str, within: Duration) -> f32 {
    let (capture, frames) =
        meshcall::media::audio::capture::Capture::open(Some(monitor), 50).expect("monitor");
    let deadline = Instant::now() + within;
    let mut loudest = 0.0f32;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if let Ok(f) = frames.recv_timeout(left) {
            loudest = loudest.max(meshcall::media::audio::level::rms(&f.samples));
        }
    }
    drop(capture);
    loudest
}

/// In a call, Bob changes his video and audio source and Ada her speaker, none of them
/// leaving: no renegotiation, yet Ada sees Bob's new encoder's frames, hears his new
/// source, and the call plays on the new speaker (and no longer on the old one).
#[test]
fn devices_switch_mid_call_and_the_others_follow() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = rt.block_on(TestServer::default());
    let url = format!("ws://{}", server.addr);
    let _ = meshcall::media::audio::devices::list();
    let threads_before = threads();
    let (mut a, mut b, bob, _) = ada_and_bob_in_a_call(&url);
    let first = frames_from(&mut a, &bob, Duration::from_secs(2));
    assert!(
        first >= 20,
        "before any switch Ada got {first} frames in 2 s"
    );

    // Video: to no source (the others are told the camera is off), then back to the
    // pattern through a brand-new capture and encoder on the same track.
    let mut bobs = choice("Bob");
    bobs.video = VideoChoice::None;
    b.request(Request::UseDevices(bobs.clone()));
    wait_for(&mut a, "Bob's camera off", |n| match n {
        Notice::Engine(Event::MemberUpdated(m)) if m.id == bob && !m.video => Some(()),
        _ => None,
    });
    let _ = a.take_frame(&bob);
    bobs.video = VideoChoice::TestPattern;
    let switched = Instant::now();
    b.request(Request::UseDevices(bobs.clone()));
    wait_for(&mut a, "Bob's camera on", |n| match n {
        Notice::Engine(Event::MemberUpdated(m)) if m.id == bob && m.video => Some(()),
        _ => None,
    });
    wait_until("Bob's first new frame", || a.take_frame(&bob).is_some());
    eprintln!(
        "a new video source: its first frame at Ada {} ms after the switch",
        switched.elapsed().as_millis()
    );
    let again = frames_from(&mut a, &bob, Duration::from_secs(3));
    assert!(
        again >= 30,
        "after the switch Ada got {again} frames in 3 s"
    );

    // Audio: a continuous tone, then 100 ms beeps every 2 s.
    let steady = loud_fraction(&mut a, &bob, Duration::from_secs(1));
    bobs.audio = AudioChoice::Tone {
        beep_every: Some(Duration::from_secs(2)),
    };
    b.request(Request::UseDevices(bobs.clone()));
    std::thread::sleep(Duration::from_millis(500));
    let beeping = loud_fraction(&mut a, &bob, Duration::from_secs(4));
    eprintln!("Bob loud {steady:.2} of the time before, {beeping:.2} after");
    assert!(
        steady > 0.9,
        "the steady tone was loud only {steady:.2} of the time"
    );
    assert!(
        beeping > 0.03 && beeping < 0.5,
        "beeps should be loud now and then, were {beeping:.2} of the time"
    );

    // Speaker: Ada's call moves from one (private) device to another.
    match common::pulse::skip_reason() {
        Some(reason) => common::skip::skip_or_fail(&format!("the speaker switch: {reason}")),
        None => {
            bobs.audio = AudioChoice::Tone { beep_every: None };
            b.request(Request::UseDevices(bobs.clone()));
            let id = std::process::id();
            let (one, two) = (format!("switch-one-{id}"), format!("switch-two-{id}"));
            let _one = common::pulse::load_null_sink(&one);
            let _two = common::pulse::load_null_sink(&two);
            let mut adas = choice("Ada");
            adas.speaker = Speaker::Named(one.clone());
            a.request(Request::UseDevices(adas.clone()));
            let on_one = loudest_on(&format!("{one}.monitor"), Duration::from_secs(2));
            adas.speaker = Speaker::Named(two.clone());
            a.request(Request::UseDevices(adas.clone()));
            std::thread::sleep(Duration::from_millis(500));
            let on_two = loudest_on(&format!("{two}.monitor"), Duration::from_secs(2));
            let left_on_one = loudest_on(&format!("{one}.monitor"), Duration::from_secs(1));
            eprintln!("speaker one {on_one:.3}, then two {on_two:.3}, one after {left_on_one:.4}");
            assert!(
                on_one > 0.05,
                "nothing played on the first speaker: {on_one}"
            );
            assert!(
                on_two > 0.05,
                "nothing played on the second speaker: {on_two}"
            );
            assert!(
                left_on_one < 0.01,
                "the first speaker still plays: {left_on_one}"
            );
            while a.poll().is_some() {}
            assert!(a.level(&bob) > 0.05, "Ada no longer hears Bob");
        }
    }
    drop(a);
    drop(b);
    // No switch left a capture, encoder or speaker thread behind.
    assert_threads_back_to(threads_before);
    rt.block_on(server.stop());
}
