//! The participant's own capture: one pipeline per source, so a source that fails can be
//! restarted alone (turning it on again is the retry), with the counters of every pipeline
//! a source ran summed for the report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::engine::{DeviceKind, MediaInput};
use crate::media::pipeline::{
    AudioChoice, EchoReference, LocalPipelines, OutgoingStats, VideoChoice, VideoFormat,
};

/// What to capture, kept to start a source again.
pub(super) struct SourceConfig {
    /// Where encoded media goes.
    pub input: MediaInput,
    /// Drawn into the test pattern.
    pub name: String,
    /// The video source.
    pub video: VideoChoice,
    /// The audio source.
    pub audio: AudioChoice,
    /// What the speaker plays, for a microphone's echo canceller.
    pub echo: Option<EchoReference>,
}

/// The running sources and the counters of those that stopped.
pub(super) struct Sources {
    config: SourceConfig,
    camera: Option<LocalPipelines>,
    mic: Option<LocalPipelines>,
    /// Counters of pipelines that stopped, for the totals.
    retired: Vec<Arc<OutgoingStats>>,
}

/// What all pipelines together captured and encoded.
#[derive(Debug, Default)]
pub(super) struct Totals {
    pub captured_frames: u64,
    pub encoded_frames: u64,
    pub audio_frames: u64,
    pub layer_encodes: BTreeMap<String, u64>,
}

impl Sources {
    /// Starts both sources (this opens devices, so it may take a moment); returns why any
    /// could not start.
    pub fn start(config: SourceConfig) -> (Self, Vec<String>) {
        let mut sources = Self {
            config,
            camera: None,
            mic: None,
            retired: Vec::new(),
        };
        let mut problems = Vec::new();
        for kind in [DeviceKind::Camera, DeviceKind::Microphone] {
            if let Err(problem) = sources.open(kind) {
                problems.push(problem);
            }
        }
        (sources, problems.into_iter().flatten().collect())
    }

    /// Forgets a source that stopped by itself; its counters still count.
    pub fn on_failed(&mut self, kind: DeviceKind) {
        if let Some(p) = self.slot(kind).take() {
            self.retired.push(Arc::clone(&p.stats));
        }
    }

    /// Opens a source that is not running (a retry). False when it still cannot: the
    /// engine then hears of it as a failed device, and the source stays off.
    pub fn restart(&mut self, kind: DeviceKind) -> bool {
        if self
            .slot(kind)
            .as_ref()
            .is_some_and(LocalPipelines::is_running)
        {
            return true;
        }
        self.on_failed(kind);
        match self.open(kind) {
            Ok(_) => true,
            Err(problems) => {
                let why = problems.join("; ");
                self.config.input.device_failed(kind, why);
                false
            }
        }
    }

    /// Stops everything and adds up what was captured and encoded.
    pub fn finish(mut self) -> Totals {
        let mut stats = std::mem::take(&mut self.retired);
        for p in [self.camera.take(), self.mic.take()].into_iter().flatten() {
            stats.push(Arc::clone(&p.stats));
            // Dropping joins the threads, so the counters are final.
            drop(p);
        }
        let mut totals = Totals::default();
        for s in stats {
            totals.captured_frames += s.captured_frames.load(Ordering::Relaxed);
            totals.encoded_frames += s.encoded_frames.load(Ordering::Relaxed);
            totals.audio_frames += s.audio_frames.load(Ordering::Relaxed);
            for (layer, n) in s
                .layer_encodes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
            {
                *totals.layer_encodes.entry(layer.clone()).or_default() += n;
            }
        }
        totals
    }

    fn slot(&mut self, kind: DeviceKind) -> &mut Option<LocalPipelines> {
        match kind {
            DeviceKind::Camera => &mut self.camera,
            DeviceKind::Microphone => &mut self.mic,
        }
    }

    /// Starts the source of `kind` if one was chosen. Ok(false): none was chosen; the
    /// error holds why it could not start.
    fn open(&mut self, kind: DeviceKind) -> Result<bool, Vec<String>> {
        let c = &self.config;
        let (video, audio, echo) = match kind {
            DeviceKind::Camera => (c.video.clone(), AudioChoice::None, None),
            DeviceKind::Microphone => (VideoChoice::None, c.audio.clone(), c.echo.clone()),
        };
        if video == VideoChoice::None && audio == AudioChoice::None {
            return Ok(false);
        }
        let p = LocalPipelines::start(
            &c.input,
            &c.name,
            &video,
            &VideoFormat::default(),
            &audio,
            echo,
        );
        for problem in &p.problems {
            tracing::warn!("{problem}");
        }
        if !p.is_running() {
            return Err(p.problems.clone());
        }
        *self.slot(kind) = Some(p);
        Ok(true)
    }
}
