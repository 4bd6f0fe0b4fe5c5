//! The call screen: banners on top, "You are sharing" under them, the tile grid (or the
//! spotlight while someone shares), the control bar, the chat panel.

use std::collections::HashSet;

use egui::{Color32, Rect, RichText, TextureId, Ui};

use super::banners::Banners;
use super::call_model::{CallModel, MemberView};
use super::control_bar::{self, BarAction, BarState};
use super::grid::{GAP, TILE_ASPECT, tile_rects};
use super::spotlight::{ShareTile, show_share, spotlight_rects};
use super::textures::{SELF_KEY, VideoTextures, screen_key};
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
    /// The large share was clicked: switch it between fitted and actual size.
    ToggleShareSize(String),
    /// A share in the strip was clicked: show it large instead.
    Spotlight(String),
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
    /// What we are sharing, by the picker's name for it.
    pub sharing: Option<&'a str>,
    /// The member whose share the person chose to show large.
    pub pinned_share: Option<&'a str>,
    /// The member whose share is shown at its actual size (the others are fitted).
    pub actual_share: Option<&'a str>,
}

/// Hints on the large share: what a click does.
pub const FIT_HINT: &str = "Fitted · click for actual size";
/// See [`FIT_HINT`].
pub const ACTUAL_HINT: &str = "Actual size · click to fit";
/// The hint on a share in the strip.
pub const STRIP_SHARE_HINT: &str = "Click to show large";

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
    if let Some(name) = v.sharing {
        egui::Panel::top("sharing").show(ui, |ui| {
            if sharing_bar(ui, name) {
                actions.push(CallAction::Bar(BarAction::StopShare));
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
                sharing: v.sharing.is_some(),
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
    egui::CentralPanel::default().show(ui, |ui| match v.model.spotlight(v.pinned_share) {
        Some(share) => actions.extend(spotlight(ui, &v, share)),
        None => grid(ui, &v),
    });
    actions
}

/// "You are sharing …" with its Stop button; true when Stop was pressed.
fn sharing_bar(ui: &mut Ui, name: &str) -> bool {
    let mut stop = false;
    egui::Frame::new()
        .fill(Color32::from_rgb(30, 110, 70))
        .inner_margin(6.0)
        .corner_radius(4.0)
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            egui::Sides::new().shrink_left().show(
                ui,
                |ui| {
                    ui.add(
                        egui::Label::new(
                            RichText::new(format!("You are sharing “{name}”"))
                                .color(Color32::WHITE)
                                .strong(),
                        )
                        .truncate(),
                    );
                },
                |ui| {
                    stop = ui
                        .button("Stop")
                        .on_hover_text("Stop sharing your screen")
                        .clicked();
                },
            );
        });
    stop
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
    self_tile(ui, *self_rect, v);
    for (rect, m) in others.iter().zip(&v.model.members) {
        member_tile(ui, *rect, v, m);
    }
}

/// The spotlight: `share` large, everyone's camera in the strip, then the other shares.
fn spotlight(ui: &mut Ui, v: &CallView<'_>, share: &MemberView) -> Option<CallAction> {
    let mut action = None;
    let area = ui.available_rect_before_wrap();
    let id = &share.member.id;
    let video = video_of(v.textures, &screen_key(id));
    let aspect = match video {
        Some((_, [w, h])) if w > 0 && h > 0 => w as f32 / h as f32,
        _ => TILE_ASPECT,
    };
    let other_shares: Vec<&MemberView> = v
        .model
        .shares
        .iter()
        .filter(|s| *s != id)
        .filter_map(|s| v.model.member(s))
        .collect();
    let rects = spotlight_rects(area, v.model.people() + other_shares.len(), aspect, GAP);
    let actual = v.actual_share == Some(id.as_str());
    let large = ShareTile {
        owner: &share.member.name,
        video,
        actual,
        hint: if actual { ACTUAL_HINT } else { FIT_HINT },
    };
    if show_share(ui, rects.share, &large) {
        action = Some(CallAction::ToggleShareSize(id.clone()));
    }
    let mut strip = rects.strip.iter().copied();
    if let Some(rect) = strip.next() {
        self_tile(ui, rect, v);
    }
    // Members first, so the strip's iterator is never advanced past the cameras.
    for (m, rect) in v.model.members.iter().zip(strip.by_ref()) {
        member_tile(ui, rect, v, m);
    }
    for (m, rect) in other_shares.into_iter().zip(strip) {
        let small = ShareTile {
            owner: &m.member.name,
            video: video_of(v.textures, &screen_key(&m.member.id)),
            actual: false,
            hint: STRIP_SHARE_HINT,
        };
        if show_share(ui, rect, &small) {
            action = Some(CallAction::Spotlight(m.member.id.clone()));
        }
    }
    action
}

fn self_tile(ui: &mut Ui, rect: Rect, v: &CallView<'_>) {
    tile::show(
        ui,
        rect,
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
}

fn member_tile(ui: &mut Ui, rect: Rect, v: &CallView<'_>, m: &MemberView) {
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
        rect,
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
