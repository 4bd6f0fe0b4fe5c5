//! Rooms on a selective forwarding unit: the signaling side of Janus Gateway's VideoRoom
//! (issue 14). Nothing here touches media or webrtc; the connections that carry media to
//! and from Janus are the engine's (`engine::janus_member`).

pub mod janus;
