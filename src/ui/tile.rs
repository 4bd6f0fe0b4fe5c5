//! One person's tile: their video (or initials), name, muted badge, speaking border and
//! connection-quality mark.

use egui::{Color32, CornerRadius, FontId, Rect, Sense, Stroke, StrokeKind, TextureId, Ui, vec2};

use super::call_model::{LinkNumbers, Quality, initials};
use super::grid::fit;

/// What a tile shows.
pub struct TileContent<'a> {
    /// Name under the video.
    pub name: &'a str,
    /// Our own tile (its name plate says so).
    pub is_self: bool,
    /// Video texture and its size in pixels, when the camera is on and a frame arrived.
    pub video: Option<(TextureId, [usize; 2])>,
    /// Microphone on.
    pub mic_on: bool,
    /// Currently speaking.
    pub speaking: bool,
    /// Connection quality with its numbers (none for our own tile).
    pub quality: Option<(Quality, Option<LinkNumbers>)>,
    /// A line under the initials when there is no video ("Connecting…").
    pub status: Option<&'a str>,
}

const BACKGROUND: Color32 = Color32::from_rgb(40, 42, 48);
const SPEAKING: Color32 = Color32::from_rgb(80, 200, 120);
const RADIUS: u8 = 8;

/// Draws a tile into `rect`.
pub fn show(ui: &mut Ui, rect: Rect, tile: &TileContent<'_>) {
    let painter = ui.painter_at(rect);
    let radius = CornerRadius::same(RADIUS);
    painter.rect_filled(rect, radius, BACKGROUND);
    match tile.video {
        Some((texture, [w, h])) if w > 0 && h > 0 => {
            let area = fit(rect, w as f32 / h as f32);
            ui.put(
                area,
                egui::Image::new((texture, area.size()))
                    .corner_radius(radius)
                    .alt_text(format!("{}'s video", tile.name)),
            );
        }
        _ => {
            let d = (rect.height() * 0.4).clamp(24.0, 120.0);
            let circle = Rect::from_center_size(rect.center(), vec2(d, d));
            painter.circle_filled(circle.center(), d / 2.0, avatar_colour(tile.name));
            ui.put(
                circle,
                egui::Label::new(
                    egui::RichText::new(initials(tile.name))
                        .size(d * 0.4)
                        .color(Color32::WHITE)
                        .strong(),
                )
                .selectable(false),
            );
            if let Some(status) = tile.status {
                let below = Rect::from_min_size(
                    circle.center_bottom() + vec2(-rect.width() / 2.0, 4.0),
                    vec2(rect.width(), 18.0),
                );
                ui.put(below, egui::Label::new(status).selectable(false));
            }
        }
    }
    name_plate(ui, rect, tile);
    if let Some((quality, numbers)) = &tile.quality {
        quality_mark(ui, rect, tile.name, *quality, numbers.as_ref());
    }
    if tile.speaking {
        painter.rect_stroke(rect, radius, Stroke::new(3.0, SPEAKING), StrokeKind::Inside);
    }
}

fn name_plate(ui: &mut Ui, rect: Rect, tile: &TileContent<'_>) {
    let font = FontId::proportional(14.0);
    let plate_h = 24.0;
    let mut x = rect.left() + 6.0;
    let y = rect.bottom() - plate_h - 6.0;
    if !tile.mic_on {
        let badge = Rect::from_min_size(egui::pos2(x, y), vec2(52.0, plate_h));
        ui.painter()
            .rect_filled(badge, CornerRadius::same(4), Color32::from_rgb(200, 60, 60));
        ui.put(
            badge,
            egui::Label::new(egui::RichText::new("Muted").color(Color32::WHITE)).selectable(false),
        );
        x = badge.right() + 4.0;
    }
    let text = if tile.is_self {
        format!("{} (you)", tile.name)
    } else {
        tile.name.to_owned()
    };
    let galley_w = ui
        .painter()
        .layout_no_wrap(text.clone(), font, Color32::WHITE)
        .size()
        .x;
    let plate = Rect::from_min_size(
        egui::pos2(x, y),
        vec2(
            (galley_w + 12.0).min(rect.right() - x - 6.0).max(0.0),
            plate_h,
        ),
    );
    ui.painter()
        .rect_filled(plate, CornerRadius::same(4), Color32::from_black_alpha(160));
    ui.put(
        plate,
        egui::Label::new(egui::RichText::new(text).color(Color32::WHITE))
            .truncate()
            .selectable(false),
    );
}

fn quality_mark(
    ui: &mut Ui,
    rect: Rect,
    name: &str,
    quality: Quality,
    numbers: Option<&LinkNumbers>,
) {
    let colour = match quality {
        Quality::Good => Color32::from_rgb(80, 200, 120),
        Quality::Fair => Color32::from_rgb(230, 180, 60),
        Quality::Poor => Color32::from_rgb(220, 70, 70),
        Quality::Unknown => Color32::GRAY,
    };
    let spot = Rect::from_center_size(rect.right_top() + vec2(-16.0, 16.0), vec2(16.0, 16.0));
    ui.painter().circle_filled(spot.center(), 6.0, colour);
    let response = ui.interact(spot, ui.scope_id().with(("quality", name)), Sense::hover());
    let label = format!("Connection quality: {name}");
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, &label));
    let text = match numbers {
        Some(n) => describe(quality, n),
        None => "Connection: not measured yet".to_owned(),
    };
    response.on_hover_text(text);
}

/// The quality tooltip: the participant report's numbers for this member, in words.
pub fn describe(quality: Quality, n: &LinkNumbers) -> String {
    let rtt = n
        .rtt_ms
        .map_or_else(|| "RTT —".to_owned(), |r| format!("RTT {r:.0} ms"));
    let layer = n.layer_out.as_deref().unwrap_or("—");
    let size = n
        .resolution
        .map_or_else(|| "—".to_owned(), |(w, h)| format!("{w}x{h}"));
    format!(
        "Connection: {quality:?}\n{rtt}\nLoss {:.1} % ({:.1} % over the call)\n\
         In {:.0} kbit/s · Out {:.0} kbit/s\n\
         Their video {:.0} kbit/s, {:.0} fps, {size}\n\
         Freezes {} ({} ms) · audio concealed {}\n\
         Asked again {} · resent {}\nWe send {layer}",
        n.loss * 100.0,
        n.loss_total * 100.0,
        n.bitrate_in / 1000.0,
        n.bitrate_out / 1000.0,
        n.video_bitrate_in / 1000.0,
        n.fps_in,
        n.freezes,
        n.freeze_time.as_millis(),
        n.audio_concealed,
        n.nacks_sent,
        n.retransmissions,
    )
}

/// A steady colour per name, so people keep their colour between calls.
fn avatar_colour(name: &str) -> Color32 {
    let h = name.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    });
    let hue = (h % 360) as f32 / 360.0;
    egui::ecolor::Hsva::new(hue, 0.45, 0.55, 1.0).into()
}
