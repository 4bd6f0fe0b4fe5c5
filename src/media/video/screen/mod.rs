//! Screen sharing's source: a synthetic test screen, delivered as I420 frames.

pub mod synthetic;

pub use synthetic::TestScreen;
