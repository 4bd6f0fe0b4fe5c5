//! What the app remembers between runs (saved the eframe way, in `App::save`).

use serde::{Deserialize, Serialize};

use crate::engine::{AudioChoice, Speaker, VideoChoice};

/// The default signaling server: this machine, where the app serves rooms itself if
/// nothing else does.
pub const DEFAULT_SERVER: &str = "ws://127.0.0.1:8787";

/// Which video source the person picked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CameraPick {
    /// The synthetic test pattern (always offered).
    TestPattern,
    /// A camera by its system index.
    Camera(u32),
    /// No video source at all.
    None,
}

/// Which microphone the person picked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MicPick {
    /// The system's default input.
    Default,
    /// A device by id.
    Device(String),
    /// A test tone instead of a microphone.
    Tone,
    /// No audio source at all.
    None,
}

/// Which speaker the person picked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpeakerPick {
    /// The system's default output.
    Default,
    /// A device by id.
    Device(String),
}

/// Everything the lobby remembers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Display name.
    pub name: String,
    /// The last room code typed.
    pub room: String,
    /// Signaling server address.
    pub server: String,
    /// Let other machines reach the embedded server.
    pub lan: bool,
    /// Video source.
    pub camera: CameraPick,
    /// Audio source.
    pub mic: MicPick,
    /// Audio output.
    pub speaker: SpeakerPick,
    /// Camera on when joining.
    pub camera_on: bool,
    /// Microphone on when joining.
    pub mic_on: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            name: String::new(),
            room: String::new(),
            server: DEFAULT_SERVER.to_owned(),
            lan: false,
            camera: CameraPick::Camera(0),
            mic: MicPick::Default,
            speaker: SpeakerPick::Default,
            camera_on: true,
            mic_on: true,
        }
    }
}

impl Settings {
    /// The engine's video choice.
    pub fn video_choice(&self) -> VideoChoice {
        match self.camera {
            CameraPick::TestPattern => VideoChoice::TestPattern,
            CameraPick::Camera(i) => VideoChoice::Camera(i),
            CameraPick::None => VideoChoice::None,
        }
    }

    /// The engine's audio choice.
    pub fn audio_choice(&self) -> AudioChoice {
        match &self.mic {
            MicPick::Default => AudioChoice::Mic(None),
            MicPick::Device(id) => AudioChoice::Mic(Some(id.clone())),
            MicPick::Tone => AudioChoice::Tone { beep_every: None },
            MicPick::None => AudioChoice::None,
        }
    }

    /// The engine's speaker choice.
    pub fn speaker_choice(&self) -> Speaker {
        match &self.speaker {
            SpeakerPick::Default => Speaker::Default,
            SpeakerPick::Device(id) => Speaker::Named(id.clone()),
        }
    }
}
