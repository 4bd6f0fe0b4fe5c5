//! The window's state machine: lobby → joining → call → lobby. It reads notices from the
//! backend, applies what widgets return, and never waits on anything.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use egui::{Key, KeyboardShortcut, Modifiers, Ui};

use super::banners::{BannerKind, Banners, device_failed_text, device_problem_text};
use super::call_model::CallModel;
use super::call_view::{self, CallAction, CallView};
use super::control_bar::BarAction;
use super::device_window::{self, DeviceAction};
use super::lobby::{self, LobbyAction, LobbyState, LobbyView};
use super::milestones::Milestones;
use super::room_input::parse_room_input;
use super::settings::{CameraPick, MicPick, Settings};
use super::share_picker::{PickerAction, SharePicker};
use super::textures::{SELF_KEY, VideoTextures, screen_key};
use crate::client::ConnectionState;
use crate::engine::{Command, DeviceKind, Event, JoinParams};
use crate::media::video::screen::{ScreenSource, ShareableSource};
use crate::proto::{ErrorCode, validate_name};
use crate::session::{
    CallBackend, DeviceChoice, DeviceLists, Notice, Request, SPEAKING_LEVEL, ShareStatus,
    invite_link,
};

/// Ctrl+D toggles the microphone (as in Meet).
pub const MIC_SHORTCUT: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::D);
/// Ctrl+E toggles the camera (as in Meet).
pub const CAMERA_SHORTCUT: KeyboardShortcut = KeyboardShortcut::new(Modifiers::COMMAND, Key::E);
/// Ctrl+Shift+S opens the share picker, or stops our share.
pub const SHARE_SHORTCUT: KeyboardShortcut =
    KeyboardShortcut::new(Modifiers::COMMAND.plus(Modifiers::SHIFT), Key::S);

/// How often a live self-view is redrawn.
const SELF_VIEW_FRAME: Duration = Duration::from_millis(33);
/// How often the lobby's mic meter is redrawn.
const METER_FRAME: Duration = Duration::from_millis(50);

enum Screen {
    Lobby,
    Call(CallModel),
}

/// The whole window's state, over some [`CallBackend`].
pub struct MeshcallUi<B: CallBackend> {
    backend: B,
    /// What is remembered between runs.
    pub settings: Settings,
    screen: Screen,
    devices: Option<DeviceLists>,
    banners: Banners,
    lobby: LobbyState,
    textures: VideoTextures,
    speaking: HashSet<String>,
    /// Where invite links point when we host the room ourselves.
    hosted_base: Option<String>,
    chat_draft: String,
    /// We asked to leave, so the engine's `Left` needs no explanation.
    leaving: bool,
    /// Join as soon as the devices are known (the command line gave a room).
    join_when_ready: bool,
    /// The in-call device window is showing.
    devices_open: bool,
    milestones: Milestones,
    /// The share picker, while it is open.
    picker: Option<SharePicker>,
    /// Our own window's X11 id, never offered in the picker (no endless mirror).
    own_window: Option<u32>,
    /// What we are sharing, by the picker's name for it.
    sharing: Option<String>,
    /// The share the person clicked in the strip to see large.
    pinned_share: Option<String>,
    /// The share shown at its actual size.
    actual_share: Option<String>,
}

impl<B: CallBackend> MeshcallUi<B> {
    /// A window showing the lobby; with `join_at_once`, it joins `settings.room` as soon as
    /// the devices are known.
    pub fn new(backend: B, settings: Settings, join_at_once: bool) -> Self {
        Self {
            backend,
            settings,
            screen: Screen::Lobby,
            devices: None,
            banners: Banners::default(),
            lobby: LobbyState::default(),
            textures: VideoTextures::default(),
            speaking: HashSet::new(),
            hosted_base: None,
            chat_draft: String::new(),
            leaving: false,
            join_when_ready: join_at_once,
            devices_open: false,
            milestones: Milestones::default(),
            picker: None,
            own_window: None,
            sharing: None,
            pinned_share: None,
            actual_share: None,
        }
    }

    /// The devices the backend should use for `settings`.
    pub fn device_choice(settings: &Settings) -> DeviceChoice {
        DeviceChoice {
            video: settings.video_choice(),
            audio: settings.audio_choice(),
            speaker: settings.speaker_choice(),
            name: settings.name.clone(),
            camera_on: settings.camera_on,
            mic_on: settings.mic_on,
        }
    }

    /// The backend (tests read what it was asked).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably (tests feed it notices).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Whether the call screen is showing.
    pub fn in_call(&self) -> bool {
        matches!(self.screen, Screen::Call(_))
    }

    /// The banners showing now.
    pub fn banners(&self) -> &Banners {
        &self.banners
    }

    /// The lobby's state.
    pub fn lobby(&self) -> &LobbyState {
        &self.lobby
    }

    /// Tells the window its own X11 id, which the share picker leaves out.
    pub fn set_own_window(&mut self, id: Option<u32>) {
        self.own_window = id;
    }

    /// Whether the share picker is open.
    pub fn picker_open(&self) -> bool {
        self.picker.is_some()
    }

    /// What we are sharing now, by name.
    pub fn sharing(&self) -> Option<&str> {
        self.sharing.as_deref()
    }

    /// The member whose share shows at its actual size (the others are fitted).
    pub fn actual_share(&self) -> Option<&str> {
        self.actual_share.as_deref()
    }

    /// Video textures alive now.
    pub fn texture_count(&self) -> usize {
        self.textures.len()
    }

    /// Draws one frame.
    pub fn ui(&mut self, ui: &mut Ui) {
        let ctx = ui.ctx().clone();
        while let Some(notice) = self.backend.poll() {
            self.on_notice(&ctx, notice);
        }
        self.refresh_media(&ctx);
        match &self.screen {
            Screen::Lobby => self.lobby_ui(ui),
            Screen::Call(_) => self.call_ui(ui),
        }
        self.schedule_repaint(&ctx);
        self.milestones.reached("first frame drawn");
    }

    fn on_notice(&mut self, ctx: &egui::Context, notice: Notice) {
        match notice {
            Notice::Engine(event) => self.on_event(event),
            Notice::Devices(lists) => self.on_devices(lists),
            Notice::DeviceProblem(p) => {
                let (text, detail) = device_problem_text(&p);
                self.banners.push_detailed(BannerKind::Error, text, detail);
            }
            Notice::ServerStarted { url, lan } => {
                let whom = if lan {
                    "others on your network can join too"
                } else {
                    "on this computer only"
                };
                self.banners.push(
                    BannerKind::Info,
                    format!(
                        "No server was running, so meshcall is hosting the room at {url} ({whom})."
                    ),
                );
                self.hosted_base = Some(url);
            }
            Notice::ServerProblem(p) => self.banners.push(BannerKind::Error, p),
            Notice::ScreenSources(listing) => self.on_screen_sources(ctx, listing),
            Notice::ScreenShare(status) => self.on_share_status(status),
        }
    }

    fn on_screen_sources(
        &mut self,
        ctx: &egui::Context,
        listing: Result<Vec<ShareableSource>, String>,
    ) {
        // A listing that comes after the picker closed is of no use.
        if let Some(picker) = &mut self.picker {
            picker.set_listing(ctx, listing);
        }
    }

    fn on_share_status(&mut self, status: ShareStatus) {
        match status {
            ShareStatus::Sharing { name } => {
                self.banners.clear_kind(BannerKind::ShareFailed);
                self.sharing = Some(name);
            }
            ShareStatus::Stopped => self.sharing = None,
            ShareStatus::Failed(reason) => {
                let text = if self.sharing.take().is_some() {
                    format!("Your screen share stopped: {reason}.")
                } else {
                    format!("Your screen could not be shared: {reason}.")
                };
                self.banners.clear_kind(BannerKind::ShareFailed);
                self.banners.push(BannerKind::ShareFailed, text);
            }
        }
    }

    fn on_devices(&mut self, lists: DeviceLists) {
        if let CameraPick::Camera(i) = self.settings.camera
            && !lists.cameras.iter().any(|c| c.index == i)
        {
            self.settings.camera = CameraPick::TestPattern;
            self.lobby.notice = Some("No camera found, so the test pattern is used.".into());
        }
        self.devices = Some(lists);
        self.backend
            .request(Request::UseDevices(Self::device_choice(&self.settings)));
        if std::mem::take(&mut self.join_when_ready) {
            self.join(false);
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Joined {
                room,
                self_id,
                members,
                chat,
            } => {
                self.lobby.joining = false;
                self.lobby.error = None;
                self.lobby.need_passcode = false;
                self.settings.room = room.clone();
                self.banners.clear_kind(BannerKind::Reconnecting);
                self.screen = Screen::Call(CallModel::new(room, self_id, members, chat));
                self.devices_open = false;
                self.milestones.reached("joined");
            }
            Event::JoinFailed { code, message } => {
                self.lobby.joining = false;
                self.screen = Screen::Lobby;
                self.lobby.error = Some(match code {
                    Some(ErrorCode::WrongPasscode) => {
                        let first = !self.lobby.need_passcode;
                        self.lobby.need_passcode = true;
                        if first && self.lobby.passcode.is_empty() {
                            "This room has a passcode. Type it and join again.".to_owned()
                        } else {
                            "Wrong passcode. Check it and try again.".to_owned()
                        }
                    }
                    Some(ErrorCode::RoomFull) => {
                        "This room is full. Try again later or start a new room.".to_owned()
                    }
                    _ => message,
                });
            }
            Event::Rejoined { self_id } => {
                if let Screen::Call(model) = &mut self.screen {
                    model.self_id = self_id;
                }
            }
            Event::MemberUpdated(member) => {
                if let Screen::Call(model) = &mut self.screen {
                    model.upsert(member);
                }
            }
            Event::MemberLeft { id } => {
                if let Screen::Call(model) = &mut self.screen {
                    model.remove(&id);
                }
                self.textures.remove(&id);
                self.textures.remove(&screen_key(&id));
            }
            Event::Chat(msg) => {
                if let Screen::Call(model) = &mut self.screen {
                    model.add_chat(msg);
                }
            }
            Event::Stats { id, stats } => {
                if let Screen::Call(model) = &mut self.screen {
                    model.add_stats(&id, &stats);
                }
            }
            Event::Signaling(state) => {
                if let Screen::Call(model) = &mut self.screen {
                    model.signaling = state.clone();
                }
                match state {
                    ConnectionState::Connected => self.banners.clear_kind(BannerKind::Reconnecting),
                    ConnectionState::Reconnecting { .. } => self.banners.push(
                        BannerKind::Reconnecting,
                        "Lost the connection to the server — reconnecting… (the call goes on meanwhile)",
                    ),
                    ConnectionState::Closed { .. } => {
                        self.banners.clear_kind(BannerKind::Reconnecting);
                    }
                }
            }
            Event::Warning(w) => self.banners.push(BannerKind::Error, w),
            Event::DeviceFailed { kind, message } => {
                // The session has stopped that capture and the room was told; the toggle
                // shows the truth, and pressing it is the retry.
                match kind {
                    DeviceKind::Camera => self.settings.camera_on = false,
                    DeviceKind::Microphone => self.settings.mic_on = false,
                }
                let banner = BannerKind::DeviceFailed(kind);
                self.banners.clear_kind(banner);
                self.banners
                    .push(banner, device_failed_text(kind, &message));
            }
            Event::Left { reason } => {
                self.lobby.joining = false;
                let was_in_call = self.in_call();
                self.screen = Screen::Lobby;
                self.textures.retain(|k| k == SELF_KEY);
                // A share ends with its call.
                self.picker = None;
                self.sharing = None;
                self.pinned_share = None;
                self.actual_share = None;
                self.banners.clear_kind(BannerKind::Reconnecting);
                if was_in_call && !std::mem::take(&mut self.leaving) {
                    self.banners
                        .push(BannerKind::Error, format!("The call ended: {reason}."));
                }
            }
        }
    }

    /// New frames into textures; who is speaking.
    fn refresh_media(&mut self, ctx: &egui::Context) {
        if self.settings.camera_on {
            if let Some(frame) = self.backend.preview() {
                self.textures.update(ctx, SELF_KEY, frame);
                self.milestones.reached("self-preview shown");
            }
        } else {
            self.textures.remove(SELF_KEY);
        }
        self.speaking.clear();
        if self.backend.mic_level() > SPEAKING_LEVEL {
            self.speaking.insert(SELF_KEY.to_owned());
        }
        if let Screen::Call(model) = &self.screen {
            let ids: Vec<(String, bool)> = model
                .members
                .iter()
                .map(|m| (m.member.id.clone(), m.member.screen))
                .collect();
            for (id, screen) in ids {
                if let Some(frame) = self.backend.take_frame(&id) {
                    self.textures.update(ctx, &id, frame);
                    self.milestones.reached("remote video shown");
                }
                // A share's frames stop when nothing on it changes, so its texture stays
                // until the share ends rather than counting as stalled.
                if !screen {
                    self.textures.remove(&screen_key(&id));
                } else if let Some(frame) = self.backend.take_screen_frame(&id) {
                    self.textures.update(ctx, &screen_key(&id), frame);
                }
                if self.backend.level(&id) > SPEAKING_LEVEL {
                    self.speaking.insert(id);
                }
            }
        }
    }

    fn schedule_repaint(&self, ctx: &egui::Context) {
        // Remote frames, notices and speaking changes wake us from the backend; only our
        // own live camera and the lobby's meter need a clock.
        let self_view = self.settings.camera_on && self.textures.get(SELF_KEY).is_some();
        if self_view {
            ctx.request_repaint_after(SELF_VIEW_FRAME);
        } else if matches!(self.screen, Screen::Lobby) && self.settings.mic_on {
            ctx.request_repaint_after(METER_FRAME);
        }
    }

    fn lobby_ui(&mut self, ui: &mut Ui) {
        let preview = self.textures.get(SELF_KEY).map(|t| (t.id(), t.size()));
        let mut action = None;
        let mut dismissed = None;
        egui::CentralPanel::default().show(ui, |ui| {
            if !self.banners.is_empty() {
                dismissed = self.banners.show(ui);
            }
            egui::ScrollArea::vertical().show(ui, |ui| {
                action = lobby::show(
                    ui,
                    LobbyView {
                        settings: &mut self.settings,
                        state: &mut self.lobby,
                        devices: self.devices.as_ref(),
                        preview,
                        mic_level: self.backend.mic_level(),
                    },
                );
            });
        });
        if let Some(i) = dismissed {
            self.banners.dismiss(i);
        }
        match action {
            Some(LobbyAction::Join) => self.join(false),
            Some(LobbyAction::NewRoom) => self.join(true),
            Some(LobbyAction::DevicesChanged) => self
                .backend
                .request(Request::UseDevices(Self::device_choice(&self.settings))),
            Some(LobbyAction::ToggleMic) => self.toggle_mic(),
            Some(LobbyAction::ToggleCamera) => self.toggle_camera(),
            Some(LobbyAction::RefreshDevices) => self.backend.request(Request::RefreshDevices),
            None => {}
        }
    }

    fn join(&mut self, new_room: bool) {
        self.lobby.error = None;
        let Some(name) = validate_name(&self.settings.name) else {
            self.lobby.error = Some(if self.settings.name.trim().is_empty() {
                "Type your name first.".to_owned()
            } else {
                "That name cannot be used (at most 64 characters, no control characters)."
                    .to_owned()
            });
            return;
        };
        self.settings.name = name.clone();
        let room = if new_room {
            self.lobby.need_passcode = false;
            self.lobby.passcode.clear();
            None
        } else {
            match parse_room_input(&self.settings.room) {
                Ok(input) => {
                    if let Some(server) = input.server {
                        self.settings.server = server;
                    }
                    self.settings.room = input.code.clone();
                    Some(input.code)
                }
                Err(e) => {
                    self.lobby.error = Some(e);
                    return;
                }
            }
        };
        let typed = if new_room {
            &self.lobby.new_room_passcode
        } else {
            &self.lobby.passcode
        };
        let passcode = Some(typed.trim().to_owned()).filter(|p| !p.is_empty());
        self.lobby.joining = true;
        self.banners.clear_kind(BannerKind::Error);
        self.milestones.join_sent();
        self.backend.request(Request::Join {
            params: JoinParams {
                server: self.settings.server.trim().to_owned(),
                room,
                name,
                passcode,
                audio: self.settings.mic_on,
                video: self.settings.camera_on,
                relay_only: self.settings.relay_only,
            },
            lan: self.settings.lan,
        });
    }

    fn toggle_mic(&mut self) {
        self.settings.mic_on = !self.settings.mic_on;
        if self.settings.mic_on {
            // A retry: if it fails again, a new banner says so.
            self.banners
                .clear_kind(BannerKind::DeviceFailed(DeviceKind::Microphone));
        }
        self.backend.request(Request::SetMic(self.settings.mic_on));
    }

    fn toggle_camera(&mut self) {
        self.settings.camera_on = !self.settings.camera_on;
        if self.settings.camera_on {
            self.banners
                .clear_kind(BannerKind::DeviceFailed(DeviceKind::Camera));
        }
        self.backend
            .request(Request::SetCamera(self.settings.camera_on));
    }

    fn call_ui(&mut self, ui: &mut Ui) {
        let (mic, camera, share) = ui.ctx().input_mut(|i| {
            (
                i.consume_shortcut(&MIC_SHORTCUT),
                i.consume_shortcut(&CAMERA_SHORTCUT),
                i.consume_shortcut(&SHARE_SHORTCUT),
            )
        });
        let camera_available = self.settings.camera != CameraPick::None;
        let mic_available = self.settings.mic != MicPick::None;
        let Screen::Call(model) = &self.screen else {
            return;
        };
        let mut actions = call_view::show(
            ui,
            CallView {
                model,
                banners: &self.banners,
                textures: &self.textures,
                self_name: &self.settings.name,
                mic_on: self.settings.mic_on,
                camera_on: self.settings.camera_on,
                camera_available,
                mic_available,
                speaking: &self.speaking,
                draft: &mut self.chat_draft,
                sharing: self.sharing.as_deref(),
                pinned_share: self.pinned_share.as_deref(),
                actual_share: self.actual_share.as_deref(),
            },
        );
        if mic && mic_available {
            actions.push(CallAction::Bar(BarAction::ToggleMic));
        }
        if camera && camera_available {
            actions.push(CallAction::Bar(BarAction::ToggleCamera));
        }
        let ctx = ui.ctx().clone();
        if share {
            // The shortcut undoes whatever it started: it stops a share, closes the picker.
            if self.sharing.is_some() {
                actions.push(CallAction::Bar(BarAction::StopShare));
            } else if self.picker.is_some() {
                self.picker = None;
            } else {
                actions.push(CallAction::Bar(BarAction::Share));
            }
        }
        if let Some(action) = self.picker.as_ref().and_then(|p| p.show(&ctx)) {
            self.on_picker(action);
        }
        let device_action = if self.devices_open {
            device_window::show(
                &ctx,
                &mut self.devices_open,
                &mut self.settings,
                self.devices.as_ref(),
            )
        } else {
            None
        };
        match device_action {
            Some(DeviceAction::Changed) => self
                .backend
                .request(Request::UseDevices(Self::device_choice(&self.settings))),
            Some(DeviceAction::Refresh) => self.backend.request(Request::RefreshDevices),
            None => {}
        }
        for action in actions {
            self.apply(&ctx, action);
        }
    }

    fn apply(&mut self, ctx: &egui::Context, action: CallAction) {
        match action {
            CallAction::Bar(BarAction::ToggleMic) => self.toggle_mic(),
            CallAction::Bar(BarAction::ToggleCamera) => self.toggle_camera(),
            CallAction::Bar(BarAction::ToggleChat) => {
                if let Screen::Call(model) = &mut self.screen {
                    let open = !model.chat_open;
                    model.set_chat_open(open);
                }
            }
            CallAction::Bar(BarAction::ToggleDevices) => self.devices_open = !self.devices_open,
            CallAction::Bar(BarAction::Leave) => {
                self.leaving = true;
                self.backend.request(Request::Engine(Command::Leave));
            }
            CallAction::Bar(BarAction::CopyLink) => {
                if let Screen::Call(model) = &self.screen {
                    let base = self.hosted_base.as_deref().unwrap_or(&self.settings.server);
                    ctx.copy_text(invite_link(base, &model.room));
                }
            }
            CallAction::SendChat(text) => {
                self.backend.request(Request::Engine(Command::Chat(text)));
            }
            CallAction::DismissBanner(i) => self.banners.dismiss(i),
            CallAction::Bar(BarAction::Share) => self.open_picker(),
            CallAction::Bar(BarAction::StopShare) => {
                // Shown as stopped at once; the session's `Stopped` only confirms it.
                self.sharing = None;
                self.backend.request(Request::StopScreenShare);
            }
            CallAction::ToggleShareSize(id) => {
                self.actual_share = match self.actual_share.take() {
                    Some(shown) if shown == id => None,
                    _ => Some(id),
                };
            }
            CallAction::Spotlight(id) => {
                self.actual_share = None;
                self.pinned_share = Some(id);
            }
        }
    }

    fn open_picker(&mut self) {
        self.picker = Some(SharePicker::waiting());
        self.list_screen_sources();
    }

    fn list_screen_sources(&mut self) {
        self.backend.request(Request::ListScreenSources {
            exclude: self.own_window.into_iter().collect(),
        });
    }

    fn on_picker(&mut self, action: PickerAction) {
        match action {
            PickerAction::Share(i) => {
                let Some(source) = self.picker.as_ref().and_then(|p| p.source(i)) else {
                    return;
                };
                let source = ScreenSource::X11 {
                    display: None,
                    target: source.target,
                };
                self.picker = None;
                self.backend.request(Request::ShareScreen(source));
            }
            PickerAction::Cancel => self.picker = None,
            PickerAction::Refresh => {
                if let Some(picker) = &mut self.picker {
                    picker.refresh();
                }
                self.list_screen_sources();
            }
        }
    }
}

/// A wake-up for the backend: asks egui to draw again.
pub fn repaint_waker(ctx: &egui::Context) -> Arc<dyn Fn() + Send + Sync> {
    let ctx = ctx.clone();
    Arc::new(move || ctx.request_repaint())
}
