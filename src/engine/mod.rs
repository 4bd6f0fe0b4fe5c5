//! The call engine: one peer connection per remote member, media fan-out, keyframes,
//! bandwidth. The only module that imports webrtc; it never touches egui.

#![allow(dead_code)] // Building blocks ahead of the engine actor that will use them.

mod keyframe_requests;
mod peer_factory;

#[cfg(test)]
mod tests;
