//! Interop with GStreamer 1.22's webrtcbin (Debian's packages, driven from Python through
//! gi): a headless `meshcall join` and a webrtcbin member (`tests/interop/gst_member.py`,
//! max-bundle, x264enc H.264 constrained baseline and Opus) exchange video and audio both
//! ways, in both join orders, so each side makes the offer once. Everything runs in a
//! network namespace holding only `lo`.
//!
//! The packages come from `scripts/setup --test`; without them the tests skip, or fail
//! under CI.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};

mod common;
#[path = "interop/harness.rs"]
mod harness;

use harness::{Order, SYSTEM_PYTHON, assert_media_both_ways, call, interop_dir};

/// Why webrtcbin cannot run here, if it cannot: the member says which elements it lacks.
fn missing() -> Option<String> {
    let out = Command::new(SYSTEM_PYTHON)
        .arg(interop_dir().join("gst_member.py"))
        .arg("--check")
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "GStreamer's webrtcbin member cannot run ({}); scripts/setup --test installs it",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run {SYSTEM_PYTHON}: {e}")),
    }
}

#[test]
fn gstreamer_in_the_room_first_answers_our_offer_and_media_flows_both_ways() {
    if let Some(r) = call(
        "gstreamer",
        Path::new(SYSTEM_PYTHON),
        Order::ForeignFirst,
        missing(),
    ) {
        assert_media_both_ways(&r, "gstreamer");
    }
}

/// Issue 12 item 5: webrtcbin joining second (so it offers, we answer and are the DTLS
/// client) never connected ("Fatal SSL error"). The cause was our needless second offer
/// right after the answer (see the engine's `setup_negotiation_event`).
#[test]
fn gstreamer_joining_second_offers_we_answer_and_media_flows_both_ways() {
    if let Some(r) = call(
        "gstreamer",
        Path::new(SYSTEM_PYTHON),
        Order::ForeignSecond,
        missing(),
    ) {
        assert_media_both_ways(&r, "gstreamer");
    }
}
