//! Plain banners across the top for what went wrong (or what we did for you): one sentence
//! saying what happened and what to do, wrapped to the window's width.

use egui::{Color32, RichText, Ui};

use crate::engine::DeviceKind;
use crate::media::video::error::VideoError;

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
    /// Our screen share could not start or stopped by itself; cleared by the next share.
    ShareFailed,
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

/// What a device problem from the session says as a banner, and the backend's own words.
///
/// The session reports `"<device>: <what happened> (<backend's words>); <what to do>"`, e.g.
/// "microphone: no sound server or sound card was found (PulseAudio: Connection refused;
/// fallback: …); start PulseAudio or PipeWire, or connect an audio device". The
/// parenthesised part before a `;` is for whoever debugs it: it goes to the banner's tooltip,
/// so the banner reads as one sentence. A camera that is not there gets what to do.
pub fn device_problem_text(problem: &str) -> (String, Option<String>) {
    let (mut text, detail) = match backend_words(problem) {
        Some((start, end)) => (
            format!("{}{}", &problem[..start], &problem[end..]),
            Some(problem[start + 2..end - 1].to_owned()),
        ),
        None => (problem.to_owned(), None),
    };
    if text.ends_with(&VideoError::CameraNotFound.to_string()) {
        text.push_str("; connect one and press Look for devices again");
    }
    let mut chars = text.chars();
    let text = match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => text,
    };
    (text, detail)
}

/// The byte range of `" (…)"` when a `;` follows it (parentheses nest).
fn backend_words(problem: &str) -> Option<(usize, usize)> {
    let start = problem.find(" (")?;
    let mut depth = 0usize;
    for (i, c) in problem[start + 1..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    let end = start + 1 + i + 1;
                    return problem[end..].starts_with(';').then_some((start, end));
                }
            }
            _ => {}
        }
    }
    None
}

/// One banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    /// Kind.
    pub kind: BannerKind,
    /// For people: what happened and what to do.
    pub text: String,
    /// What the system said, shown on hover.
    pub detail: Option<String>,
}

/// The banners showing now, oldest first.
#[derive(Debug, Default)]
pub struct Banners {
    items: Vec<Banner>,
}

impl Banners {
    /// Shows `text` unless the same banner is already up.
    pub fn push(&mut self, kind: BannerKind, text: impl Into<String>) {
        self.push_detailed(kind, text, None);
    }

    /// Shows `text` with `detail` on hover, unless the same banner is already up.
    pub fn push_detailed(
        &mut self,
        kind: BannerKind,
        text: impl Into<String>,
        detail: Option<String>,
    ) {
        let banner = Banner {
            kind,
            text: text.into(),
            detail,
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
                BannerKind::Error | BannerKind::DeviceFailed(_) | BannerKind::ShareFailed => {
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
                    let label = |ui: &mut Ui| {
                        let label =
                            ui.add(egui::Label::new(RichText::new(&b.text).color(text)).wrap());
                        if let Some(detail) = &b.detail {
                            label.on_hover_text(detail);
                        }
                    };
                    if b.kind == BannerKind::Reconnecting {
                        label(ui);
                    } else {
                        // The button keeps its place at the right; the text wraps in the rest.
                        egui::Sides::new()
                            .shrink_left()
                            .wrap()
                            .show(ui, label, |ui| {
                                if ui.button("Dismiss").clicked() {
                                    dismissed = Some(i);
                                }
                            });
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_problem_reads_as_one_sentence_with_the_backends_words_aside() {
        let (text, detail) = device_problem_text(
            "microphone: no sound server (PulseAudio: refused (111); fallback: none); start one",
        );
        assert_eq!(text, "Microphone: no sound server; start one.");
        assert_eq!(
            detail.as_deref(),
            Some("PulseAudio: refused (111); fallback: none")
        );
        // Parentheses that end the sentence are part of it.
        let busy = format!("video: {}", VideoError::CameraBusy);
        assert_eq!(
            device_problem_text(&busy),
            (format!("V{}.", &busy[1..]), None)
        );
        let (text, _) = device_problem_text(&format!("video: {}", VideoError::CameraNotFound));
        assert!(text.ends_with("; connect one and press Look for devices again."));
    }
}
