//! The desktop app's side of a call that is not UI: a tokio runtime, the engine, local
//! capture, the device lists and the embedded signaling server. The UI talks to it only
//! through [`Request`]s and [`Notice`]s and a few non-blocking reads ([`Session`]); nothing
//! here waits on the UI and nothing the UI calls here waits on the network or a device.

mod embedded_server;
mod worker;

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

pub use embedded_server::{ServerPlan, invite_link, plan_server};

use crate::engine::{Command, EngineConfig, Event, JoinParams};
use crate::media::audio::devices::AudioDevices;
use crate::media::pipeline::{AudioChoice, OutgoingStats, RemoteMedia, Speaker, VideoChoice};
use crate::media::video::screen::{ScreenSource, ShareableSource};
use crate::media::video::{CameraInfo, I420Frame};

/// Which devices to use.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceChoice {
    /// The video source.
    pub video: VideoChoice,
    /// The audio source.
    pub audio: AudioChoice,
    /// Where to play the call.
    pub speaker: Speaker,
    /// Our name, drawn into the test pattern.
    pub name: String,
    /// Whether the camera is on (off: it is not even opened).
    pub camera_on: bool,
    /// Whether the microphone is on (off: captured for the level meter, never sent).
    pub mic_on: bool,
}

/// Linear RMS above which someone counts as speaking (about -34 dBFS).
pub const SPEAKING_LEVEL: f32 = 0.02;

/// What the UI asks for.
#[derive(Debug, Clone)]
pub enum Request {
    /// Use these devices; in a call they are switched without leaving it.
    UseDevices(DeviceChoice),
    /// Join (or create) a room; starts the embedded server first when that is the plan.
    Join {
        /// What the engine joins with.
        params: JoinParams,
        /// Let other machines reach an embedded server (bind all interfaces).
        lan: bool,
    },
    /// Microphone on or off.
    SetMic(bool),
    /// Camera on or off: off also closes the camera.
    SetCamera(bool),
    /// Anything else the engine does (chat, leave, name).
    Engine(Command),
    /// List the devices again.
    RefreshDevices,
    /// List what can be shared (answered by [`Notice::ScreenSources`]); `exclude` holds
    /// window ids never to offer, our own window above all (no endless mirror).
    ListScreenSources {
        /// X11 window ids to leave out.
        exclude: Vec<u32>,
    },
    /// Start sharing this source (or switch to it); answered by [`Notice::ScreenShare`].
    ShareScreen(ScreenSource),
    /// Stop sharing.
    StopScreenShare,
}

/// Where our screen share stands.
#[derive(Debug, Clone, PartialEq)]
pub enum ShareStatus {
    /// Sharing; `name` is what the picker called the source ("Entire screen", a title).
    Sharing {
        /// For "You are sharing …".
        name: String,
    },
    /// Not sharing (stopped by us, or the call ended).
    Stopped,
    /// The share could not start or stopped by itself (the window closed, say).
    Failed(String),
}

/// The devices present.
#[derive(Debug, Clone, Default)]
pub struct DeviceLists {
    /// Cameras (the test pattern is not one of them).
    pub cameras: Vec<CameraInfo>,
    /// Microphones and speakers.
    pub audio: AudioDevices,
    /// Why audio devices could not be listed.
    pub audio_problem: Option<String>,
}

/// What the session tells the UI.
#[derive(Debug, Clone)]
pub enum Notice {
    /// From the engine.
    Engine(Event),
    /// The devices present.
    Devices(DeviceLists),
    /// A source or the speaker could not start; the call goes on without it.
    DeviceProblem(String),
    /// No server answered at the local address, so we started one.
    ServerStarted {
        /// The address it serves.
        url: String,
        /// Whether other machines can reach it.
        lan: bool,
    },
    /// The embedded server could not start.
    ServerProblem(String),
    /// What can be shared, or why nothing can (no X11 display, say).
    ScreenSources(Result<Vec<ShareableSource>, String>),
    /// Our screen share started, stopped or failed.
    ScreenShare(ShareStatus),
}

/// Numbers and frames the UI reads each frame, behind short locks only.
#[derive(Default)]
pub(crate) struct Shared {
    remote: Mutex<Option<RemoteMedia>>,
    video_out: Mutex<Option<Arc<OutgoingStats>>>,
    audio_out: Mutex<Option<Arc<OutgoingStats>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the call UI needs from whatever runs the call: the real [`Session`], or a fake
/// in tests.
pub trait CallBackend {
    /// Asks for something; never waits.
    fn request(&mut self, request: Request);
    /// The next notice, if one is waiting.
    fn poll(&mut self) -> Option<Notice>;
    /// Member `id`'s newest frame if it arrived since the last call.
    fn take_frame(&mut self, id: &str) -> Option<Arc<I420Frame>>;
    /// Member `id`'s newest screen-share frame if it arrived since the last call.
    fn take_screen_frame(&mut self, _id: &str) -> Option<Arc<I420Frame>> {
        None
    }
    /// How loud member `id` is now (linear RMS).
    fn level(&self, id: &str) -> f32;
    /// Our own camera's newest frame.
    fn preview(&self) -> Option<Arc<I420Frame>>;
    /// Our microphone's level now (linear RMS).
    fn mic_level(&self) -> f32;
}

/// The running session. Dropping it leaves any call, stops capture and the embedded
/// server, and ends every thread it started.
pub struct Session {
    requests: mpsc::Sender<Request>,
    notices: mpsc::Receiver<Notice>,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    worker: Option<tokio::task::JoinHandle<()>>,
}

impl Session {
    /// Starts the runtime and the worker with `devices`; `wake` is called whenever the UI
    /// has something new to show (a notice, a frame, someone starting to speak).
    pub fn start(
        config: EngineConfig,
        devices: DeviceChoice,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("meshcall-rt")
            .enable_all()
            .build()?;
        let (requests, request_rx) = mpsc::channel(64);
        let (notice_tx, notices) = mpsc::channel(1024);
        let shared = Arc::new(Shared::default());
        let worker = runtime.spawn(worker::run(
            config,
            devices,
            request_rx,
            notice_tx,
            Arc::clone(&shared),
            wake,
        ));
        Ok(Self {
            requests,
            notices,
            shared,
            runtime: Some(runtime),
            worker: Some(worker),
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Closing the request queue is the worker's signal to leave and tidy up.
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.requests, closed));
        if let (Some(runtime), Some(worker)) = (self.runtime.take(), self.worker.take()) {
            let _ = runtime.block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(5), worker).await
            });
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        }
    }
}

impl CallBackend for Session {
    fn request(&mut self, request: Request) {
        if let Err(e) = self.requests.try_send(request) {
            tracing::warn!("the call worker is not keeping up; dropped a request: {e}");
        }
    }

    fn poll(&mut self) -> Option<Notice> {
        self.notices.try_recv().ok()
    }

    fn take_frame(&mut self, id: &str) -> Option<Arc<I420Frame>> {
        let remote = lock(&self.shared.remote).clone()?;
        remote.member(id)?.take_new_frame()
    }

    fn take_screen_frame(&mut self, id: &str) -> Option<Arc<I420Frame>> {
        let remote = lock(&self.shared.remote).clone()?;
        remote.member(id)?.take_new_screen_frame()
    }

    fn level(&self, id: &str) -> f32 {
        let remote = lock(&self.shared.remote).clone();
        remote
            .and_then(|r| r.member(id))
            .map_or(0.0, |m| m.audio_level())
    }

    fn preview(&self) -> Option<Arc<I420Frame>> {
        let stats = lock(&self.shared.video_out).clone()?;
        lock(&stats.preview).clone()
    }

    fn mic_level(&self) -> f32 {
        lock(&self.shared.audio_out)
            .as_ref()
            .map_or(0.0, |s| s.mic_rms())
    }
}
