//! Media: capture, codecs and playback, independent of the network.

pub mod video;
pub mod audio;
