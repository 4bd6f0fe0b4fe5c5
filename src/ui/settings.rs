//! What the app remembers between runs (saved the eframe way, in `App::save`).

use serde::{Deserialize, Serialize};

use crate::media::pipeline::{AudioChoice, Speaker, VideoChoice};

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
    /// Send media only through the server's TURN relay (Advanced).
    pub relay_only: bool,
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
            relay_only: false,
        }
    }
}

impl Settings {
    /// The settings saved in `storage`, or the defaults when there are none or they no
    /// longer parse (a person should never be locked out by an old settings file).
    pub fn load(storage: Option<&dyn eframe::Storage>) -> Self {
        storage
            .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
            .unwrap_or_default()
    }

    /// Saves these settings where [`Settings::load`] finds them.
    pub fn save(&self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, self);
    }

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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use eframe::Storage as _;

    use super::*;

    /// eframe's storage interface over a map, so the real RON encoding is exercised.
    #[derive(Default)]
    struct MemoryStorage(HashMap<String, String>);

    impl eframe::Storage for MemoryStorage {
        fn get_string(&self, key: &str) -> Option<String> {
            self.0.get(key).cloned()
        }
        fn set_string(&mut self, key: &str, value: String) {
            self.0.insert(key.to_owned(), value);
        }
        fn remove_string(&mut self, key: &str) {
            self.0.remove(key);
        }
        fn flush(&mut self) {}
    }

    #[test]
    fn saved_settings_come_back_on_the_next_start() {
        let mut storage = MemoryStorage::default();
        let chosen = Settings {
            name: "Ada".into(),
            room: "abc-defg-hij".into(),
            server: "ws://10.0.0.5:8787".into(),
            lan: true,
            camera: CameraPick::TestPattern,
            mic: MicPick::Device("alsa_input.usb".into()),
            speaker: SpeakerPick::Device("sink-2".into()),
            camera_on: false,
            mic_on: false,
            relay_only: true,
        };
        chosen.save(&mut storage);
        assert_eq!(Settings::load(Some(&storage)), chosen);
    }

    #[test]
    fn nothing_saved_gives_the_defaults() {
        assert_eq!(Settings::load(None), Settings::default());
        let empty = MemoryStorage::default();
        assert_eq!(Settings::load(Some(&empty)), Settings::default());
    }

    #[test]
    fn an_older_file_keeps_what_it_has_and_defaults_the_rest() {
        let mut storage = MemoryStorage::default();
        storage.set_string(eframe::APP_KEY, "(name: \"Ada\", camera: None)".into());
        let loaded = Settings::load(Some(&storage));
        assert_eq!(loaded.name, "Ada");
        assert_eq!(loaded.camera, CameraPick::None);
        assert_eq!(loaded.server, DEFAULT_SERVER);
        assert!(loaded.mic_on);
    }

    #[test]
    fn a_damaged_file_gives_the_defaults() {
        let mut storage = MemoryStorage::default();
        storage.set_string(eframe::APP_KEY, "(name: 42, camera: Sideways".into());
        assert_eq!(Settings::load(Some(&storage)), Settings::default());
    }
}
