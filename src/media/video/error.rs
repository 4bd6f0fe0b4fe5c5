//! The one error type of the video layer.

/// Everything that can go wrong while capturing, coding or converting video.
///
/// Camera variants are worded for people: the UI shows their `Display` as is.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// Width or height is zero, odd or absurdly large.
    #[error("Video size {width}×{height} is not usable (both sides must be even and non-zero)")]
    InvalidDimensions {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
    },
    /// A capture rate of zero or above 120 frames per second.
    #[error("Video frame rate {0} is not usable (1 to 120 frames per second)")]
    InvalidFrameRate(u32),
    /// Plane buffers do not match the frame size.
    #[error("Video planes have the wrong size for {width}×{height} (Y {y}, U {u}, V {v} bytes)")]
    PlaneSize {
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
        /// Bytes given for Y.
        y: usize,
        /// Bytes given for U.
        u: usize,
        /// Bytes given for V.
        v: usize,
    },
    /// No camera with that index exists (or none at all).
    #[error("No camera found")]
    CameraNotFound,
    /// The device exists but another program holds it.
    #[error("The camera is busy (used by another app)")]
    CameraBusy,
    /// The device went away while in use.
    #[error("The camera was disconnected")]
    CameraDisconnected,
    /// The failing test pattern ([`VideoSource::FailingPattern`](super::VideoSource)) failed,
    /// as it was asked to.
    #[error("The test video source stopped after {frames} frames, as asked (test:fail-after)")]
    TestSourceFailed {
        /// Frames it delivered.
        frames: u64,
    },
    /// Any other camera failure; details go to the log, not to the user.
    #[error("The camera could not be started")]
    CameraFailed,
    /// The H.264 encoder refused a setting or a frame.
    #[error("The video encoder failed: {0}")]
    Encoder(String),
    /// The H.264 decoder could not be created.
    #[error("The video decoder could not be started: {0}")]
    DecoderInit(String),
    /// An access unit was corrupt, truncated or referenced a lost frame: request a keyframe.
    #[error("Received video could not be decoded (corrupt or incomplete data)")]
    CorruptStream,
    /// A colour conversion rejected its input.
    #[error("Video colour conversion failed: {0}")]
    Conversion(String),
    /// The capture thread could not be spawned.
    #[error("Could not start the video capture thread: {0}")]
    Thread(#[from] std::io::Error),
}
