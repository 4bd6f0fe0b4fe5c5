//! The "Share your screen" picker: a modal listing the screens and windows the session
//! found, each with its name, size and a small picture; choosing one is the request to
//! share it. Thumbnails become textures once per listing.

use egui::{
    Color32, ColorImage, Context, CornerRadius, Rect, RichText, Sense, TextureHandle,
    TextureOptions, Ui, vec2,
};

use super::grid::fit;
use crate::media::video::i420_to_rgba_into;
use crate::media::video::screen::{ShareableSource, SourceKind};

/// What the person did in the picker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickerAction {
    /// Share the listed source at this index.
    Share(usize),
    /// Close without sharing (Cancel, Escape, a click beside the picker).
    Cancel,
    /// List again (a window was opened meanwhile).
    Refresh,
}

/// What the session said is shareable.
enum Listing {
    /// Asked; no answer yet.
    Waiting,
    /// Nothing can be shared, and why.
    Failed(String),
    /// The sources with their thumbnails' textures.
    Ready(Vec<Entry>),
}

struct Entry {
    source: ShareableSource,
    thumbnail: Option<TextureHandle>,
}

/// The picker while it is open.
pub struct SharePicker {
    listing: Listing,
}

/// Why the picker may explain itself instead of listing: the platforms we cannot capture.
pub const UNSUPPORTED_HINT: &str =
    "Screen sharing needs an X11 session; Wayland, macOS and Windows are not supported yet.";

/// A card in the picker, points: the picture's box and the card's width.
const THUMB: egui::Vec2 = vec2(200.0, 112.0);

impl SharePicker {
    /// A picker waiting for the session's listing.
    pub fn waiting() -> Self {
        Self {
            listing: Listing::Waiting,
        }
    }

    /// Back to waiting (the listing was asked for again).
    pub fn refresh(&mut self) {
        self.listing = Listing::Waiting;
    }

    /// Takes in the session's listing; thumbnails become textures here, once.
    pub fn set_listing(&mut self, ctx: &Context, listing: Result<Vec<ShareableSource>, String>) {
        self.listing = match listing {
            Err(reason) => Listing::Failed(reason),
            Ok(sources) => {
                let mut rgba = Vec::new();
                let entries = sources
                    .into_iter()
                    .enumerate()
                    .map(|(i, mut source)| {
                        let thumbnail = source.thumbnail.take().and_then(|frame| {
                            i420_to_rgba_into(&frame, &mut rgba).ok()?;
                            let size = [frame.width() as usize, frame.height() as usize];
                            let image = ColorImage::from_rgba_unmultiplied(size, &rgba);
                            Some(ctx.load_texture(
                                format!("share-thumbnail-{i}"),
                                image,
                                TextureOptions::LINEAR,
                            ))
                        });
                        Entry { source, thumbnail }
                    })
                    .collect();
                Listing::Ready(entries)
            }
        };
    }

    /// The listed source at `index`.
    pub fn source(&self, index: usize) -> Option<&ShareableSource> {
        match &self.listing {
            Listing::Ready(entries) => entries.get(index).map(|e| &e.source),
            _ => None,
        }
    }

    /// Draws the picker over the window; returns what the person did.
    pub fn show(&self, ctx: &Context) -> Option<PickerAction> {
        let mut action = None;
        let screen = ctx.content_rect();
        let width = (screen.width() - 48.0).clamp(240.0, 700.0);
        // A fixed size: a list that sized itself to its content would take a few frames to
        // settle (a scroll area learns its content's size a frame late), moving the
        // buttons under the pointer meanwhile.
        let list_height = (screen.height() - 200.0).clamp(120.0, 420.0);
        let modal = egui::Modal::new(egui::Id::unique("share-picker")).show(ctx, |ui| {
            ui.set_width(width);
            ui.heading("Share your screen");
            ui.label("Choose a screen or a window. Everyone in the call will see it.");
            ui.add_space(6.0);
            egui::ScrollArea::vertical()
                .min_scrolled_height(list_height)
                .max_height(list_height)
                .auto_shrink(false)
                .show(ui, |ui| match &self.listing {
                    // No spinner: it would redraw the window 60 times a second for the
                    // moment the listing takes.
                    Listing::Waiting => {
                        ui.label("Looking for screens and windows…");
                    }
                    Listing::Failed(reason) => {
                        ui.add(egui::Label::new(RichText::new(reason).strong()).wrap());
                        ui.add(egui::Label::new(UNSUPPORTED_HINT).wrap());
                    }
                    Listing::Ready(entries) => {
                        if let Some(i) = sources(ui, entries) {
                            action = Some(PickerAction::Share(i));
                        }
                    }
                });
            ui.separator();
            ui.horizontal(|ui| {
                if ui.button("Cancel").clicked() {
                    action = Some(PickerAction::Cancel);
                }
                if ui
                    .button("Look again")
                    .on_hover_text("List the screens and windows again")
                    .clicked()
                {
                    action = Some(PickerAction::Refresh);
                }
            });
        });
        if action.is_none() && modal.should_close() {
            action = Some(PickerAction::Cancel);
        }
        action
    }
}

/// The screens, then the windows; returns the index of the one chosen.
fn sources(ui: &mut Ui, entries: &[Entry]) -> Option<usize> {
    let mut chosen = None;
    let is_screen = |e: &Entry| matches!(e.source.kind, SourceKind::Screen | SourceKind::Monitor);
    let groups = [
        (
            "Screens",
            // Our window is on every screen; sharing one shows it, so say so.
            Some("Your meshcall window is on the screen too: others will see it."),
            true,
        ),
        ("Windows", None, false),
    ];
    for (title, note, screens) in groups {
        let group: Vec<usize> = (0..entries.len())
            .filter(|&i| is_screen(&entries[i]) == screens)
            .collect();
        if group.is_empty() {
            continue;
        }
        ui.label(RichText::new(title).strong());
        if let Some(note) = note {
            ui.weak(note);
        }
        ui.horizontal_wrapped(|ui| {
            for i in group {
                if card(ui, &entries[i]) {
                    chosen = Some(i);
                }
            }
        });
        ui.add_space(6.0);
    }
    if entries.is_empty() {
        ui.label("Nothing to share was found.");
    }
    chosen
}

/// One source as a clickable card: picture, name, size. True when clicked.
fn card(ui: &mut Ui, entry: &Entry) -> bool {
    let s = &entry.source;
    let size = vec2(THUMB.x + 12.0, THUMB.y + 50.0);
    let (rect, response) = ui.allocate_exact_size(size, Sense::click());
    let label = s.name.clone();
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));
    let visuals = *ui.style().interact(&response);
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, CornerRadius::same(6), visuals.weak_bg_fill);
    if response.hovered() {
        painter.rect_stroke(
            rect,
            CornerRadius::same(6),
            visuals.bg_stroke,
            egui::StrokeKind::Inside,
        );
    }
    let thumb_box = Rect::from_min_size(rect.min + vec2(6.0, 6.0), THUMB);
    painter.rect_filled(thumb_box, CornerRadius::same(4), Color32::from_gray(20));
    match &entry.thumbnail {
        Some(t) => {
            let [w, h] = t.size();
            let area = fit(thumb_box, w as f32 / h.max(1) as f32);
            painter.image(
                t.id(),
                area,
                Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)),
                Color32::WHITE,
            );
        }
        None => {
            let mut child = ui.new_child(egui::UiBuilder::new().max_rect(thumb_box).layout(
                egui::Layout::centered_and_justified(egui::Direction::TopDown),
            ));
            child.add(
                egui::Label::new(RichText::new("No preview").color(Color32::GRAY))
                    .selectable(false),
            );
        }
    }
    let text_rect = Rect::from_min_size(
        thumb_box.left_bottom() + vec2(0.0, 4.0),
        vec2(THUMB.x, 40.0),
    );
    let kind = match s.kind {
        SourceKind::Screen => "Screen",
        SourceKind::Monitor => "Monitor",
        SourceKind::Window => "Window",
    };
    let mut child = ui.new_child(
        egui::UiBuilder::new()
            .max_rect(text_rect)
            .layout(egui::Layout::top_down(egui::Align::Min)),
    );
    // Not selectable: a selectable label would take the card's click.
    child.add(
        egui::Label::new(RichText::new(&s.name).color(visuals.text_color()))
            .truncate()
            .selectable(false),
    );
    child.add(
        egui::Label::new(RichText::new(format!("{kind} · {}×{}", s.width, s.height)).weak())
            .selectable(false),
    );
    response
        .on_hover_text(format!("Share {}", s.name))
        .clicked()
}
