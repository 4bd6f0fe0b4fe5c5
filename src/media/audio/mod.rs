//! Audio: 48 kHz mono 20 ms frames from microphone or tone, Opus, jitter buffers, mixing and
//! playback. No network here: the engine hands in RTP payloads and takes out encoded packets.

pub mod analysis;
pub mod capture;
pub mod codec;
pub mod denoise;
pub mod devices;
pub mod echo;
pub mod error;
pub mod frame;
pub mod jitter;
pub mod level;
pub mod mixer;
pub mod playback;
pub mod remote;
pub mod resample;
pub mod tone;

pub use error::AudioError;
pub use frame::{AudioFrame, FRAME_DURATION, FRAME_SAMPLES, SAMPLE_RATE};
