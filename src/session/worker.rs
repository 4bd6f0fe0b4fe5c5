//! The one task that owns the engine, the capture pipelines and the embedded server for
//! the desktop app. Device work that blocks (opening a camera, a sound device) runs on
//! tokio's blocking pool so neither this task nor the UI stalls on it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::embedded_server::{EmbeddedServer, ServerPlan, plan_server};
use super::{
    DeviceChoice, DeviceLists, Notice, Request, SPEAKING_LEVEL, ShareStatus, Shared, lock,
};
use crate::engine::{Command, DeviceKind, Engine, EngineConfig, Event};
use crate::media::pipeline::{
    AudioChoice, LocalPipelines, RemoteMedia, ScreenPipeline, VideoChoice, VideoFormat,
};
use crate::media::video::screen::{
    ListOptions, ScreenConfig, ScreenSource, ScreenTarget, list_sources, window_title,
};

type Wake = Arc<dyn Fn() + Send + Sync>;

struct Worker {
    config: EngineConfig,
    devices: DeviceChoice,
    notices: mpsc::Sender<Notice>,
    shared: Arc<Shared>,
    wake: Wake,
    engine: Option<Engine>,
    video: Option<LocalPipelines>,
    audio: Option<LocalPipelines>,
    /// Between sending `join` and hearing `left` (or the join failing).
    in_call: bool,
    server: Option<EmbeddedServer>,
    /// Who was speaking at the last look (our own id is "").
    speaking: BTreeSet<String>,
    /// Our screen share while one runs.
    screen: Option<ScreenPipeline>,
}

pub(super) async fn run(
    config: EngineConfig,
    devices: DeviceChoice,
    mut requests: mpsc::Receiver<Request>,
    notices: mpsc::Sender<Notice>,
    shared: Arc<Shared>,
    wake: Wake,
) {
    let mut w = Worker {
        config,
        devices,
        notices,
        shared,
        wake,
        engine: None,
        video: None,
        audio: None,
        in_call: false,
        server: None,
        speaking: BTreeSet::new(),
        screen: None,
    };
    w.list_devices();
    w.build().await;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            request = requests.recv() => match request {
                Some(r) => w.handle(r).await,
                None => break,
            },
            Some(event) = next_event(&mut w.engine) => w.on_event(event).await,
            _ = tick.tick() => {
                w.check_speaking();
                w.check_share().await;
            }
        }
    }
    w.close().await;
}

async fn next_event(engine: &mut Option<Engine>) -> Option<Event> {
    match engine {
        Some(e) => e.next_event().await,
        None => std::future::pending().await,
    }
}

impl Worker {
    async fn handle(&mut self, request: Request) {
        match request {
            Request::UseDevices(choice) if choice == self.devices => {}
            Request::UseDevices(choice) => self.switch_devices(choice).await,
            Request::Join { params, lan } => self.join(params, lan).await,
            Request::SetMic(on) => {
                self.devices.mic_on = on;
                // After a failure the microphone is closed: unmuting is the retry.
                if on && !self.restart_if_stopped(DeviceKind::Microphone).await {
                    return;
                }
                if self.in_call {
                    self.send(Command::SetMic(on)).await;
                }
            }
            Request::SetCamera(on) => {
                self.devices.camera_on = on;
                if on && !self.restart_if_stopped(DeviceKind::Camera).await {
                    return;
                } else if !on {
                    self.stop_video().await;
                }
                if self.in_call {
                    self.send(Command::SetCamera(on)).await;
                }
            }
            Request::Engine(command) => self.send(command).await,
            Request::RefreshDevices => self.list_devices(),
            Request::ListScreenSources { exclude } => self.list_screen_sources(exclude),
            Request::ShareScreen(source) => self.share_screen(source).await,
            Request::StopScreenShare => {
                self.stop_share().await;
                self.notify(Notice::ScreenShare(ShareStatus::Stopped)).await;
            }
        }
    }

    async fn send(&self, command: Command) {
        if let Some(engine) = &self.engine {
            engine.send(command).await;
        }
    }

    async fn notify(&self, notice: Notice) {
        // The UI may be gone while we tidy up; nothing to tell then.
        let _ = self.notices.send(notice).await;
        (self.wake)();
    }

    async fn on_event(&mut self, event: Event) {
        match &event {
            Event::JoinFailed { .. } | Event::Left { .. } => {
                self.in_call = false;
                // Leaving the call ends the share (the engine has dropped it already).
                if self.screen.is_some() {
                    self.stop_share().await;
                    self.notify(Notice::ScreenShare(ShareStatus::Stopped)).await;
                }
            }
            Event::DeviceFailed { kind, .. } => self.close_failed(*kind).await,
            _ => {}
        }
        self.notify(Notice::Engine(event)).await;
    }

    /// Closes what is left of a source that stopped by itself (the engine has already
    /// turned its track off and told the room), so turning it on again opens it afresh.
    async fn close_failed(&mut self, kind: DeviceKind) {
        match kind {
            DeviceKind::Camera => {
                self.devices.camera_on = false;
                self.stop_video().await;
            }
            DeviceKind::Microphone => {
                self.devices.mic_on = false;
                self.stop_audio().await;
            }
        }
    }

    /// Opens the source of `kind` again when it is not running (it failed, or never
    /// started). False when it still cannot: the engine then hears of it as a failed
    /// device, and the window shows the toggle off again with the reason.
    async fn restart_if_stopped(&mut self, kind: DeviceKind) -> bool {
        let (pipeline, video, audio) = match kind {
            DeviceKind::Camera => (&self.video, self.devices.video.clone(), AudioChoice::None),
            DeviceKind::Microphone => (&self.audio, VideoChoice::None, self.devices.audio.clone()),
        };
        let nothing_chosen = video == VideoChoice::None && audio == AudioChoice::None;
        if nothing_chosen || pipeline.as_ref().is_some_and(LocalPipelines::is_running) {
            return true;
        }
        let Some(p) = self.launch_pipeline(video, audio).await else {
            return false;
        };
        if !p.is_running() {
            if let Some(engine) = &self.engine {
                engine
                    .media_input()
                    .device_failed(kind, p.problems.join("; "));
            }
            return false;
        }
        let (slot, stats) = match kind {
            DeviceKind::Camera => (&mut self.video, &self.shared.video_out),
            DeviceKind::Microphone => (&mut self.audio, &self.shared.audio_out),
        };
        *lock(stats) = Some(Arc::clone(&p.stats));
        stop(slot.replace(p)).await;
        true
    }

    fn list_devices(&self) {
        let notices = self.notices.clone();
        let wake = Arc::clone(&self.wake);
        tokio::task::spawn_blocking(move || {
            let cameras = crate::media::video::list_cameras();
            let (audio, audio_problem) = match crate::media::audio::devices::list() {
                Ok(a) => (a, None),
                Err(e) => (Default::default(), Some(e.to_string())),
            };
            let lists = DeviceLists {
                cameras,
                audio,
                audio_problem,
            };
            if notices.blocking_send(Notice::Devices(lists)).is_ok() {
                wake();
            }
        });
    }

    /// Lists screens and windows off this task: X11 round trips and thumbnails take a while.
    fn list_screen_sources(&self, exclude: Vec<u32>) {
        let notices = self.notices.clone();
        let wake = Arc::clone(&self.wake);
        tokio::task::spawn_blocking(move || {
            let options = ListOptions {
                exclude,
                ..Default::default()
            };
            let sources = list_sources(None, &options).map_err(|e| e.to_string());
            if notices
                .blocking_send(Notice::ScreenSources(sources))
                .is_ok()
            {
                wake();
            }
        });
    }

    /// The speaker output, the engine and capture for `self.devices`, once at start.
    async fn build(&mut self) {
        let speaker = self.devices.speaker.clone();
        let remote = match tokio::task::spawn_blocking(move || RemoteMedia::new(&speaker)).await {
            Ok(r) => r,
            Err(e) => {
                self.notify(Notice::DeviceProblem(format!("speaker: {e}")))
                    .await;
                return;
            }
        };
        if let Some(problem) = remote.problem() {
            self.notify(Notice::DeviceProblem(problem)).await;
        }
        remote.set_on_frame(Arc::clone(&self.wake));
        self.engine = Some(Engine::spawn_decoding(self.config.clone(), &remote));
        *lock(&self.shared.remote) = Some(remote);
        self.start_audio().await;
        if self.devices.camera_on {
            self.start_video().await;
        }
    }

    /// Starts capture and tells the window about any source that could not start.
    async fn start_pipeline(
        &self,
        video: VideoChoice,
        audio: AudioChoice,
    ) -> Option<LocalPipelines> {
        let p = self.launch_pipeline(video, audio).await?;
        for problem in &p.problems {
            self.notify(Notice::DeviceProblem(problem.clone())).await;
        }
        Some(p)
    }

    /// Starts capture off the async threads; the caller decides what to say about problems.
    async fn launch_pipeline(
        &self,
        video: VideoChoice,
        audio: AudioChoice,
    ) -> Option<LocalPipelines> {
        let engine = self.engine.as_ref()?;
        let input = engine.media_input();
        let name = self.devices.name.clone();
        let echo = if matches!(audio, AudioChoice::Mic(_)) {
            lock(&self.shared.remote)
                .as_ref()
                .map(RemoteMedia::echo_reference)
        } else {
            None
        };
        let started = tokio::task::spawn_blocking(move || {
            LocalPipelines::start(&input, &name, &video, &VideoFormat::default(), &audio, echo)
        })
        .await;
        match started {
            Ok(p) => Some(p),
            Err(e) => {
                self.notify(Notice::DeviceProblem(format!("capture: {e}")))
                    .await;
                None
            }
        }
    }

    /// New devices, in the lobby or in a call. Our tracks stay bound to every peer; only
    /// what feeds them changes, so nobody renegotiates (webrtc-rs cannot replace a track
    /// anyway): a new encoder starts with a keyframe, and the speaker keeps everyone's
    /// buffered audio.
    async fn switch_devices(&mut self, choice: DeviceChoice) {
        let sending = |w: &Self| {
            (
                w.devices.mic_on && w.audio.is_some(),
                w.devices.camera_on && w.video.is_some(),
            )
        };
        let before = sending(self);
        let old = std::mem::replace(&mut self.devices, choice);
        // A running microphone's echo canceller follows the new speaker by itself.
        if old.speaker != self.devices.speaker {
            self.reopen_speaker().await;
        }
        if old.audio != self.devices.audio {
            self.stop_audio().await;
            self.start_audio().await;
        }
        // The test pattern shows our name.
        if old.video != self.devices.video
            || old.name != self.devices.name
            || old.camera_on != self.devices.camera_on
        {
            self.stop_video().await;
            if self.devices.camera_on {
                self.start_video().await;
            }
        }
        if !self.in_call {
            return;
        }
        // Others are told what we can actually send now.
        let (mic, camera) = sending(self);
        if mic != before.0 {
            self.send(Command::SetMic(mic)).await;
        }
        if camera != before.1 {
            self.send(Command::SetCamera(camera)).await;
        }
    }

    async fn reopen_speaker(&self) {
        let Some(remote) = lock(&self.shared.remote).clone() else {
            return;
        };
        let speaker = self.devices.speaker.clone();
        match tokio::task::spawn_blocking(move || remote.set_speaker(&speaker)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.notify(Notice::DeviceProblem(e)).await,
            Err(e) => {
                self.notify(Notice::DeviceProblem(format!("speaker: {e}")))
                    .await;
            }
        }
    }

    async fn start_video(&mut self) {
        if self.devices.video == VideoChoice::None {
            return;
        }
        let p = self
            .start_pipeline(self.devices.video.clone(), AudioChoice::None)
            .await;
        *lock(&self.shared.video_out) = p.as_ref().map(|p| Arc::clone(&p.stats));
        self.video = p;
    }

    async fn start_audio(&mut self) {
        if self.devices.audio == AudioChoice::None {
            return;
        }
        let p = self
            .start_pipeline(VideoChoice::None, self.devices.audio.clone())
            .await;
        *lock(&self.shared.audio_out) = p.as_ref().map(|p| Arc::clone(&p.stats));
        self.audio = p;
    }

    async fn stop_video(&mut self) {
        *lock(&self.shared.video_out) = None;
        stop(self.video.take()).await;
    }

    async fn stop_audio(&mut self) {
        *lock(&self.shared.audio_out) = None;
        stop(self.audio.take()).await;
    }

    async fn join(&mut self, mut params: crate::engine::JoinParams, lan: bool) {
        if let ServerPlan::StartLocal { port } = plan_server(&params.server).await {
            if let Some(old) = self.server.take() {
                old.stop().await;
            }
            match EmbeddedServer::start(port, lan).await {
                Ok(server) => {
                    let url = server.public_base();
                    self.server = Some(server);
                    self.notify(Notice::ServerStarted { url, lan }).await;
                }
                Err(e) => self.notify(Notice::ServerProblem(e)).await,
            }
        }
        params.audio = self.devices.mic_on && self.audio.is_some();
        params.video = self.devices.camera_on && self.video.is_some();
        self.in_call = true;
        self.send(Command::Join(params)).await;
    }

    fn check_speaking(&mut self) {
        let mut now = BTreeSet::new();
        if let Some(remote) = lock(&self.shared.remote).clone() {
            for (id, member) in remote.members() {
                if member.audio_level() > SPEAKING_LEVEL {
                    now.insert(id);
                }
            }
        }
        let mic = lock(&self.shared.audio_out)
            .as_ref()
            .map_or(0.0, |s| s.mic_rms());
        if self.devices.mic_on && mic > SPEAKING_LEVEL {
            now.insert(String::new());
        }
        if now != self.speaking {
            self.speaking = now;
            (self.wake)();
        }
    }

    /// Starts sharing `source` (a running share is replaced) off this task, then tells
    /// the engine and the window.
    async fn share_screen(&mut self, source: ScreenSource) {
        let input = self.engine.as_ref().map(Engine::media_input);
        let status = match (input, self.in_call) {
            (Some(input), true) => {
                self.stop_share().await;
                // Both talk to the X server, so both stay off this task.
                let started = tokio::task::spawn_blocking(move || {
                    let name = share_name(&source);
                    ScreenPipeline::start(&input, ScreenConfig::new(source)).map(|p| (p, name))
                })
                .await;
                match started {
                    Ok(Ok((p, name))) => {
                        self.screen = Some(p);
                        self.send(Command::SetScreen(true)).await;
                        ShareStatus::Sharing { name }
                    }
                    Ok(Err(e)) => ShareStatus::Failed(e.to_string()),
                    Err(e) => ShareStatus::Failed(format!("screen capture: {e}")),
                }
            }
            _ => ShareStatus::Failed("join a call to share your screen".into()),
        };
        self.notify(Notice::ScreenShare(status)).await;
    }

    /// Stops a running share (the engine stops sending it; the m-section stays).
    async fn stop_share(&mut self) {
        if let Some(p) = self.screen.take() {
            self.send(Command::SetScreen(false)).await;
            let _ = tokio::task::spawn_blocking(move || drop(p)).await;
        }
    }

    /// A share whose source stopped by itself (the window closed) ends, and says why.
    async fn check_share(&mut self) {
        let failure = self.screen.as_ref().and_then(|p| p.stats.failure());
        if let Some(why) = failure {
            self.stop_share().await;
            self.notify(Notice::ScreenShare(ShareStatus::Failed(why)))
                .await;
        }
    }

    async fn close(mut self) {
        self.stop_share().await;
        self.stop_video().await;
        self.stop_audio().await;
        if let Some(engine) = self.engine.take() {
            engine.shutdown().await;
        }
        *lock(&self.shared.remote) = None;
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }
}

/// Stops capture threads off the async threads (dropping joins them).
async fn stop(pipelines: Option<LocalPipelines>) {
    if let Some(p) = pipelines {
        let _ = tokio::task::spawn_blocking(move || drop(p)).await;
    }
}

/// What "You are sharing …" names: the picker's words for the source, a window by its
/// title (its id only when it has none).
fn share_name(source: &ScreenSource) -> String {
    match source {
        ScreenSource::Test { .. } => "Test screen".to_owned(),
        ScreenSource::X11 { display, target } => match target {
            ScreenTarget::Screen => "Entire screen".to_owned(),
            ScreenTarget::Monitor { width, height, .. } => format!("Monitor {width}x{height}"),
            ScreenTarget::Window { id } => {
                window_title(display.as_deref(), *id).unwrap_or_else(|| format!("Window 0x{id:x}"))
            }
        },
    }
}
