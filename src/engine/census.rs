//! Counts kept across the engine's tasks, so tests can see that leaving frees every member
//! and that recovery is bounded.

use std::sync::atomic::AtomicUsize;

/// Counts live peer tasks, so tests can check that leaving frees every member.
#[derive(Default)]
pub(crate) struct Census {
    pub(crate) peer_tasks: AtomicUsize,
    /// ICE restarts our peer tasks have offered, so tests can see recovery is bounded.
    pub(crate) ice_restarts: AtomicUsize,
    /// The most video m-sections any of our sessions' descriptions had, so tests can see
    /// a second share reuses the screen's m-section (protocol.md: at most two).
    pub(crate) video_sections: AtomicUsize,
}
