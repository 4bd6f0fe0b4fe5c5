//! A synthetic screen for tests and benchmarks: a dark-themed desktop of fine text, a
//! moving mouse pointer and the test pattern's time band, so latency reads back on the
//! receiving side exactly as for the camera pattern.
//!
//! Screens change little between frames, and that is what screen encoders are tuned for:
//! the text scrolls by one line every [`TEXT_STEP_FRAMES`] frames, a counter ticks every
//! frame, the pointer moves every frame. The text layer is drawn once per step and reused.
//! Like the camera pattern, everything depends only on the frame counter.

use super::super::VideoError;
use super::super::frame::{FrameTime, I420Frame, plane_sizes};
use super::super::pattern::{BAND_ROWS, cell_size, draw_text, draw_time_band, fill_rect};

/// Frames between two scroll steps of the log (one second at 10 fps).
pub const TEXT_STEP_FRAMES: u64 = 10;
/// Background: near-black, like a dark editor or terminal (and `draw_text`'s backing box).
const BACKGROUND: (u8, u8, u8) = (16, 128, 128);
/// Pixels between text lines at scale 1 (7-pixel glyphs).
const LINE_HEIGHT: usize = 10;
/// Glyph advance at scale 1.
const ADVANCE: usize = 6;

/// Lines the scrolling log cycles through (the glyph set is upper-case letters, digits, `-_.:#`).
const LOG_LINES: [&str; 10] = [
    "CONNECTED TO ROOM AB12-CD34 AS ADA",
    "PEER BOB JOINED: H264 42E01F - OPUS 48000 HZ",
    "ICE PAIR SUCCEEDED: 127.0.0.1:40211 - 127.0.0.1:51873",
    "BANDWIDTH ESTIMATE 2.48 MBPS - LOSS 0.2 PCT - RTT 31 MS",
    "KEYFRAME REQUESTED BY CAROL",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "PACK MY BOX WITH FIVE DOZEN LIQUOR JUGS",
    "SPHINX OF BLACK QUARTZ: JUDGE MY VOW",
    "SCREEN SHARE STARTED: 1920X1080 AT 10 FPS",
    "JITTER BUFFER 42 MS - 0 LATE - 0 LOST",
];

/// The pointer, 11×16 at scale 1: `#` outline, `o` fill.
const POINTER: [&str; 16] = [
    "#..........",
    "##.........",
    "#o#........",
    "#oo#.......",
    "#ooo#......",
    "#oooo#.....",
    "#ooooo#....",
    "#oooooo#...",
    "#ooooooo#..",
    "#oooooooo#.",
    "#ooooo#####",
    "#oo#oo#....",
    "#o#.#oo#...",
    "##..#oo#...",
    "#....#oo#..",
    ".....####..",
];

/// Renders the synthetic screen at a fixed size.
#[derive(Debug, Clone)]
pub struct TestScreen {
    width: u32,
    height: u32,
    frame_index: u64,
    /// The text layer and the scroll step it shows.
    text_layer: Option<(u64, I420Frame)>,
}

impl TestScreen {
    /// A screen of this size; dimensions must be even and non-zero.
    pub fn new(width: u32, height: u32) -> Result<Self, VideoError> {
        plane_sizes(width, height)?;
        Ok(Self {
            width,
            height,
            frame_index: 0,
            text_layer: None,
        })
    }

    /// Width of the rendered frames.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height of the rendered frames.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Where the pointer's tip is in frame `n` (pixels from the top left).
    pub fn pointer_at(&self, n: u64) -> (usize, usize) {
        // Two slow sines of unrelated periods: the pointer wanders over the whole screen.
        let t = n as f64;
        let (w, h) = (f64::from(self.width), f64::from(self.height));
        let x = w * (0.5 + 0.4 * (t * 0.07).sin());
        let y = h * (0.55 + 0.35 * (t * 0.05 + 1.0).sin());
        (x as usize, y as usize)
    }

    /// Draws the next frame, stamping `timestamp.unix_ms` into the time band.
    pub fn render(&mut self, timestamp: FrameTime) -> I420Frame {
        let n = self.frame_index;
        self.frame_index += 1;
        let step = n / TEXT_STEP_FRAMES;
        let mut frame = match &self.text_layer {
            Some((shown, layer)) if *shown == step => layer.clone(),
            _ => {
                let layer = self.text_layer(step);
                self.text_layer = Some((step, layer.clone()));
                layer
            }
        };
        frame.set_timestamp(timestamp);
        let (w, h) = (self.width as usize, self.height as usize);
        let cell = cell_size(self.width, self.height);
        let (y, u, v) = frame.planes_mut();
        let counter = format!("FRAME {n:06}");
        let counter_left = w.saturating_sub(counter.len() * ADVANCE * 2 + 16);
        draw_text(y, u, v, w, h, (counter_left, title_top(cell)), 2, &counter);
        let (px, py) = self.pointer_at(n);
        draw_pointer(y, w, h, (px, py), (h / 540).max(1));
        // Last, so the pointer never hides the band.
        if let Some(cell) = cell {
            draw_time_band(y, u, v, w, cell as usize, timestamp.unix_ms);
        }
        frame
    }

    /// Everything that changes once per scroll step: panels, log and code text.
    fn text_layer(&self, step: u64) -> I420Frame {
        let mut frame = I420Frame::filled(self.width, self.height, BACKGROUND, FrameTime::now())
            .expect("dimensions were validated in TestScreen::new");
        let (w, h) = (self.width as usize, self.height as usize);
        let cell = cell_size(self.width, self.height);
        let (y, u, v) = frame.planes_mut();
        let title = format!("MESHCALL TEST SCREEN {w}X{h}");
        draw_text(y, u, v, w, h, (8, title_top(cell)), 2, &title);
        let body_top = title_top(cell) + 2 * 9 + 12;
        // A status bar and a divider: a little colour and long straight edges, as real
        // desktops have.
        let bar = 2 * LINE_HEIGHT;
        if h > body_top + bar {
            fill_rect(y, u, v, w, (0, h - bar), (w, bar), (41, 200, 118));
            draw_text(
                y,
                u,
                v,
                w,
                h,
                (8, h - bar + 6),
                1,
                "MAIN.RS  LN 42 COL 7  UTF-8  RUST",
            );
        }
        let half = (w / 2) & !1;
        fill_rect(y, u, v, w, (half, body_top), (2, h), (90, 128, 128));
        let rows = h.saturating_sub(body_top + bar + 4) / LINE_HEIGHT;
        let columns = half.saturating_sub(24) / ADVANCE;
        for row in 0..rows {
            let top = body_top + row * LINE_HEIGHT;
            let index = step + row as u64;
            let log = format!(
                "{index:06}  {}",
                LOG_LINES[(index % LOG_LINES.len() as u64) as usize]
            );
            draw_text(y, u, v, w, h, (8, top), 1, &truncate(&log, columns));
            let code = format!(
                "{:4}  LET FRAME_{:03} = ENCODE:PACKET_{}.0 - {} - {};",
                row + 1,
                row * 7 % 1000,
                row % 13,
                row * row % 97,
                "STRIDE_WIDTH_HEIGHT"
            );
            draw_text(
                y,
                u,
                v,
                w,
                h,
                (half + 12, top),
                1,
                &truncate(&code, columns),
            );
        }
        frame
    }
}

/// Top of the title line: just below the band (if the frame is large enough to have one).
fn title_top(cell: Option<u32>) -> usize {
    cell.map_or(0, |c| (BAND_ROWS * c) as usize) + 8
}

fn truncate(text: &str, chars: usize) -> String {
    text.chars().take(chars).collect()
}

/// Draws the pointer's luma with its tip at `tip`, clipped to the frame.
fn draw_pointer(y: &mut [u8], w: usize, h: usize, tip: (usize, usize), scale: usize) {
    for (row, line) in POINTER.iter().enumerate() {
        for (col, c) in line.bytes().enumerate() {
            let luma = match c {
                b'#' => 16,
                b'o' => 235,
                _ => continue,
            };
            for dy in 0..scale {
                for dx in 0..scale {
                    let (px, py) = (tip.0 + col * scale + dx, tip.1 + row * scale + dy);
                    if px < w && py < h {
                        y[py * w + px] = luma;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::pattern::read_time_band;
    use super::*;

    fn at(unix_ms: u64) -> FrameTime {
        FrameTime {
            unix_ms,
            ..FrameTime::now()
        }
    }

    #[test]
    fn band_round_trips_at_screen_sizes() {
        for (w, h) in [(1920, 1080), (1280, 720), (640, 360)] {
            let mut screen = TestScreen::new(w, h).unwrap();
            for ms in [1, 1_763_000_000_123] {
                let frame = screen.render(at(ms));
                assert_eq!((frame.width(), frame.height()), (w, h));
                assert_eq!(read_time_band(&frame), Some(ms), "{w}x{h}");
            }
        }
    }

    #[test]
    fn frames_change_a_little_and_text_scrolls_slowly() {
        let mut screen = TestScreen::new(1920, 1080).unwrap();
        let frames: Vec<I420Frame> = (0..=TEXT_STEP_FRAMES)
            .map(|_| screen.render(at(5)))
            .collect();
        let changed = |a: &I420Frame, b: &I420Frame| {
            a.y().iter().zip(b.y()).filter(|(p, q)| p != q).count() as f64 / a.y().len() as f64
        };
        // Within a step only the counter and the pointer move: well under 1 % of the pixels.
        let small = changed(&frames[0], &frames[1]);
        assert!(small > 0.0 && small < 0.01, "{small}");
        // A scroll step redraws the text: many more pixels change.
        let step = changed(
            &frames[TEXT_STEP_FRAMES as usize - 1],
            &frames[TEXT_STEP_FRAMES as usize],
        );
        assert!(step > 5.0 * small, "{step} vs {small}");
    }

    #[test]
    fn the_screen_is_mostly_fine_text_on_a_dark_background() {
        let frame = TestScreen::new(1920, 1080).unwrap().render(at(5));
        let bright = frame.y().iter().filter(|&&p| p >= 200).count() as f64;
        let share = bright / frame.y().len() as f64;
        // Text pixels are white; a few percent of the screen, not blocks of colour.
        assert!((0.02..0.25).contains(&share), "{share}");
    }

    #[test]
    fn the_pointer_is_drawn_where_it_is_said_to_be() {
        let mut screen = TestScreen::new(1280, 720).unwrap();
        for n in 0..40 {
            let frame = screen.render(at(5));
            let (x, y) = screen.pointer_at(n);
            // One pixel inside the tip's outline the pointer is white (or it is off-screen).
            let (fx, fy) = (x + 1, y + 3);
            if fx < 1280 && fy < 720 && y > 100 {
                assert_eq!(frame.y()[fy * 1280 + fx], 235, "frame {n} at {fx},{fy}");
            }
        }
    }
}
