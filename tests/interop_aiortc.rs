//! Interop with aiortc 1.16 (Python): a headless `meshcall join` and an aiortc member
//! (`tests/interop/aiortc_member.py`, max-bundle, H.264 constrained baseline and Opus)
//! exchange video and audio both ways, in both join orders, so each side makes the offer
//! once. Everything runs in a network namespace holding only `lo`.
//!
//! aiortc lives in the venv `scripts/setup --test` makes (`.venv-interop`, or
//! `MESHCALL_INTEROP_VENV`); without it the tests skip, or fail under CI.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

mod common;
#[path = "interop/harness.rs"]
mod harness;

use harness::{Order, assert_media_both_ways, call, succeeds};

fn venv_python() -> PathBuf {
    std::env::var_os("MESHCALL_INTEROP_VENV")
        .map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-interop"),
            PathBuf::from,
        )
        .join("bin/python")
}

fn missing() -> Option<String> {
    let python = venv_python();
    let mut imports = Command::new(&python);
    imports.args(["-c", "import aiortc, websockets"]);
    (!python.exists() || !succeeds(&mut imports)).then(|| {
        format!(
            "no aiortc venv at {} (scripts/setup --test makes it)",
            python.display()
        )
    })
}

#[test]
fn aiortc_in_the_room_first_answers_our_offer_and_media_flows_both_ways() {
    if let Some(r) = call("aiortc", &venv_python(), Order::ForeignFirst, missing()) {
        assert_media_both_ways(&r, "aiortc");
    }
}

#[test]
fn aiortc_joining_second_offers_we_answer_and_media_flows_both_ways() {
    if let Some(r) = call("aiortc", &venv_python(), Order::ForeignSecond, missing()) {
        assert_media_both_ways(&r, "aiortc");
    }
}
