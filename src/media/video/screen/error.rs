//! What can go wrong while listing or capturing screens and windows.

use super::super::VideoError;

/// Screen capture failures; the UI shows `Display` as is, and acts on the variant (hide the
/// Share button when [`ScreenError::is_unsupported`], end a share on `WindowGone`).
#[derive(Debug, thiserror::Error)]
pub enum ScreenError {
    /// No X11 display to capture from: Wayland-only sessions, macOS and Windows land here.
    #[error(
        "Screen sharing is not supported here yet: it needs an X11 display (DISPLAY is not set)"
    )]
    NoDisplay,
    /// DISPLAY names a display that does not answer.
    #[error(
        "Screen sharing is not supported here yet: the X11 display {display} could not be reached ({reason})"
    )]
    DisplayUnreachable {
        /// The display name tried, e.g. `:0`.
        display: String,
        /// Why the connection failed.
        reason: String,
    },
    /// The window being shared (or asked for) no longer exists.
    #[error("The shared window was closed")]
    WindowGone {
        /// Its X11 window id.
        id: u32,
    },
    /// The display's pixels are not 32-bit true colour, which is all the converter reads.
    #[error(
        "Screen sharing does not support this display's pixel format ({depth}-bit depth, {bits_per_pixel} bits a pixel)"
    )]
    PixelFormat {
        /// Drawable depth.
        depth: u8,
        /// Bits per pixel of that depth's image format (0 if the server lists none).
        bits_per_pixel: u8,
    },
    /// The X server failed a request or the connection broke.
    #[error("The X11 display failed: {0}")]
    X11(String),
    /// Converting or scaling the captured picture failed.
    #[error(transparent)]
    Video(#[from] VideoError),
    /// The capture thread could not be spawned.
    #[error("Could not start the screen capture thread: {0}")]
    Thread(#[from] std::io::Error),
}

impl ScreenError {
    /// True when this machine cannot share its screen at all (rather than one share failing).
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Self::NoDisplay | Self::DisplayUnreachable { .. })
    }
}
