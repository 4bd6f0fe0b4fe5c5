//! Everything in audio that can fail, worded for the person who has to fix it.

/// An audio failure. No variant is a panic: the rest of the app keeps running without sound.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// Neither PulseAudio/PipeWire nor ALSA answered.
    #[error(
        "no sound server or sound card was found ({detail}); start PulseAudio or PipeWire, or connect an audio device"
    )]
    NoSoundSystem {
        /// What the audio backend reported.
        detail: String,
    },
    /// There is no device of the wanted kind at all.
    #[error("no {kind} is available; connect one or check the sound settings")]
    NoDevice {
        /// "microphone" or "speaker".
        kind: &'static str,
    },
    /// The named device is not (or no longer) there.
    #[error("the {kind} \"{name}\" was not found; it may have been unplugged")]
    DeviceNotFound {
        /// "microphone" or "speaker".
        kind: &'static str,
        /// The name asked for.
        name: String,
    },
    /// The device exists but could not be opened or started.
    #[error("could not use the {kind} \"{name}\": {detail}")]
    Stream {
        /// "microphone" or "speaker".
        kind: &'static str,
        /// The device's name.
        name: String,
        /// What the audio backend reported.
        detail: String,
    },
    /// A device in use stopped working: unplugged, its stream killed, or silent.
    #[error("the {kind} \"{name}\" stopped working ({detail}); it may have been unplugged")]
    DeviceLost {
        /// "microphone" or "speaker".
        kind: &'static str,
        /// The device's name.
        name: String,
        /// What the audio backend reported, or what we noticed.
        detail: String,
    },
    /// The device's format cannot be converted to 48 kHz mono.
    #[error("the {kind} \"{name}\" uses an unsupported format: {detail}")]
    UnsupportedFormat {
        /// "microphone" or "speaker".
        kind: &'static str,
        /// The device's name.
        name: String,
        /// What is unsupported.
        detail: String,
    },
    /// The Opus library refused an operation.
    #[error("Opus codec error: {0}")]
    Codec(#[from] opus::Error),
    /// The resampler could not be built or failed.
    #[error("resampler error: {0}")]
    Resample(String),
    /// Echo cancellation or another processing stage failed.
    #[error("audio processing error: {0}")]
    Processing(String),
    /// A worker thread could not be started or died before it answered.
    #[error("audio worker thread failed: {0}")]
    Thread(String),
}
