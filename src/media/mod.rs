//! Media: capture, codecs and playback, independent of the network.
//!
//! The call reaches the pipelines only through the contracts in [`pipeline`]: encoded
//! media goes out through a [`pipeline::MediaOutlet`], received media comes in through a
//! `pipeline::RemoteMediaSink`; the engine implements the one and calls the other.

pub mod audio;
pub mod pipeline;
pub mod video;

/// One of our own capture devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// The camera (or the test pattern standing in for one).
    Camera,
    /// The microphone (or the test tone standing in for one).
    Microphone,
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Camera => "camera",
            Self::Microphone => "microphone",
        })
    }
}
