//! The headless participant (`meshcall join`): a real member without a window, for tests,
//! demos and load. It joins, sends a test pattern and/or tone (or real devices), follows a
//! schedule of mutes, and at the end leaves and reports what it received.

mod report;
mod screen_shot;
#[cfg(test)]
mod shaped_call;
mod sources;

use std::collections::{BTreeMap, HashMap};

use crate::engine::MemberStats;
use std::time::{Duration, Instant};

pub use report::{DeviceFailureReport, Latency, MediaState, PeerReport, Report, StateChange};

use crate::engine::{Command, DeviceKind, Engine, EngineConfig, Event, JoinParams};
use crate::media::pipeline::{AudioChoice, RemoteMedia, ScreenPipeline, Speaker, VideoChoice};
use crate::media::video::screen::{ScreenConfig, ScreenSource};
use sources::{SourceConfig, Sources};

/// Everything `meshcall join` is told.
#[derive(Debug, Clone)]
pub struct ParticipantConfig {
    /// Signaling server URL.
    pub server: String,
    /// Room to join; `None` creates one.
    pub room: Option<String>,
    /// Display name.
    pub name: String,
    /// Passcode.
    pub passcode: Option<String>,
    /// Video to send.
    pub video: VideoChoice,
    /// Audio to send.
    pub audio: AudioChoice,
    /// Where to play what we receive.
    pub speaker: Speaker,
    /// Stop after this long (`None`: until Ctrl-C).
    pub duration: Option<Duration>,
    /// Timed actions, by time since joining.
    pub schedule: Vec<(Duration, Command)>,
    /// Engine settings (ICE addresses, bitrates).
    pub engine: EngineConfig,
    /// A screen share to send, and when.
    pub screen: Option<ScreenPlan>,
    /// Where to write the last screen-share frame received (PPM), at the end.
    pub save_screen: Option<std::path::PathBuf>,
    /// Count complete video access units instead of decoding them (many members on few
    /// cores); `video_frames` then counts units, with no size or latency.
    pub count_only: bool,
}

/// A screen share the participant sends (`meshcall join --screen`).
#[derive(Debug, Clone)]
pub struct ScreenPlan {
    /// What to share.
    pub source: ScreenSource,
    /// When to start, after joining.
    pub start_at: Duration,
    /// When to stop (`None`: at the end).
    pub stop_at: Option<Duration>,
}

/// Why the participant could not run.
#[derive(Debug, thiserror::Error)]
pub enum ParticipantError {
    /// The join was refused or the server unreachable.
    #[error("could not join: {0}")]
    Join(String),
    /// The engine stopped unexpectedly.
    #[error("the call engine stopped unexpectedly")]
    EngineGone,
}

#[derive(Default)]
struct Seen {
    name: String,
    audio: bool,
    video: bool,
    screen: bool,
    /// When we last heard their share start (or joined, if they shared already).
    screen_since: Option<Instant>,
    /// ms from `screen_since` to their share's first decoded frame.
    screen_first_ms: Option<u64>,
    rtt_ms: Option<f64>,
    left: bool,
    /// The engine's last numbers for them.
    stats: MemberStats,
    /// Their video bitrate in the last samples (about one a second), for a 10 s mean.
    video_bps: std::collections::VecDeque<f64>,
    /// Their announced audio/video flags each time they changed.
    state_changes: Vec<StateChange>,
}

impl Seen {
    /// Takes in their announced flags, noting a change `at_ms` after we joined.
    fn announce(&mut self, audio: bool, video: bool, at_ms: u64) {
        if self.state_changes.is_empty() || (audio, video) != (self.audio, self.video) {
            self.state_changes.push(StateChange {
                at_ms,
                audio,
                video,
            });
        }
        self.audio = audio;
        self.video = video;
    }
}

/// Samples of the video bitrate averaged in the report (one a second: the last 10 s).
const KBPS_SAMPLES: usize = 10;

/// Runs one participant until the duration ends or `stop` completes; returns its report.
/// `on_joined` is called with the room code as soon as we are in.
pub async fn run(
    config: ParticipantConfig,
    stop: impl std::future::Future<Output = ()>,
    on_joined: impl FnOnce(&str),
) -> Result<Report, ParticipantError> {
    run_with(config, |_| {}, stop, on_joined).await
}

/// [`run`], with `prepare` given the engine before it joins (tests shape its link there).
async fn run_with(
    config: ParticipantConfig,
    prepare: impl FnOnce(&Engine),
    stop: impl std::future::Future<Output = ()>,
    on_joined: impl FnOnce(&str),
) -> Result<Report, ParticipantError> {
    let remote = RemoteMedia::new(&config.speaker);
    remote.set_count_only(config.count_only);
    let mut problems: Vec<String> = remote.problem().into_iter().collect();
    let mut engine = Engine::spawn_decoding(config.engine.clone(), &remote);
    prepare(&engine);
    let sent_join = Instant::now();
    engine
        .send(Command::Join(JoinParams {
            server: config.server.clone(),
            room: config.room.clone(),
            name: config.name.clone(),
            passcode: config.passcode.clone(),
            audio: config.audio != AudioChoice::None,
            video: config.video != VideoChoice::None,
            // `config.engine.relay_only` holds for every call already.
            relay_only: false,
        }))
        .await;
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let (room, mut self_id) = loop {
        match engine.next_event().await {
            Some(Event::Joined {
                room,
                self_id,
                members,
                ..
            }) => {
                for m in members {
                    let mut s = Seen {
                        name: m.name,
                        ..Default::default()
                    };
                    s.announce(m.audio, m.video, 0);
                    s.screen = m.screen;
                    s.screen_since = Some(Instant::now());
                    seen.insert(m.id.clone(), s);
                }
                break (room, self_id);
            }
            Some(Event::JoinFailed { message, .. }) => {
                engine.shutdown().await;
                return Err(ParticipantError::Join(message));
            }
            Some(_) => continue,
            None => return Err(ParticipantError::EngineGone),
        }
    };
    on_joined(&room);
    let joined_at = Instant::now();
    let (mut sources, start_problems) = Sources::start(SourceConfig {
        input: engine.media_input(),
        name: config.name.clone(),
        video: config.video.clone(),
        audio: config.audio.clone(),
        echo: Some(remote.echo_reference()),
    });
    problems.extend(start_problems);
    let mut device_failures = Vec::new();
    let mut share = Share::new(config.screen.clone());

    let mut schedule = config.schedule.clone();
    schedule.sort_by_key(|(at, _)| *at);
    let mut schedule = schedule.into_iter().peekable();
    let mut join_ms = None;
    let deadline = config.duration.map(|d| joined_at + d);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            () = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            } => break,
            ev = engine.next_event() => match ev {
                Some(Event::MemberUpdated(m)) => {
                    let s = seen.entry(m.id.clone()).or_default();
                    s.name = m.name;
                    s.announce(m.audio, m.video, joined_at.elapsed().as_millis() as u64);
                    if m.screen && !s.screen {
                        s.screen_since = Some(Instant::now());
                    }
                    s.screen = m.screen;
                    // Present again: after a fresh join the new room may reuse an old id.
                    s.left = false;
                }
                Some(Event::MemberLeft { id }) => seen.entry(id).or_default().left = true,
                Some(Event::Rejoined { self_id: now }) => self_id = now,
                Some(Event::Stats { id, stats }) => {
                    let s = seen.entry(id).or_default();
                    if stats.rtt_ms.is_some() {
                        s.rtt_ms = stats.rtt_ms;
                    }
                    // Kept from the last sample that had a selected pair (a closing
                    // connection's last one may not).
                    let candidates = (s.stats.candidate.take(), s.stats.remote_candidate.take());
                    let mut stats = stats;
                    if stats.candidate.is_none() {
                        (stats.candidate, stats.remote_candidate) = candidates;
                    }
                    s.video_bps.push_back(stats.video_bitrate_in);
                    if s.video_bps.len() > KBPS_SAMPLES {
                        s.video_bps.pop_front();
                    }
                    s.stats = stats;
                }
                Some(Event::Warning(w)) => tracing::warn!("{w}"),
                Some(Event::DeviceFailed { kind, message }) => {
                    tracing::warn!("the {kind} failed: {message}");
                    sources.on_failed(kind);
                    device_failures.push(DeviceFailureReport {
                        kind: kind.to_string(),
                        message,
                        at_ms: joined_at.elapsed().as_millis() as u64,
                    });
                }
                Some(Event::Left { reason }) => {
                    tracing::warn!("left the call: {reason}");
                    break;
                }
                Some(_) => {}
                None => return Err(ParticipantError::EngineGone),
            },
            _ = tick.tick() => {
                let now = joined_at.elapsed();
                if let Some(cmd) = share.step(now, &engine, &mut problems) {
                    engine.send(cmd).await;
                }
                for (id, m) in remote.members() {
                    if let Some(s) = seen.get_mut(&id)
                        && s.screen_first_ms.is_none()
                        && m.screen_frames() > 0
                    {
                        let since = s.screen_since.unwrap_or(joined_at);
                        s.screen_first_ms = Some(since.elapsed().as_millis() as u64);
                    }
                }
                if join_ms.is_none() && remote.members().iter().any(|(_, m)| m.video_frames() > 0) {
                    join_ms = Some(sent_join.elapsed().as_millis() as u64);
                }
                while let Some((at, _)) = schedule.peek() {
                    if joined_at.elapsed() < *at {
                        break;
                    }
                    if let Some((_, cmd)) = schedule.next() {
                        tracing::info!("scheduled: {cmd:?}");
                        // Turning a source on is also the retry after it failed; one that
                        // still cannot start stays off (and is reported as failed again).
                        let retried = match cmd {
                            Command::SetCamera(true) => sources.restart(DeviceKind::Camera),
                            Command::SetMic(true) => sources.restart(DeviceKind::Microphone),
                            _ => true,
                        };
                        if retried {
                            engine.send(cmd).await;
                        }
                    }
                }
            }
        }
    }

    // Before anything stops, while the sharer's last frame is still held.
    if let Some(path) = &config.save_screen
        && let Err(e) = screen_shot::save_latest(&remote, path)
    {
        problems.push(e);
    }
    // Stop sending first, so the counters below are final.
    let totals = sources.finish();
    let video_m_sections = engine.video_sections_seen();
    let (screen_captured_frames, screen_encoded_frames) = share.finish();
    engine.shutdown().await;
    let mut peers = BTreeMap::new();
    for (id, s) in seen {
        let media = remote.member(&id);
        let m = media.as_deref();
        let quality = m.map(|m| m.video_quality()).unwrap_or_default();
        peers.insert(
            id,
            PeerReport {
                name: s.name,
                video_frames: m.map_or(0, |m| m.video_frames()),
                audio_frames: m.map_or(0, |m| m.audio_frames()),
                audio_rms: m.map_or(0.0, |m| m.audio_rms()),
                last_audio_ms: m
                    .and_then(|m| m.since_last_audio())
                    .map(|d| d.as_millis() as u64),
                last_video_ms: m
                    .and_then(|m| m.since_last_video())
                    .map(|d| d.as_millis() as u64),
                latency_ms: m
                    .and_then(|m| m.latency_ms())
                    .map(|(p50, p95)| Latency { p50, p95 }),
                rtt_ms: s.rtt_ms,
                video_kbps: if s.video_bps.is_empty() {
                    0.0
                } else {
                    s.video_bps.iter().sum::<f64>() / s.video_bps.len() as f64 / 1000.0
                },
                fps: quality.fps,
                resolution: (quality.width > 0)
                    .then(|| format!("{}x{}", quality.width, quality.height)),
                freezes: quality.freezes,
                freeze_ms: quality.freeze_time.as_millis() as u64,
                max_gap_ms: m.map_or(0, |m| m.max_video_gap().as_millis() as u64),
                audio_concealed: m.map_or(0, |m| m.audio_concealed()),
                nack_sent: s.stats.nacks_sent,
                rtx_received: s.stats.retransmissions_received,
                rtx_used: s.stats.retransmissions_used,
                keyframe_requests: s.stats.keyframe_requests_sent,
                loss_pct: {
                    let lost = s.stats.packets_lost.max(0) as f64;
                    let total = lost + s.stats.packets_received as f64;
                    if total > 0.0 {
                        100.0 * lost / total
                    } else {
                        0.0
                    }
                },
                layer: s.stats.layer.clone(),
                state: MediaState {
                    audio: s.audio,
                    video: s.video,
                    screen: s.screen,
                },
                state_changes: s.state_changes,
                left: s.left,
                candidate: s.stats.candidate.map(|c| c.as_str().to_owned()),
                remote_candidate: s.stats.remote_candidate.map(|c| c.as_str().to_owned()),
                screen_frames: m.map_or(0, |m| m.screen_frames()),
                screen_first_ms: s.screen_first_ms,
                screen_size: m
                    .map(|m| m.screen_quality())
                    .filter(|q| q.width > 0)
                    .map(|q| [q.width, q.height]),
                screen_latency_ms: m
                    .and_then(|m| m.screen_latency_ms())
                    .map(|(p50, p95)| Latency { p50, p95 }),
                screen_fps: m.map_or(0.0, |m| m.screen_quality().fps),
            },
        );
    }
    Ok(Report {
        room,
        self_id,
        join_ms,
        captured_frames: totals.captured_frames,
        encoded_frames: totals.encoded_frames,
        layer_encodes: totals.layer_encodes,
        sent_audio_frames: totals.audio_frames,
        screen_captured_frames,
        screen_encoded_frames,
        video_m_sections,
        peers,
        problems,
        device_failures,
    })
}

/// The participant's screen share over the call: started and stopped on schedule, its
/// counters kept for the report.
struct Share {
    plan: Option<ScreenPlan>,
    running: Option<ScreenPipeline>,
    started: bool,
    stopped: bool,
    captured: u64,
    encoded: u64,
}

impl Share {
    fn new(plan: Option<ScreenPlan>) -> Self {
        Self {
            plan,
            running: None,
            started: false,
            stopped: false,
            captured: 0,
            encoded: 0,
        }
    }

    /// Starts or stops the share when due, or notes that it failed; returns the command
    /// that tells the engine.
    fn step(
        &mut self,
        since_join: Duration,
        engine: &Engine,
        problems: &mut Vec<String>,
    ) -> Option<Command> {
        let plan = self.plan.as_ref()?;
        if !self.started && since_join >= plan.start_at {
            self.started = true;
            // The test screen starts at once; an X11 display answers within milliseconds.
            match ScreenPipeline::start(
                &engine.media_input(),
                ScreenConfig::new(plan.source.clone()),
            ) {
                Ok(p) => {
                    tracing::info!("screen share started");
                    self.running = Some(p);
                    return Some(Command::SetScreen(true));
                }
                Err(e) => {
                    problems.push(format!("screen: {e}"));
                    return None;
                }
            }
        }
        let failed = self.running.as_ref().and_then(|p| p.stats.failure());
        let due = plan.stop_at.is_some_and(|t| since_join >= t);
        if self.running.is_some() && !self.stopped && (due || failed.is_some()) {
            self.stopped = true;
            if let Some(why) = failed {
                problems.push(format!("screen share stopped: {why}"));
            }
            self.retire();
            tracing::info!("screen share stopped");
            return Some(Command::SetScreen(false));
        }
        None
    }

    fn retire(&mut self) {
        if let Some(p) = self.running.take() {
            let stats = std::sync::Arc::clone(&p.stats);
            // Dropping joins the thread, so the counters are final.
            drop(p);
            self.captured += stats
                .captured_frames
                .load(std::sync::atomic::Ordering::Relaxed);
            self.encoded += stats
                .encoded_frames
                .load(std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Stops a share still running; (frames captured, frames encoded).
    fn finish(mut self) -> (u64, u64) {
        self.retire();
        (self.captured, self.encoded)
    }
}
