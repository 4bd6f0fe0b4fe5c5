//! Screen sharing's source: a synthetic test screen, or a screen, monitor or window of an
//! X11 display, delivered as I420 frames by a paced thread like the camera's.
//!
//! Wayland (xdg-desktop-portal), macOS and Windows are not supported yet: without an X11
//! display every entry point returns [`ScreenError::NoDisplay`] or
//! [`ScreenError::DisplayUnreachable`] (see [`ScreenError::is_unsupported`]).

pub mod capture;
mod cursor;
pub mod error;
pub mod synthetic;
pub mod unchanged;
pub mod x11;

pub use capture::{ScreenCapture, ScreenConfig, ScreenSource};
pub use error::ScreenError;
pub use synthetic::TestScreen;
pub use x11::{
    GrabOptions, ListOptions, RawScreen, ScreenGrabber, ShareableSource, SourceKind, list_sources,
    window_title,
};

/// What part of an X11 display to capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScreenTarget {
    /// The whole screen (the root window: every monitor side by side).
    Screen,
    /// One monitor: a rectangle of the root window, as RandR reports it.
    Monitor {
        /// Left edge on the root window.
        x: i16,
        /// Top edge on the root window.
        y: i16,
        /// Width in pixels.
        width: u16,
        /// Height in pixels.
        height: u16,
    },
    /// One window by its X11 id (what [`list_sources`] reports, or e.g. `xwininfo` shows).
    Window {
        /// The window id.
        id: u32,
    },
}
