//! Media: capture, codecs and playback, independent of the network.

pub mod audio;
pub mod video;
