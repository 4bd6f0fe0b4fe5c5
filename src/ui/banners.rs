//! Plain one-line banners across the top for what went wrong (or what we did for you).

use egui::{Color32, RichText, Ui};

use crate::engine::DeviceKind;

/// How a banner looks and whether it goes away by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BannerKind {
    /// The signaling link is down; cleared when it is back.
    Reconnecting,
    /// Something failed; the person dismisses it.
    Error,
    /// Something to know; the person dismisses it.
    Info,
    /// One of our devices stopped; cleared when the person turns it on again (or dismisses it).
    DeviceFailed(DeviceKind),
}

/// What a [`BannerKind::DeviceFailed`] banner says: what stopped, what others now see,
/// and which button retries.
pub fn device_failed_text(kind: DeviceKind, message: &str) -> String {
    let (others, button) = match kind {
        DeviceKind::Camera => ("your video as off", "Start video"),
        DeviceKind::Microphone => ("you as muted", "Unmute"),
    };
    format!("Your {kind} stopped: {message}. Others see {others}; press {button} to try again.")
}

/// One banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    /// Kind.
    pub kind: BannerKind,
    /// For people.
    pub text: String,
}

/// The banners showing now, oldest first.
#[derive(Debug, Default)]
pub struct Banners {
    items: Vec<Banner>,
}

impl Banners {
    /// Shows `text` unless the same banner is already up.
    pub fn push(&mut self, kind: BannerKind, text: impl Into<String>) {
        let banner = Banner {
            kind,
            text: text.into(),
        };
        if !self.items.contains(&banner) {
            self.items.push(banner);
        }
    }

    /// Removes every banner of `kind`.
    pub fn clear_kind(&mut self, kind: BannerKind) {
        self.items.retain(|b| b.kind != kind);
    }

    /// The banners showing now.
    pub fn items(&self) -> &[Banner] {
        &self.items
    }

    /// Whether none are up.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Draws them; returns the index of one the person dismissed.
    pub fn show(&self, ui: &mut Ui) -> Option<usize> {
        let mut dismissed = None;
        for (i, b) in self.items.iter().enumerate() {
            let (fill, text) = match b.kind {
                BannerKind::Reconnecting => (Color32::from_rgb(120, 90, 20), Color32::WHITE),
                BannerKind::Error | BannerKind::DeviceFailed(_) => {
                    (Color32::from_rgb(140, 40, 40), Color32::WHITE)
                }
                BannerKind::Info => (Color32::from_rgb(40, 70, 120), Color32::WHITE),
            };
            egui::Frame::new()
                .fill(fill)
                .inner_margin(6.0)
                .corner_radius(4.0)
                .show(ui, |ui| {
                    ui.set_width(ui.available_width());
                    ui.horizontal(|ui| {
                        ui.label(RichText::new(&b.text).color(text));
                        if b.kind != BannerKind::Reconnecting {
                            ui.with_layout(
                                egui::Layout::right_to_left(egui::Align::Center),
                                |ui| {
                                    if ui.button("Dismiss").clicked() {
                                        dismissed = Some(i);
                                    }
                                },
                            );
                        }
                    });
                });
        }
        dismissed
    }

    /// Removes the banner at `index`.
    pub fn dismiss(&mut self, index: usize) {
        if index < self.items.len() {
            self.items.remove(index);
        }
    }
}
