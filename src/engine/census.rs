//! Counts kept across the engine's tasks, so tests can see that leaving frees every member
//! and that recovery is bounded.

use std::sync::atomic::AtomicUsize;

/// Counts live peer tasks, so tests can check that leaving frees every member.
#[derive(Default)]
pub(crate) struct Census {
    pub(crate) peer_tasks: AtomicUsize,
    /// ICE restarts our peer tasks have offered, so tests can see recovery is bounded.
    pub(crate) ice_restarts: AtomicUsize,
}
