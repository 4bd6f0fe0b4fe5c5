//! The spotlight layout for a screen share: the share large, everyone's camera tiles in a
//! strip beside it or below it (whichever leaves the share larger), and the share's tile
//! itself, shown fitted or at its actual size.

use egui::{
    Color32, CornerRadius, CursorIcon, Rect, RichText, ScrollArea, Sense, TextureId, Ui, UiBuilder,
    vec2,
};

use super::grid::{TILE_ASPECT, fit, tile_rects};

/// Where the strip of camera tiles goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StripSide {
    /// A column at the right (wide windows).
    Right,
    /// A row at the bottom (narrow or tall windows).
    Bottom,
}

/// The spotlight's rects: the share's and the strip tiles'.
#[derive(Debug, Clone, PartialEq)]
pub struct SpotlightRects {
    /// The space for the share (the picture is fitted inside it).
    pub share: Rect,
    /// One rect per strip tile, in order.
    pub strip: Vec<Rect>,
    /// Where the strip went.
    pub side: StripSide,
}

/// The strip beside the share: this share of the width, within these bounds, points.
const COLUMN_FRACTION: f32 = 0.2;
const COLUMN_WIDTH: (f32, f32) = (140.0, 260.0);
/// The strip below the share: this share of the height, within these bounds, points.
const ROW_FRACTION: f32 = 0.2;
const ROW_HEIGHT: (f32, f32) = (80.0, 150.0);

/// Lays out a share of `share_aspect` (width / height) and `strip_tiles` camera tiles in
/// `area`: the strip goes to the right or the bottom, whichever shows the share larger.
pub fn spotlight_rects(
    area: Rect,
    strip_tiles: usize,
    share_aspect: f32,
    gap: f32,
) -> SpotlightRects {
    if strip_tiles == 0 || area.width() <= 0.0 || area.height() <= 0.0 {
        return SpotlightRects {
            share: area,
            strip: Vec::new(),
            side: StripSide::Right,
        };
    }
    let column_w = (area.width() * COLUMN_FRACTION).clamp(COLUMN_WIDTH.0, COLUMN_WIDTH.1);
    let row_h = (area.height() * ROW_FRACTION).clamp(ROW_HEIGHT.0, ROW_HEIGHT.1);
    let beside = {
        let mut share = area;
        share.max.x -= column_w + gap;
        let mut strip = area;
        strip.min.x = share.max.x + gap;
        (share, strip, StripSide::Right)
    };
    let below = {
        let mut share = area;
        share.max.y -= row_h + gap;
        let mut strip = area;
        strip.min.y = share.max.y + gap;
        (share, strip, StripSide::Bottom)
    };
    let shown = |share: Rect| {
        if share.width() <= 0.0 || share.height() <= 0.0 {
            0.0
        } else {
            fit(share, share_aspect).area()
        }
    };
    let (share, strip, side) = if shown(beside.0) >= shown(below.0) {
        beside
    } else {
        below
    };
    SpotlightRects {
        share,
        strip: tile_rects(strip_tiles, strip, TILE_ASPECT, gap),
        side,
    }
}

/// What a share's tile shows.
pub struct ShareTile<'a> {
    /// Whose share, for "Ada's screen".
    pub owner: &'a str,
    /// The share's texture and its size in pixels, once a frame came.
    pub video: Option<(TextureId, [usize; 2])>,
    /// Shown at its actual size (scrolling) rather than fitted.
    pub actual: bool,
    /// What a click does, shown on hover and in the corner ("click for actual size").
    pub hint: &'a str,
}

/// The label of `owner`'s share: "Ada's screen".
pub fn share_label(owner: &str) -> String {
    format!("{owner}'s screen")
}

const BACKGROUND: Color32 = Color32::from_rgb(24, 25, 29);
const RADIUS: u8 = 8;

/// Draws a share into `rect`; true when it was clicked.
pub fn show_share(ui: &mut Ui, rect: Rect, tile: &ShareTile<'_>) -> bool {
    let painter = ui.painter_at(rect);
    let radius = CornerRadius::same(RADIUS);
    painter.rect_filled(rect, radius, BACKGROUND);
    let label = share_label(tile.owner);
    let mut clicked = false;
    match tile.video {
        Some((texture, [w, h])) if w > 0 && h > 0 => {
            let picture = egui::Image::new((texture, vec2(w as f32, h as f32)))
                .sense(Sense::click())
                .alt_text(format!("{label}, shared"));
            let response = if tile.actual {
                // One texel to one physical pixel: small text stays as sharp as it was sent.
                let ppp = ui.ctx().pixels_per_point();
                let size = vec2(w as f32, h as f32) / ppp;
                // The plates get a row of their own above the scrolling picture: painted
                // over a scroll area they would lose their backing to its content.
                let mut scrolled = rect;
                scrolled.min.y += PLATE_ROW;
                ui.scope_builder(UiBuilder::new().max_rect(scrolled), |ui| {
                    ScrollArea::both()
                        .id_salt(("share-actual", tile.owner))
                        .auto_shrink(false)
                        .show(ui, |ui| ui.add(picture.fit_to_exact_size(size)))
                        .inner
                })
                .inner
            } else {
                let area = fit(rect, w as f32 / h as f32);
                ui.put(area, picture.fit_to_exact_size(area.size()))
            };
            let cursor = if tile.actual {
                CursorIcon::ZoomOut
            } else {
                CursorIcon::ZoomIn
            };
            clicked = response.on_hover_cursor(cursor).clicked();
        }
        _ => {
            ui.put(
                rect,
                egui::Label::new(
                    RichText::new(format!("Waiting for {label}…")).color(Color32::LIGHT_GRAY),
                )
                .selectable(false),
            );
        }
    }
    let name_at = if tile.actual && tile.video.is_some() {
        Plate::TopLeft
    } else {
        Plate::BottomLeft
    };
    plate(ui, rect, &label, name_at);
    plate(ui, rect, tile.hint, Plate::TopRight);
    clicked
}

enum Plate {
    TopLeft,
    BottomLeft,
    TopRight,
}

/// Height of the row the plates take above a share shown at its actual size.
const PLATE_ROW: f32 = 36.0;

/// A dark plate with white text in a corner of `rect`, cut to its width.
fn plate(ui: &mut Ui, rect: Rect, text: &str, corner: Plate) {
    let h = 24.0;
    let w = ui
        .painter()
        .layout_no_wrap(
            text.to_owned(),
            egui::FontId::proportional(14.0),
            Color32::WHITE,
        )
        .size()
        .x
        + 12.0;
    let w = w.min(rect.width() - 12.0).max(0.0);
    let min = match corner {
        Plate::TopLeft => rect.left_top() + vec2(6.0, 6.0),
        Plate::BottomLeft => rect.left_bottom() + vec2(6.0, -h - 6.0),
        Plate::TopRight => rect.right_top() + vec2(-w - 6.0, 6.0),
    };
    let plate = Rect::from_min_size(min, vec2(w, h));
    ui.painter()
        .rect_filled(plate, CornerRadius::same(4), Color32::from_black_alpha(170));
    ui.put(
        plate,
        egui::Label::new(RichText::new(text).color(Color32::WHITE))
            .truncate()
            .selectable(false),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use egui::{Pos2, pos2};

    fn area(w: f32, h: f32) -> Rect {
        Rect::from_min_size(Pos2::ZERO, vec2(w, h))
    }

    fn check(s: &SpotlightRects, a: Rect, n: usize) {
        assert_eq!(s.strip.len(), n);
        assert!(a.expand(1e-3).contains_rect(s.share), "{s:?}");
        for r in &s.strip {
            assert!(a.expand(1e-3).contains_rect(*r), "{r:?} outside {a:?}");
            assert!(!r.intersects(s.share.shrink(0.5)), "{r:?} over the share");
        }
    }

    #[test]
    fn a_wide_window_puts_the_strip_beside() {
        let a = area(1280.0, 640.0);
        let s = spotlight_rects(a, 4, 16.0 / 9.0, 8.0);
        check(&s, a, 4);
        assert_eq!(s.side, StripSide::Right);
        // The share keeps most of the window.
        assert!(s.share.width() > 0.75 * a.width(), "{s:?}");
        assert!(s.strip.iter().all(|r| r.left() > s.share.right()));
    }

    #[test]
    fn a_narrow_window_puts_the_strip_below() {
        let a = area(800.0, 520.0);
        let s = spotlight_rects(a, 4, 16.0 / 9.0, 8.0);
        check(&s, a, 4);
        assert_eq!(s.side, StripSide::Bottom);
        assert!(s.strip.iter().all(|r| r.top() > s.share.bottom()));
        // One row of tiles.
        assert!(
            s.strip
                .iter()
                .all(|r| (r.top() - s.strip[0].top()).abs() < 0.5)
        );
    }

    #[test]
    fn a_portrait_share_puts_the_strip_beside() {
        // A portrait window shared into a landscape area: a column costs it nothing.
        let a = area(900.0, 600.0);
        let s = spotlight_rects(a, 2, 9.0 / 16.0, 8.0);
        assert_eq!(s.side, StripSide::Right);
        check(&s, a, 2);
    }

    #[test]
    fn nothing_in_the_strip_gives_the_share_everything() {
        let a = area(640.0, 480.0);
        let s = spotlight_rects(a, 0, 16.0 / 9.0, 8.0);
        assert_eq!(s.share, a);
        assert!(s.strip.is_empty());
        let tiny = spotlight_rects(
            Rect::from_min_max(pos2(0.0, 0.0), pos2(0.0, 0.0)),
            3,
            1.0,
            8.0,
        );
        assert!(tiny.strip.is_empty());
    }
}
