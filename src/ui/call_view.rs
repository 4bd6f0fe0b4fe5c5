//! The call screen: banners on top, the tile grid, the control bar, the chat panel.

use std::collections::HashSet;

use egui::{TextureId, Ui};

use super::banners::Banners;
use super::call_model::CallModel;
use super::control_bar::{self, BarAction, BarState};
use super::grid::{GAP, TILE_ASPECT, tile_rects};
use super::textures::{SELF_KEY, VideoTextures};
use super::tile::{self, TileContent};
use crate::engine::LinkState;

/// What the person did on the call screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallAction {
    /// A control bar button (or its shortcut).
    Bar(BarAction),
    /// Send a chat message.
    SendChat(String),
    /// Close a banner.
    DismissBanner(usize),
}

/// Everything the call screen draws.
pub struct CallView<'a> {
    /// The call.
    pub model: &'a CallModel,
    /// Banners to show.
    pub banners: &'a Banners,
    /// Video textures.
    pub textures: &'a VideoTextures,
    /// Our display name.
    pub self_name: &'a str,
    /// Our microphone on.
    pub mic_on: bool,
    /// Our camera on.
    pub camera_on: bool,
    /// Whether a camera can be turned on.
    pub camera_available: bool,
    /// Whether there is an audio source to unmute.
    pub mic_available: bool,
    /// Ids speaking now (ours is [`SELF_KEY`]).
    pub speaking: &'a HashSet<String>,
    /// The chat line being written.
    pub draft: &'a mut String,
}

/// Draws the call; returns what the person did.
pub fn show(ui: &mut Ui, v: CallView<'_>) -> Vec<CallAction> {
    let mut actions = Vec::new();
    if !v.banners.is_empty() {
        egui::Panel::top("banners").show(ui, |ui| {
            if let Some(i) = v.banners.show(ui) {
                actions.push(CallAction::DismissBanner(i));
            }
        });
    }
    egui::Panel::bottom("controls")
        .exact_size(44.0)
        .show(ui, |ui| {
            let state = BarState {
                mic_on: v.mic_on,
                camera_on: v.camera_on,
                camera_available: v.camera_available,
                mic_available: v.mic_available,
                unread: v.model.unread,
                room: &v.model.room,
                people: v.model.people(),
            };
            if let Some(a) = control_bar::show(ui, &state) {
                actions.push(CallAction::Bar(a));
            }
        });
    if v.model.chat_open {
        egui::Panel::right("chat")
            .default_size(280.0)
            .show(ui, |ui| {
                if let Some(text) =
                    super::chat_panel::show(ui, &v.model.chat, &v.model.self_id, v.draft)
                {
                    actions.push(CallAction::SendChat(text));
                }
            });
    }
    egui::CentralPanel::default().show(ui, |ui| grid(ui, &v));
    actions
}

fn video_of(textures: &VideoTextures, key: &str) -> Option<(TextureId, [usize; 2])> {
    textures.get(key).map(|t| (t.id(), t.size()))
}

/// No new frame from a member for this long, with their camera on, shows as paused video.
const VIDEO_STALL: std::time::Duration = std::time::Duration::from_secs(2);

fn grid(ui: &mut Ui, v: &CallView<'_>) {
    let area = ui.available_rect_before_wrap();
    let rects = tile_rects(v.model.people(), area, TILE_ASPECT, GAP);
    let Some((self_rect, others)) = rects.split_first() else {
        return;
    };
    tile::show(
        ui,
        *self_rect,
        &TileContent {
            name: v.self_name,
            is_self: true,
            video: v
                .camera_on
                .then(|| video_of(v.textures, SELF_KEY))
                .flatten(),
            mic_on: v.mic_on && v.mic_available,
            speaking: v.mic_on && v.speaking.contains(SELF_KEY),
            quality: None,
            status: None,
        },
    );
    for (rect, m) in others.iter().zip(&v.model.members) {
        let member = &m.member;
        // Their camera is on and the link is up, yet no picture came for a while: their
        // video to us is paused because our link cannot carry it (or frozen). Say so
        // rather than show a still picture as if it were live.
        let stalled = member.video
            && member.link == LinkState::Connected
            && v.textures
                .age(&member.id)
                .is_some_and(|age| age > VIDEO_STALL);
        let status = match member.link {
            LinkState::Connecting => Some("Connecting…"),
            LinkState::Reconnecting => Some("Reconnecting…"),
            LinkState::Failed => Some("Connection failed"),
            LinkState::Connected if stalled => Some("Video paused — poor connection"),
            LinkState::Connected => None,
        };
        tile::show(
            ui,
            *rect,
            &TileContent {
                name: &member.name,
                is_self: false,
                video: (member.video && !stalled)
                    .then(|| video_of(v.textures, &member.id))
                    .flatten(),
                mic_on: member.audio,
                speaking: member.audio && v.speaking.contains(&member.id),
                quality: Some((m.quality(), m.numbers.clone())),
                status,
            },
        );
    }
}
