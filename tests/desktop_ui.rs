//! The desktop window driven through egui_kittest (AccessKit: find by role and label,
//! click, type), over a fake backend that records requests and feeds events — the
//! window's only contact with the call.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use egui::accesskit::Role;
use egui::{Key, Modifiers, vec2};
use egui_kittest::Harness;
use egui_kittest::kittest::{Queryable, by};
use meshcall::client::ConnectionState;
use meshcall::engine::{Command, DeviceKind, Event, LinkState, Member, MemberStats};
use meshcall::media::audio::devices::AudioDevices;
use meshcall::media::audio::error::AudioError;
use meshcall::media::pipeline::{AudioChoice, VideoChoice, VideoQuality};
use meshcall::media::video::error::VideoError;
use meshcall::media::video::screen::{
    ScreenSource, ScreenTarget, ShareableSource, SourceKind, TestScreen,
};
use meshcall::media::video::{FrameTime, I420Frame};
use meshcall::proto::{ChatMessage, ErrorCode};
use meshcall::session::{CallBackend, DeviceLists, Notice, Request, ShareStatus};
use meshcall::ui::app::MeshcallUi;
use meshcall::ui::call_view::{ACTUAL_HINT, FIT_HINT, STRIP_SHARE_HINT};
use meshcall::ui::settings::{CameraPick, Settings};
use meshcall::ui::share_picker::UNSUPPORTED_HINT;

#[derive(Default)]
struct FakeBackend {
    requests: Vec<Request>,
    notices: VecDeque<Notice>,
    frames: HashMap<String, Arc<I420Frame>>,
    /// How many frames the window took, per member.
    taken: HashMap<String, usize>,
    levels: HashMap<String, f32>,
    /// Screen-share frames waiting, per member.
    screen_frames: HashMap<String, Arc<I420Frame>>,
}

impl CallBackend for FakeBackend {
    fn request(&mut self, request: Request) {
        self.requests.push(request);
    }
    fn poll(&mut self) -> Option<Notice> {
        self.notices.pop_front()
    }
    fn take_frame(&mut self, id: &str) -> Option<Arc<I420Frame>> {
        let f = self.frames.remove(id)?;
        *self.taken.entry(id.to_owned()).or_default() += 1;
        Some(f)
    }
    fn take_screen_frame(&mut self, id: &str) -> Option<Arc<I420Frame>> {
        self.screen_frames.remove(id)
    }
    fn level(&self, id: &str) -> f32 {
        self.levels.get(id).copied().unwrap_or(0.0)
    }
    fn preview(&self) -> Option<Arc<I420Frame>> {
        None
    }
    fn mic_level(&self) -> f32 {
        0.0
    }
}

type App = MeshcallUi<FakeBackend>;

fn no_devices() -> Notice {
    Notice::Devices(DeviceLists {
        cameras: Vec::new(),
        audio: AudioDevices::default(),
        audio_problem: None,
    })
}

fn harness(settings: Settings) -> Harness<'static, App> {
    harness_sized(settings, 1000.0, 640.0)
}

fn harness_sized(settings: Settings, width: f32, height: f32) -> Harness<'static, App> {
    let mut backend = FakeBackend::default();
    backend.notices.push_back(no_devices());
    let app = MeshcallUi::new(backend, settings, false);
    let mut h = Harness::builder()
        .with_size(vec2(width, height))
        .build_ui_state(|ui, app: &mut App| app.ui(ui), app);
    h.run();
    h
}

fn type_into(h: &mut Harness<'static, App>, label: &str, text: &str) {
    h.get_by_role_and_label(Role::TextInput, label).focus();
    h.run();
    h.get_by_role_and_label(Role::TextInput, label)
        .type_text(text);
    h.run();
}

fn joins(h: &Harness<'static, App>) -> Vec<meshcall::engine::JoinParams> {
    h.state()
        .backend()
        .requests
        .iter()
        .filter_map(|r| match r {
            Request::Join { params, .. } => Some(params.clone()),
            _ => None,
        })
        .collect()
}

fn member(id: &str, name: &str, audio: bool, video: bool) -> Member {
    Member {
        id: id.into(),
        name: name.into(),
        audio,
        video,
        screen: false,
        link: LinkState::Connected,
    }
}

fn frame(y: u8, u: u8, v: u8) -> Arc<I420Frame> {
    Arc::new(I420Frame::filled(320, 180, (y, u, v), FrameTime::now()).expect("frame"))
}

/// A window in a call with three others: one talking with video, one muted, one with the
/// camera off.
fn in_call() -> Harness<'static, App> {
    in_call_sized(1000.0, 640.0)
}

fn in_call_sized(width: f32, height: f32) -> Harness<'static, App> {
    let settings = Settings {
        name: "Ada Lovelace".into(),
        ..Settings::default()
    };
    let mut h = harness_sized(settings, width, height);
    let b = h.state_mut().backend_mut();
    b.notices.push_back(Notice::Engine(Event::Joined {
        room: "abc-defg-hij".into(),
        self_id: "me".into(),
        members: vec![
            member("p1", "Grace Hopper", true, true),
            member("p2", "Alan Turing", false, true),
        ],
        chat: vec![ChatMessage {
            from: "p1".into(),
            name: "Grace Hopper".into(),
            text: "hello from history".into(),
            ts: 0,
        }],
    }));
    b.notices
        .push_back(Notice::Engine(Event::MemberUpdated(member(
            "p3",
            "Edsger Dijkstra",
            true,
            false,
        ))));
    b.frames.insert("p1".into(), frame(120, 90, 200));
    b.frames.insert("p2".into(), frame(180, 160, 60));
    b.levels.insert("p1".into(), 0.3);
    h.run();
    h
}

#[test]
fn lobby_join_sends_the_typed_name_and_code() {
    let mut h = harness(Settings::default());
    // No camera on this machine: the test pattern is picked, and the person is told.
    assert_eq!(h.state().settings.camera, CameraPick::TestPattern);
    h.get_by_label_contains("No camera found");
    type_into(&mut h, "Your name", "Ada");
    type_into(&mut h, "Room code or link", "ABC-DEFG-HIJ");
    h.get_by_role_and_label(Role::Button, "Join").click();
    h.run_steps(2);
    let joins = joins(&h);
    assert_eq!(joins.len(), 1, "{:?}", h.state().backend().requests);
    assert_eq!(joins[0].name, "Ada");
    assert_eq!(joins[0].room.as_deref(), Some("abc-defg-hij"));
    assert_eq!(joins[0].server, "ws://127.0.0.1:8787");
    assert!(h.state().lobby().joining);
}

#[test]
fn new_room_creates_one() {
    let mut h = harness(Settings {
        name: "Ada".into(),
        ..Settings::default()
    });
    h.get_by_role_and_label(Role::Button, "New room").click();
    h.run_steps(2);
    let joins = joins(&h);
    assert_eq!(joins.len(), 1);
    assert_eq!(joins[0].room, None);
    assert!(!joins[0].relay_only, "relay-only is off unless chosen");
}

#[test]
fn the_advanced_relay_only_toggle_reaches_the_join_and_is_remembered() {
    let mut h = harness(Settings {
        name: "Ada".into(),
        ..Settings::default()
    });
    h.get_by_label("Advanced").click();
    h.run();
    h.get_by_label_contains("Relay only").click();
    h.run();
    assert!(h.state().settings.relay_only);
    h.get_by_role_and_label(Role::Button, "New room").click();
    h.run_steps(2);
    let joins = joins(&h);
    assert_eq!(joins.len(), 1);
    assert!(joins[0].relay_only, "{:?}", joins[0]);
}

#[test]
fn a_pasted_link_gives_room_and_server() {
    let mut h = harness(Settings {
        name: "Ada".into(),
        ..Settings::default()
    });
    type_into(
        &mut h,
        "Room code or link",
        "http://10.1.2.3:8787/r/abc-defg-hij",
    );
    h.get_by_role_and_label(Role::Button, "Join").click();
    h.run_steps(2);
    let joins = joins(&h);
    assert_eq!(joins[0].room.as_deref(), Some("abc-defg-hij"));
    assert_eq!(joins[0].server, "ws://10.1.2.3:8787");
}

#[test]
fn bad_input_is_explained_and_nothing_is_sent() {
    let mut h = harness(Settings::default());
    h.get_by_role_and_label(Role::Button, "Join").click();
    h.run();
    h.get_by_label("Type your name first.");
    type_into(&mut h, "Your name", "Ada");
    type_into(&mut h, "Room code or link", "not a code!");
    h.get_by_role_and_label(Role::Button, "Join").click();
    h.run();
    h.get_by_label_contains("is not a room code");
    assert!(joins(&h).is_empty());
}

#[test]
fn room_full_and_wrong_passcode_are_explained() {
    let mut h = harness(Settings {
        name: "Ada".into(),
        room: "abc-defg-hij".into(),
        ..Settings::default()
    });
    h.get_by_role_and_label(Role::Button, "Join").click();
    h.run_steps(2);
    h.state_mut()
        .backend_mut()
        .notices
        .push_back(Notice::Engine(Event::JoinFailed {
            code: Some(ErrorCode::RoomFull),
            message: "room is full".into(),
        }));
    h.run();
    h.get_by_label_contains("This room is full");
    assert!(!h.state().in_call());

    h.get_by_role_and_label(Role::Button, "Join").click();
    h.run_steps(2);
    h.state_mut()
        .backend_mut()
        .notices
        .push_back(Notice::Engine(Event::JoinFailed {
            code: Some(ErrorCode::WrongPasscode),
            message: "wrong passcode".into(),
        }));
    h.run();
    h.get_by_label_contains("This room has a passcode");
    // The passcode field appears; what is typed goes with the next join.
    type_into(&mut h, "Passcode", "s3cret");
    h.get_by_role_and_label(Role::Button, "Join").click();
    h.run_steps(2);
    let joins = joins(&h);
    assert_eq!(joins.len(), 3);
    assert_eq!(joins[2].passcode.as_deref(), Some("s3cret"));
}

#[test]
fn the_call_shows_everyone_with_names_badges_and_initials() {
    let mut h = in_call();
    assert!(h.state().in_call());
    h.get_by_label("Ada Lovelace (you)");
    h.get_by_label("AL");
    h.get_by_label("Grace Hopper");
    h.get_by_label("Alan Turing");
    h.get_by_label("Edsger Dijkstra");
    // Alan is muted; Edsger's camera is off, so his initials show instead of video.
    assert_eq!(h.get_all_by_label("Muted").count(), 1);
    h.get_by_label("ED");
    // Video reached the tiles that have it, one texture each.
    h.get_by_label("Grace Hopper's video");
    h.get_by_label("Alan Turing's video");
    assert!(h.query_by_label("Edsger Dijkstra's video").is_none());
    assert_eq!(h.state().texture_count(), 2);
    h.get_by_label("4 people");
    h.get_by_label("Room abc-defg-hij");
    h.snapshot("call_4_people");
}

#[test]
fn a_texture_is_only_updated_when_a_new_frame_came() {
    let mut h = in_call();
    let taken = h.state().backend().taken.get("p1").copied();
    assert_eq!(taken, Some(1));
    // Many redraws with no new frame take nothing; one new frame is taken once.
    for _ in 0..5 {
        h.step();
    }
    assert_eq!(h.state().backend().taken["p1"], 1);
    h.state_mut()
        .backend_mut()
        .frames
        .insert("p1".into(), frame(30, 128, 128));
    h.run();
    assert_eq!(h.state().backend().taken["p1"], 2);
    assert_eq!(h.state().texture_count(), 2);
}

#[test]
fn a_video_that_stops_shows_as_paused_not_frozen() {
    let mut h = in_call();
    h.get_by_label("Grace Hopper's video");
    // Grace's camera is still on, but no frame comes for over two seconds (her video to
    // us was paused for our poor link); Alan's keeps coming.
    std::thread::sleep(std::time::Duration::from_millis(2200));
    h.state_mut()
        .backend_mut()
        .frames
        .insert("p2".into(), frame(30, 128, 128));
    h.run();
    assert!(h.query_by_label("Grace Hopper's video").is_none());
    h.get_by_label("Video paused — poor connection");
    h.get_by_label("GH");
    h.get_by_label("Alan Turing's video");
    // A new frame brings the picture back.
    h.state_mut()
        .backend_mut()
        .frames
        .insert("p1".into(), frame(120, 90, 200));
    h.run();
    h.get_by_label("Grace Hopper's video");
    assert!(h.query_by_label("Video paused — poor connection").is_none());
}

#[test]
fn people_leaving_lose_their_tile() {
    let mut h = in_call();
    h.state_mut()
        .backend_mut()
        .notices
        .push_back(Notice::Engine(Event::MemberLeft { id: "p2".into() }));
    h.run();
    assert!(h.query_by_label("Alan Turing").is_none());
    h.get_by_label("3 people");
    assert_eq!(h.state().texture_count(), 1);
}

fn last_requests(h: &Harness<'static, App>, n: usize) -> Vec<String> {
    let r = &h.state().backend().requests;
    r[r.len().saturating_sub(n)..]
        .iter()
        .map(|r| format!("{r:?}"))
        .collect()
}

#[test]
fn mic_and_camera_toggle_by_button_and_shortcut() {
    let mut h = in_call();
    h.get_by_role_and_label(Role::Button, "Mute").click();
    h.run();
    assert_eq!(last_requests(&h, 1), ["SetMic(false)"]);
    h.get_by_role_and_label(Role::Button, "Unmute");
    // Now two muted badges: ours and Alan's.
    assert_eq!(h.get_all_by_label("Muted").count(), 2);

    // Ctrl+D / Ctrl+E as on Linux (egui's COMMAND is Ctrl there).
    let ctrl = Modifiers::CTRL | Modifiers::COMMAND;
    h.key_press_modifiers(ctrl, Key::D);
    h.run();
    assert_eq!(last_requests(&h, 1), ["SetMic(true)"]);
    h.get_by_role_and_label(Role::Button, "Mute");
    h.key_press_modifiers(ctrl, Key::E);
    h.run();
    assert_eq!(last_requests(&h, 1), ["SetCamera(false)"]);
    h.get_by_role_and_label(Role::Button, "Start video").click();
    h.run();
    assert_eq!(last_requests(&h, 1), ["SetCamera(true)"]);
    // A plain D (typing) toggles nothing.
    let before = h.state().backend().requests.len();
    h.key_press(Key::D);
    h.run();
    assert_eq!(h.state().backend().requests.len(), before);
}

#[test]
fn a_device_that_fails_shows_a_banner_and_its_toggle_off_and_turning_it_on_retries() {
    let mut h = in_call();
    h.get_by_role_and_label(Role::Button, "Stop video");
    let failed = |kind, message: &str| {
        Notice::Engine(Event::DeviceFailed {
            kind,
            message: message.into(),
        })
    };
    h.state_mut()
        .backend_mut()
        .notices
        .push_back(failed(DeviceKind::Camera, "The camera was disconnected"));
    h.run();
    h.snapshot("call_camera_failed");
    h.get_by_label(
        "Your camera stopped: The camera was disconnected. Others see your video as off; \
         press Start video to try again.",
    );
    assert!(!h.state().settings.camera_on);
    // The toggle is off, and nothing was asked of the session: it already closed the camera.
    let before = h.state().backend().requests.len();
    h.get_by_role_and_label(Role::Button, "Start video").click();
    h.run();
    assert_eq!(h.state().backend().requests.len(), before + 1);
    assert_eq!(last_requests(&h, 1), ["SetCamera(true)"]);
    assert!(
        h.query_by_label_contains("Your camera stopped").is_none(),
        "the retry clears the banner"
    );
    h.get_by_role_and_label(Role::Button, "Stop video");

    // The microphone: shown muted, the call (and the camera) going on.
    h.state_mut().backend_mut().notices.push_back(failed(
        DeviceKind::Microphone,
        "the microphone \"Mic\" stopped working (no sound from it for 2 s)",
    ));
    h.run();
    h.get_by_label_contains("Your microphone stopped");
    h.get_by_label_contains("Others see you as muted");
    assert!(!h.state().settings.mic_on);
    assert!(h.state().in_call());
    h.get_by_role_and_label(Role::Button, "Stop video");
    h.get_by_role_and_label(Role::Button, "Unmute").click();
    h.run();
    assert_eq!(last_requests(&h, 1), ["SetMic(true)"]);
    assert!(
        h.query_by_label_contains("Your microphone stopped")
            .is_none()
    );
}

fn last_devices(h: &Harness<'static, App>) -> meshcall::session::DeviceChoice {
    match h.state().backend().requests.last() {
        Some(Request::UseDevices(choice)) => choice.clone(),
        other => panic!("expected a device change, the last request was {other:?}"),
    }
}

#[test]
fn devices_switch_from_the_call_without_leaving() {
    let mut h = in_call();
    h.get_by_role_and_label(Role::Button, "Devices").click();
    h.run();
    h.snapshot("call_devices");
    h.get_by_role_and_label(Role::ComboBox, "Microphone")
        .click();
    h.run();
    h.get_by_label("Test tone").click();
    h.run();
    assert_eq!(
        last_devices(&h).audio,
        AudioChoice::Tone { beep_every: None }
    );
    assert!(
        h.state().in_call(),
        "a device change must not leave the call"
    );

    h.get_by_role_and_label(Role::ComboBox, "Camera").click();
    h.run();
    h.get_by_label("No video").click();
    h.run();
    assert_eq!(last_devices(&h).video, VideoChoice::None);
    // With no video source, the camera shortcut has nothing to turn on.
    let before = h.state().backend().requests.len();
    h.key_press_modifiers(Modifiers::CTRL | Modifiers::COMMAND, Key::E);
    h.run();
    assert_eq!(h.state().backend().requests.len(), before);

    // A device plugged in during the call can be looked for from here.
    h.get_by_role_and_label(Role::Button, "Look for devices again")
        .click();
    h.run();
    assert!(matches!(
        h.state().backend().requests.last(),
        Some(Request::RefreshDevices)
    ));

    // The same button closes the window.
    h.get_by_role_and_label(Role::Button, "Devices").click();
    h.run();
    assert!(
        h.query_by_role_and_label(Role::ComboBox, "Microphone")
            .is_none()
    );
}

#[test]
fn chat_shows_history_counts_unread_and_sends() {
    let mut h = in_call();
    h.state_mut()
        .backend_mut()
        .notices
        .push_back(Notice::Engine(Event::Chat(ChatMessage {
            from: "p3".into(),
            name: "Edsger Dijkstra".into(),
            text: "goto considered harmful".into(),
            ts: 1,
        })));
    h.run();
    h.get_by_label("1 unread");
    assert!(h.query_by_label("goto considered harmful").is_none());
    h.get_by_role_and_label(Role::Button, "Chat").click();
    h.run();
    h.get_by_label("hello from history");
    h.get_by_label("goto considered harmful");
    assert!(h.query_by_label("1 unread").is_none());
    type_into(&mut h, "Message", "hi all");
    h.get_by_role_and_label(Role::Button, "Send").click();
    h.run();
    assert_eq!(
        last_requests(&h, 1),
        [format!(
            "{:?}",
            Request::Engine(Command::Chat("hi all".into()))
        )]
    );
}

/// After a fresh rejoin (the server restarted) we have a new id; our own messages under
/// it are still ours: no unread badge, and shown as "You".
#[test]
fn after_a_fresh_rejoin_our_messages_under_the_new_id_are_ours() {
    let mut h = in_call();
    let b = h.state_mut().backend_mut();
    b.notices.push_back(Notice::Engine(Event::Rejoined {
        self_id: "p9".into(),
    }));
    b.notices.push_back(Notice::Engine(Event::Chat(ChatMessage {
        from: "p9".into(),
        name: "Ada Lovelace".into(),
        text: "back again".into(),
        ts: 2,
    })));
    h.run();
    assert!(
        h.query_by_label("1 unread").is_none(),
        "own message counted"
    );
    h.get_by_role_and_label(Role::Button, "Chat").click();
    h.run();
    h.get_by_label("back again");
    h.get_by_label("You");
}

#[test]
fn banners_for_reconnecting_and_device_problems() {
    let mut h = in_call();
    let b = h.state_mut().backend_mut();
    b.notices.push_back(Notice::Engine(Event::Signaling(
        ConnectionState::Reconnecting { attempt: 1 },
    )));
    b.notices
        .push_back(Notice::DeviceProblem("microphone: no sound server".into()));
    h.run();
    h.get_by_label_contains("reconnecting");
    h.get_by_label("Microphone: no sound server.");
    h.state_mut()
        .backend_mut()
        .notices
        .push_back(Notice::Engine(Event::Signaling(ConnectionState::Connected)));
    h.run();
    assert!(h.query_by_label_contains("reconnecting").is_none());
    // The device banner stays until dismissed.
    h.get_by_role_and_label(Role::Button, "Dismiss").click();
    h.run();
    assert!(h.query_by_label("Microphone: no sound server.").is_none());
    assert!(h.state().banners().is_empty());
}

#[test]
fn quality_tooltip_and_stats_reach_the_tile() {
    let mut h = in_call();
    // Every per-peer number of the participant report: video_kbps, fps, resolution,
    // freezes and freeze_ms, audio_concealed, nack_sent, rtx_received, loss_pct, layer.
    let stats = MemberStats {
        rtt_ms: Some(23.0),
        bitrate_in: 850_000.0,
        bitrate_out: 900_000.0,
        video_bitrate_in: 612_000.0,
        packets_lost: 30,
        packets_received: 970,
        nacks_sent: 41,
        retransmissions_received: 37,
        layer: Some("320x180".into()),
        decoded: Some(VideoQuality {
            fps: 24.4,
            width: 640,
            height: 360,
            freezes: 3,
            freeze_time: std::time::Duration::from_millis(750),
        }),
        audio_concealed: 17,
        ..Default::default()
    };
    h.state_mut()
        .backend_mut()
        .notices
        .push_back(Notice::Engine(Event::Stats {
            id: "p1".into(),
            stats,
        }));
    h.run();
    h.get_by_label("Connection quality: Grace Hopper").hover();
    h.run();
    h.get_by_label_contains("RTT 23 ms");
    // The first sample has no interval to measure; the call's total is the report's.
    h.get_by_label_contains("Loss 0.0 % (3.0 % over the call)");
    h.get_by_label_contains("In 850 kbit/s · Out 900 kbit/s");
    h.get_by_label_contains("Their video 612 kbit/s, 24 fps, 640x360");
    h.get_by_label_contains("Freezes 3 (750 ms) · audio concealed 17");
    h.get_by_label_contains("Asked again 41 · resent 37");
    h.get_by_label_contains("We send 320x180");
}

#[test]
fn leaving_returns_to_the_lobby_quietly() {
    let mut h = in_call();
    h.get_by_role_and_label(Role::Button, "Leave").click();
    h.run();
    assert_eq!(
        last_requests(&h, 1),
        [format!("{:?}", Request::Engine(Command::Leave))]
    );
    h.state_mut()
        .backend_mut()
        .notices
        .push_back(Notice::Engine(Event::Left {
            reason: "you left".into(),
        }));
    h.run();
    assert!(!h.state().in_call());
    assert!(h.state().banners().is_empty());
    h.get_by_role_and_label(Role::Button, "Join");
    assert_eq!(h.state().texture_count(), 0);
}

#[test]
fn lobby_snapshot() {
    let mut h = harness(Settings {
        name: "Ada Lovelace".into(),
        room: "abc-defg-hij".into(),
        ..Settings::default()
    });
    h.snapshot("lobby");
}

/// A machine with no sound server and no camera, as the session reports it: the device
/// lists are empty with the audio problem, and the speaker, microphone and camera each fail.
fn lobby_without_devices(width: f32, height: f32) -> Harness<'static, App> {
    let no_sound = AudioError::NoSoundSystem {
        detail: "PulseAudio: Connection refused; fallback: ALSA: no default output device".into(),
    }
    .to_string();
    let mut backend = FakeBackend::default();
    backend.notices.extend([
        Notice::Devices(DeviceLists {
            cameras: Vec::new(),
            audio: AudioDevices::default(),
            audio_problem: Some(no_sound.clone()),
        }),
        Notice::DeviceProblem(format!("speaker: {no_sound}")),
        Notice::DeviceProblem(format!("microphone: {no_sound}")),
        Notice::DeviceProblem(format!("video: {}", VideoError::CameraNotFound)),
    ]);
    let app = MeshcallUi::new(backend, Settings::default(), false);
    let mut h = Harness::builder()
        .with_size(vec2(width, height))
        .build_ui_state(|ui, app: &mut App| app.ui(ui), app);
    h.run();
    h
}

/// Every widget AccessKit knows lies within the window's width: nothing runs off the
/// right edge (the lobby scrolls vertically, so height is not checked).
fn assert_fits_width(h: &Harness<'static, App>, width: f32) {
    let outside: Vec<String> = h
        .query_all(by().predicate(|n| n.bounding_box().is_some()))
        .filter(|n| {
            let r = n.rect();
            r.min.x < -0.5 || r.max.x > width + 0.5
        })
        .map(|n| format!("{n:?}: {:?}", n.rect()))
        .collect();
    assert!(
        outside.is_empty(),
        "past the window's {width} px: {outside:#?}"
    );
}

fn lobby_without_devices_fits(width: f32, height: f32, snapshot: &str) {
    let mut h = lobby_without_devices(width, height);
    // Three banners, each one sentence: what happened and what to do; the backend's own
    // words are on hover, not in the sentence.
    let sound = "no sound server or sound card was found; start PulseAudio or PipeWire, \
                 or connect an audio device.";
    h.get_by_label(&format!("Speaker: {sound}"));
    h.get_by_label(&format!("Microphone: {sound}"));
    h.get_by_label("Video: No camera found; connect one and press Look for devices again.");
    assert_eq!(h.state().banners().items().len(), 3);
    for b in h.state().banners().items() {
        assert!(!b.text.contains("Connection refused"), "{b:?}");
    }
    assert_eq!(
        h.state().banners().items()[0].detail.as_deref(),
        Some("PulseAudio: Connection refused; fallback: ALSA: no default output device")
    );
    assert_fits_width(&h, width);
    let name = h.get_by_role_and_label(Role::TextInput, "Your name").rect();
    let room = h
        .get_by_role_and_label(Role::TextInput, "Room code or link")
        .rect();
    assert!(
        name.width() > 150.0 && room.width() > 150.0,
        "{name:?} {room:?}"
    );
    h.snapshot(snapshot);
}

#[test]
fn lobby_without_devices_fits_800x600() {
    lobby_without_devices_fits(800.0, 600.0, "lobby_no_devices_800x600");
}

#[test]
fn lobby_without_devices_fits_1100x720() {
    lobby_without_devices_fits(1100.0, 720.0, "lobby_no_devices_1100x720");
}

#[test]
fn a_long_banner_wraps_within_the_window() {
    let mut h = lobby_without_devices(800.0, 600.0);
    let long = "The server at ws://meshcall.example.org:8787 could not be reached: the connection \
                was refused; check the address under Advanced, or leave it empty and meshcall \
                hosts the room on this computer.";
    h.state_mut()
        .backend_mut()
        .notices
        .push_back(Notice::ServerProblem(long.into()));
    h.run();
    let banner = h.get_by_label(long).rect();
    assert!(banner.height() > 25.0, "one line, not wrapped: {banner:?}");
    assert_fits_width(&h, 800.0);
}

// --- Screen sharing (issue 13) ---

/// Our window's X11 id as eframe would report it: the picker must leave it out.
const OWN_WINDOW: u32 = 0x0460_0007;
const CTRL_SHIFT: Modifiers = Modifiers {
    alt: false,
    ctrl: true,
    shift: true,
    mac_cmd: false,
    command: true,
};

fn thumbnail(y: u8, u: u8, v: u8) -> Option<I420Frame> {
    Some(I420Frame::filled(240, 136, (y, u, v), FrameTime::now()).expect("thumbnail"))
}

/// What the session lists on a desktop with two monitors and three windows.
fn sources() -> Vec<ShareableSource> {
    let window = |id, name: &str, w, h, t| ShareableSource {
        kind: SourceKind::Window,
        target: ScreenTarget::Window { id },
        name: name.into(),
        width: w,
        height: h,
        thumbnail: t,
    };
    vec![
        ShareableSource {
            kind: SourceKind::Screen,
            target: ScreenTarget::Screen,
            name: "Entire screen".into(),
            width: 3840,
            height: 1080,
            thumbnail: thumbnail(110, 150, 110),
        },
        ShareableSource {
            kind: SourceKind::Monitor,
            target: ScreenTarget::Monitor {
                x: 1920,
                y: 0,
                width: 1920,
                height: 1080,
            },
            name: "HDMI-1".into(),
            width: 1920,
            height: 1080,
            thumbnail: thumbnail(90, 170, 120),
        },
        window(
            0x0220_0003,
            "Terminal — vim",
            1200,
            800,
            thumbnail(40, 128, 128),
        ),
        window(
            0x0240_0011,
            "Quarterly report.pdf — Document Viewer",
            1000,
            1300,
            thumbnail(200, 128, 128),
        ),
        // Unmapped: listed, but no picture could be read.
        window(0x0260_0001, "Notes", 640, 480, None),
    ]
}

/// A 1920x1080 screen full of fine text, the same every run (the time band is fixed).
fn screen_frame() -> Arc<I420Frame> {
    let mut screen = TestScreen::new(1920, 1080).expect("test screen");
    Arc::new(screen.render(FrameTime {
        unix_ms: 1_764_672_000_000,
        instant: std::time::Instant::now(),
    }))
}

fn open_picker(h: &mut Harness<'static, App>) {
    h.state_mut().set_own_window(Some(OWN_WINDOW));
    h.get_by_role_and_label(Role::Button, "Share screen")
        .click();
    h.run();
}

fn share_requests(h: &Harness<'static, App>) -> Vec<Request> {
    h.state()
        .backend()
        .requests
        .iter()
        .filter(|r| {
            matches!(
                r,
                Request::ListScreenSources { .. }
                    | Request::ShareScreen(_)
                    | Request::StopScreenShare
            )
        })
        .cloned()
        .collect()
}

fn listed(h: &mut Harness<'static, App>, listing: Result<Vec<ShareableSource>, String>) {
    h.state_mut()
        .backend_mut()
        .notices
        .push_back(Notice::ScreenSources(listing));
    h.run();
}

fn picker_lists_and_shares(width: f32, height: f32, snapshot: &str) {
    let mut h = in_call_sized(width, height);
    open_picker(&mut h);
    assert!(h.state().picker_open());
    // Listing is asked for once, leaving our own window out.
    match share_requests(&h).as_slice() {
        [Request::ListScreenSources { exclude }] => assert_eq!(exclude, &[OWN_WINDOW]),
        other => panic!("expected one listing request, got {other:?}"),
    }
    h.get_by_label("Looking for screens and windows…");
    listed(&mut h, Ok(sources()));
    for name in [
        "Entire screen",
        "HDMI-1",
        "Terminal — vim",
        "Quarterly report.pdf — Document Viewer",
        "Notes",
    ] {
        h.get_by_role_and_label(Role::Button, name);
    }
    h.get_by_label("Window · 1200×800");
    h.get_by_label("Monitor · 1920×1080");
    // The unmapped window has no picture; the others have one texture each (made once).
    h.get_by_label("No preview");
    assert!(
        h.query_by_label("Looking for screens and windows…")
            .is_none()
    );
    assert_fits_width(&h, width);
    h.snapshot(snapshot);

    h.get_by_role_and_label(Role::Button, "Terminal — vim")
        .click();
    h.run();
    assert!(!h.state().picker_open());
    let shared = share_requests(&h);
    assert_eq!(shared.len(), 2, "{shared:?}");
    match &shared[1] {
        Request::ShareScreen(source) => assert_eq!(
            source,
            &ScreenSource::X11 {
                display: None,
                target: ScreenTarget::Window { id: 0x0220_0003 },
            }
        ),
        other => panic!("expected ShareScreen, got {other:?}"),
    }
}

#[test]
fn the_share_button_opens_the_picker_and_a_pick_shares_it_800x600() {
    picker_lists_and_shares(800.0, 600.0, "share_picker_800x600");
}

#[test]
fn the_share_button_opens_the_picker_and_a_pick_shares_it_1280x720() {
    picker_lists_and_shares(1280.0, 720.0, "share_picker_1280x720");
}

#[test]
fn the_picker_cancels_by_button_and_shortcut_and_lists_again() {
    let mut h = in_call();
    open_picker(&mut h);
    listed(&mut h, Ok(sources()));
    h.get_by_role_and_label(Role::Button, "Look again").click();
    h.run();
    // Asked again, and the old list is gone until the answer comes.
    assert_eq!(share_requests(&h).len(), 2);
    assert!(h.query_by_role_and_label(Role::Button, "HDMI-1").is_none());
    h.get_by_role_and_label(Role::Button, "Cancel").click();
    h.run();
    assert!(!h.state().picker_open());
    // A listing that comes after the picker closed is dropped, not shown.
    listed(&mut h, Ok(sources()));
    assert!(h.query_by_role_and_label(Role::Button, "HDMI-1").is_none());

    // Ctrl+Shift+S opens it; pressed again, closes it.
    h.key_press_modifiers(CTRL_SHIFT, Key::S);
    h.run();
    assert!(h.state().picker_open());
    assert_eq!(share_requests(&h).len(), 3);
    h.key_press_modifiers(CTRL_SHIFT, Key::S);
    h.run();
    assert!(!h.state().picker_open());
    assert!(
        !share_requests(&h)
            .iter()
            .any(|r| matches!(r, Request::ShareScreen(_))),
        "nothing was chosen, nothing may be shared"
    );
}

#[test]
fn a_listing_error_is_explained_instead_of_an_empty_list() {
    let mut h = in_call_sized(800.0, 600.0);
    open_picker(&mut h);
    let reason = "Screen sharing is not supported here yet: it needs an X11 display \
                  (DISPLAY is not set)";
    listed(&mut h, Err(reason.into()));
    h.get_by_label(reason);
    h.get_by_label(UNSUPPORTED_HINT);
    assert!(
        h.query_by_label("Looking for screens and windows…")
            .is_none()
    );
    assert!(h.query_by_label("Entire screen").is_none());
    assert_fits_width(&h, 800.0);
    h.snapshot("share_picker_unsupported");
}

fn share_status(h: &mut Harness<'static, App>, status: ShareStatus) {
    h.state_mut()
        .backend_mut()
        .notices
        .push_back(Notice::ScreenShare(status));
    h.run();
}

#[test]
fn while_sharing_a_bar_says_so_and_stop_stops_it() {
    let mut h = in_call();
    share_status(
        &mut h,
        ShareStatus::Sharing {
            name: "Terminal — vim".into(),
        },
    );
    h.get_by_label("You are sharing “Terminal — vim”");
    assert_eq!(h.state().sharing(), Some("Terminal — vim"));
    h.snapshot("call_sharing");
    // The control bar's button turned into Stop sharing.
    assert!(
        h.query_by_role_and_label(Role::Button, "Share screen")
            .is_none()
    );
    h.get_by_role_and_label(Role::Button, "Stop sharing");
    h.get_by_role_and_label(Role::Button, "Stop").click();
    h.run();
    assert!(matches!(
        share_requests(&h).as_slice(),
        [Request::StopScreenShare]
    ));
    assert!(
        h.query_by_label("You are sharing “Terminal — vim”")
            .is_none()
    );
    h.get_by_role_and_label(Role::Button, "Share screen");
    share_status(&mut h, ShareStatus::Stopped);
    assert_eq!(h.state().sharing(), None);

    // Again, and this time the control bar's button and then the shortcut stop it.
    share_status(
        &mut h,
        ShareStatus::Sharing {
            name: "Entire screen".into(),
        },
    );
    h.get_by_role_and_label(Role::Button, "Stop sharing")
        .click();
    h.run();
    assert_eq!(share_requests(&h).len(), 2);
    assert!(matches!(
        share_requests(&h).last(),
        Some(Request::StopScreenShare)
    ));
    share_status(
        &mut h,
        ShareStatus::Sharing {
            name: "Entire screen".into(),
        },
    );
    h.key_press_modifiers(CTRL_SHIFT, Key::S);
    h.run();
    assert_eq!(share_requests(&h).len(), 3);
    assert!(h.query_by_label_contains("You are sharing").is_none());
    assert!(!h.state().picker_open());
}

#[test]
fn a_share_that_fails_shows_why() {
    let mut h = in_call();
    share_status(
        &mut h,
        ShareStatus::Failed("screen sharing is not wired to the call yet".into()),
    );
    h.get_by_label("Your screen could not be shared: screen sharing is not wired to the call yet.");
    assert_eq!(h.state().sharing(), None);
    // A share that starts clears it; one that ends by itself says so.
    share_status(
        &mut h,
        ShareStatus::Sharing {
            name: "Notes".into(),
        },
    );
    assert!(h.query_by_label_contains("could not be shared").is_none());
    share_status(
        &mut h,
        ShareStatus::Failed("The shared window was closed".into()),
    );
    h.get_by_label("Your screen share stopped: The shared window was closed.");
    assert!(h.query_by_label_contains("You are sharing").is_none());
    h.get_by_role_and_label(Role::Button, "Share screen");
}

fn member_shares(h: &mut Harness<'static, App>, id: &str, name: &str, on: bool) {
    let mut m = member(id, name, true, true);
    m.screen = on;
    let b = h.state_mut().backend_mut();
    b.notices.push_back(Notice::Engine(Event::MemberUpdated(m)));
    if on {
        b.screen_frames.insert(id.into(), screen_frame());
    }
    h.run();
}

fn rect_of(h: &Harness<'static, App>, label: &str) -> egui::Rect {
    h.get_by_label(label).rect()
}

fn spotlight_at(width: f32, height: f32, snapshot: &str) {
    let mut h = in_call_sized(width, height);
    let grid_tile = rect_of(&h, "Grace Hopper's video");
    member_shares(&mut h, "p1", "Grace Hopper", true);
    h.get_by_label("Grace Hopper's screen");
    h.get_by_label(FIT_HINT);
    let share = rect_of(&h, "Grace Hopper's screen, shared");
    // 1920x1080 fitted: larger than any tile was, smaller than the window, 16:9 kept.
    assert!(
        share.width() > grid_tile.width() * 1.5,
        "{share:?} vs {grid_tile:?}"
    );
    assert!(
        share.width() <= width && share.height() <= height,
        "{share:?}"
    );
    assert!((share.width() / share.height() - 16.0 / 9.0).abs() < 0.01);
    // Everyone's camera is still there, small, in the strip beside or below.
    for who in [
        "Ada Lovelace (you)",
        "Grace Hopper",
        "Alan Turing",
        "Edsger Dijkstra",
    ] {
        let plate = rect_of(&h, who);
        assert!(
            plate.left() > share.right() || plate.top() > share.bottom(),
            "{who} at {plate:?} is not in the strip beside {share:?}"
        );
    }
    let camera = rect_of(&h, "Grace Hopper's video");
    assert!(camera.width() < share.width() / 3.0, "{camera:?}");
    // One more texture: the share's.
    assert_eq!(h.state().texture_count(), 3);
    assert_fits_width(&h, width);
    h.snapshot(snapshot);
}

#[test]
fn a_share_shows_large_with_the_cameras_in_a_strip_800x600() {
    spotlight_at(800.0, 600.0, "spotlight_800x600");
}

#[test]
fn a_share_shows_large_with_the_cameras_in_a_strip_1280x720() {
    spotlight_at(1280.0, 720.0, "spotlight_1280x720");
}

#[test]
fn a_click_toggles_the_share_between_fit_and_actual_size() {
    let mut h = in_call_sized(1280.0, 720.0);
    member_shares(&mut h, "p1", "Grace Hopper", true);
    let fitted = rect_of(&h, "Grace Hopper's screen, shared");
    assert!(fitted.width() < 1280.0);
    h.get_by_label("Grace Hopper's screen, shared").click();
    h.run();
    assert_eq!(h.state().actual_share(), Some("p1"));
    h.get_by_label(ACTUAL_HINT);
    // One pixel of the share to one pixel of the screen: larger than the window, scrolling.
    let ppp = h.ctx.pixels_per_point();
    let actual = rect_of(&h, "Grace Hopper's screen, shared");
    assert!((actual.width() - 1920.0 / ppp).abs() < 1.0, "{actual:?}");
    assert!((actual.height() - 1080.0 / ppp).abs() < 1.0, "{actual:?}");
    h.snapshot("spotlight_actual_size");
    h.get_by_label("Grace Hopper's screen, shared").click();
    h.run();
    assert_eq!(h.state().actual_share(), None);
    h.get_by_label(FIT_HINT);
    let again = rect_of(&h, "Grace Hopper's screen, shared");
    assert!(
        (again.width() - fitted.width()).abs() < 1.0,
        "{again:?} vs {fitted:?}"
    );
}

#[test]
fn the_share_tile_goes_when_the_share_stops_or_its_owner_leaves() {
    let mut h = in_call();
    let grid_tile = rect_of(&h, "Grace Hopper's video");
    member_shares(&mut h, "p1", "Grace Hopper", true);
    h.get_by_label("Grace Hopper's screen");
    member_shares(&mut h, "p1", "Grace Hopper", false);
    assert!(h.query_by_label("Grace Hopper's screen").is_none());
    assert!(h.query_by_label_contains(FIT_HINT).is_none());
    // The grid is back as it was, and the share's texture is freed.
    assert_eq!(rect_of(&h, "Grace Hopper's video"), grid_tile);
    assert_eq!(h.state().texture_count(), 2);

    member_shares(&mut h, "p2", "Alan Turing", true);
    h.get_by_label("Alan Turing's screen");
    h.state_mut()
        .backend_mut()
        .notices
        .push_back(Notice::Engine(Event::MemberLeft { id: "p2".into() }));
    h.run();
    assert!(h.query_by_label("Alan Turing's screen").is_none());
    assert_eq!(h.state().texture_count(), 1);
    h.get_by_label("3 people");
}

#[test]
fn with_two_shares_the_newest_is_large_and_a_click_brings_the_other_up() {
    let mut h = in_call_sized(1280.0, 720.0);
    member_shares(&mut h, "p1", "Grace Hopper", true);
    member_shares(&mut h, "p2", "Alan Turing", true);
    let grace = rect_of(&h, "Grace Hopper's screen, shared");
    let alan = rect_of(&h, "Alan Turing's screen, shared");
    assert!(
        alan.width() > grace.width() * 2.0,
        "newest large: {alan:?} {grace:?}"
    );
    h.get_by_label(STRIP_SHARE_HINT);
    h.get_by_label("Grace Hopper's screen, shared").click();
    h.run();
    let grace = rect_of(&h, "Grace Hopper's screen, shared");
    let alan = rect_of(&h, "Alan Turing's screen, shared");
    assert!(
        grace.width() > alan.width() * 2.0,
        "clicked one large: {alan:?} {grace:?}"
    );
    // The clicked one stays large only while it is shared.
    member_shares(&mut h, "p1", "Grace Hopper", false);
    let alan = rect_of(&h, "Alan Turing's screen, shared");
    assert!(alan.width() > 600.0, "{alan:?}");
    assert!(h.query_by_label(STRIP_SHARE_HINT).is_none());
}

#[test]
fn escape_closes_the_picker_and_the_call_ending_ends_the_share() {
    let mut h = in_call();
    open_picker(&mut h);
    h.key_press(Key::Escape);
    h.run();
    assert!(!h.state().picker_open());
    share_status(
        &mut h,
        ShareStatus::Sharing {
            name: "Entire screen".into(),
        },
    );
    h.get_by_label("You are sharing “Entire screen”");
    h.state_mut()
        .backend_mut()
        .notices
        .push_back(Notice::Engine(Event::Left {
            reason: "the server closed the room".into(),
        }));
    h.run();
    assert!(!h.state().in_call());
    assert_eq!(h.state().sharing(), None);
    assert!(h.query_by_label_contains("You are sharing").is_none());
}

#[test]
fn the_call_ending_closes_an_open_picker() {
    let mut h = in_call();
    open_picker(&mut h);
    listed(&mut h, Ok(sources()));
    h.state_mut()
        .backend_mut()
        .notices
        .push_back(Notice::Engine(Event::Left {
            reason: "the server closed the room".into(),
        }));
    h.run();
    assert!(!h.state().picker_open());
    assert!(h.query_by_role_and_label(Role::Button, "HDMI-1").is_none());
    h.get_by_role_and_label(Role::Button, "Join");
}
