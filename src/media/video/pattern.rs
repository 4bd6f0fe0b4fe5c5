//! Synthetic test picture: moving content, the participant's name and a machine-readable clock.
//!
//! The picture is drawn straight into I420 (no RGB step), so it costs little per frame.
//! Motion depends only on the frame counter, so tests get the same pictures on every run.
//!
//! The time band is two rows of 40 square cells across the top of the frame. A cell is
//! `width / 40` pixels (rounded down to even, at least 8), so at 640 wide a cell is one
//! 16×16 macroblock. Each row starts with 4 fixed guard cells; the remaining 72 cells carry
//! the capture time (64 bits, most significant first) and a CRC-8 of it. Black is 0, white
//! is 1. The reader samples the middle of each cell and only accepts clear black or white.

use super::VideoError;
use super::frame::{FrameTime, I420Frame, plane_sizes};

/// Cells per band row; fixed so the reader can derive the cell size from the width alone.
const CELLS_PER_ROW: u32 = 40;
/// Rows of cells in the band.
pub(crate) const BAND_ROWS: u32 = 2;
/// Guard cells at the start of each row (1 = white): an unlikely, asymmetric marker.
const GUARDS: [[bool; 4]; BAND_ROWS as usize] =
    [[true, false, true, true], [false, true, false, false]];
/// Smallest cell that survives low-bitrate coding reliably.
const MIN_CELL: u32 = 8;
/// Studio-swing black and white, as the encoder expects (BT.601 limited range).
const BLACK: u8 = 16;
const WHITE: u8 = 235;
/// Reader thresholds: a cell's mean must be clearly on one side of mid-grey.
const MAX_BLACK: u32 = 80;
const MIN_WHITE: u32 = 170;

/// Renders the synthetic test picture for one participant at a fixed size.
#[derive(Debug, Clone)]
pub struct TestPattern {
    name: String,
    width: u32,
    height: u32,
    frame_index: u64,
}

impl TestPattern {
    /// A pattern showing `name`; dimensions must be even and non-zero.
    pub fn new(name: &str, width: u32, height: u32) -> Result<Self, VideoError> {
        plane_sizes(width, height)?;
        Ok(Self {
            name: name.to_owned(),
            width,
            height,
            frame_index: 0,
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

    /// Draws the next frame, stamping `timestamp.unix_ms` into the time band.
    pub fn render(&mut self, timestamp: FrameTime) -> I420Frame {
        let n = self.frame_index;
        self.frame_index += 1;
        let mut frame = I420Frame::filled(self.width, self.height, (0, 128, 128), timestamp)
            .expect("dimensions were validated in TestPattern::new");
        let (w, h) = (self.width as usize, self.height as usize);
        let (y, u, v) = frame.planes_mut();
        draw_background(y, u, v, w, h, n);
        draw_moving_box(y, u, v, w, h, n);
        let cell = cell_size(self.width, self.height);
        let text_top = cell.map_or(0, |c| (BAND_ROWS * c) as usize) + 8;
        let scale = (w / 160).max(1);
        draw_text(y, u, v, w, h, (8, text_top), scale, &self.name);
        let counter = format!("#{n:06}");
        draw_text(y, u, v, w, h, (8, text_top + 9 * scale), scale, &counter);
        if let Some(cell) = cell {
            draw_time_band(y, u, v, w, cell as usize, timestamp.unix_ms);
        }
        frame
    }
}

/// Reads the capture time (Unix ms) from a frame drawn by [`TestPattern`], if it has a valid band.
pub fn read_time_band(frame: &I420Frame) -> Option<u64> {
    let cell = cell_size(frame.width(), frame.height())? as usize;
    let w = frame.width() as usize;
    let y = frame.y();
    let mut bits = Vec::with_capacity((BAND_ROWS * CELLS_PER_ROW) as usize);
    for (row, guards) in GUARDS.iter().enumerate() {
        for col in 0..CELLS_PER_ROW as usize {
            let bit = read_cell(y, w, cell, row, col)?;
            match guards.get(col) {
                Some(&expected) if expected != bit => return None,
                Some(_) => {}
                None => bits.push(bit),
            }
        }
    }
    let value = bits[..64]
        .iter()
        .fold(0u64, |acc, &b| (acc << 1) | u64::from(b));
    let crc = bits[64..72]
        .iter()
        .fold(0u8, |acc, &b| (acc << 1) | u8::from(b));
    (crc == crc8(&value.to_be_bytes())).then_some(value)
}

/// Cell edge in pixels, or None when the frame is too small to carry a readable band.
pub(crate) fn cell_size(width: u32, height: u32) -> Option<u32> {
    let cell = (width / CELLS_PER_ROW) & !1;
    (cell >= MIN_CELL && BAND_ROWS * cell <= height).then_some(cell)
}

/// Classifies one cell from the mean of its central quarter, avoiding edges blurred by coding.
fn read_cell(y: &[u8], w: usize, cell: usize, row: usize, col: usize) -> Option<bool> {
    let (x0, y0) = (col * cell + cell / 4, row * cell + cell / 4);
    let side = cell / 2;
    let sum: u32 = (y0..y0 + side)
        .map(|yy| {
            y[yy * w + x0..yy * w + x0 + side]
                .iter()
                .map(|&p| u32::from(p))
                .sum::<u32>()
        })
        .sum();
    let mean = sum / (side * side) as u32;
    if mean <= MAX_BLACK {
        Some(false)
    } else if mean >= MIN_WHITE {
        Some(true)
    } else {
        None
    }
}

pub(crate) fn draw_time_band(
    y: &mut [u8],
    u: &mut [u8],
    v: &mut [u8],
    w: usize,
    cell: usize,
    unix_ms: u64,
) {
    let crc = crc8(&unix_ms.to_be_bytes());
    let mut payload = (0..64)
        .rev()
        .map(|i| (unix_ms >> i) & 1 == 1)
        .chain((0..8).rev().map(|i| (crc >> i) & 1 == 1));
    // Row-major: each row starts with its guards, payload cells fill the rest.
    for (row, row_guards) in GUARDS.iter().enumerate() {
        for col in 0..CELLS_PER_ROW as usize {
            let white = row_guards
                .get(col)
                .copied()
                .or_else(|| payload.next())
                .expect("band layout holds exactly 8 guard and 72 payload cells");
            let luma = if white { WHITE } else { BLACK };
            fill_rect(
                y,
                u,
                v,
                w,
                (col * cell, row * cell),
                (cell, cell),
                (luma, 128, 128),
            );
        }
    }
}

/// CRC-8 (polynomial 0x07), enough to reject misreads of a 64-bit value.
fn crc8(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |mut crc, &byte| {
        crc ^= byte;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
        crc
    })
}

/// Triangle wave 0..=255..0 with period 512, smooth enough to code cheaply yet clearly moving.
fn tri(v: usize) -> usize {
    let t = v % 512;
    if t < 256 { t } else { 511 - t }
}

fn draw_background(y: &mut [u8], u: &mut [u8], v: &mut [u8], w: usize, h: usize, n: u64) {
    let shift = (n as usize).wrapping_mul(3);
    for row in 0..h {
        let line = &mut y[row * w..(row + 1) * w];
        for (col, p) in line.iter_mut().enumerate() {
            *p = (40 + tri(col + row / 2 + shift) * 150 / 256) as u8;
        }
    }
    let (cw, ch) = (w / 2, h / 2);
    for row in 0..ch {
        for col in 0..cw {
            let i = row * cw + col;
            u[i] = (64 + tri(col * 2 + shift) / 2) as u8;
            v[i] = (64 + tri(row * 3 + col + shift * 2) / 2) as u8;
        }
    }
}

fn draw_moving_box(y: &mut [u8], u: &mut [u8], v: &mut [u8], w: usize, h: usize, n: u64) {
    let size = (h / 4).max(2) & !1;
    if size >= w || size >= h {
        return;
    }
    // Bounce horizontally at 8 px per frame so a frozen stream is obvious at a glance.
    let span = w - size;
    let travel = (n as usize).wrapping_mul(8) % (2 * span);
    let x = if travel < span {
        travel
    } else {
        2 * span - travel
    };
    let top = ((h - size) / 2) & !1;
    fill_rect(y, u, v, w, (x & !1, top), (size, size), (82, 90, 240));
}

#[allow(clippy::too_many_arguments)] // drawing helpers take planes, geometry and colour
pub(crate) fn draw_text(
    y: &mut [u8],
    u: &mut [u8],
    v: &mut [u8],
    w: usize,
    h: usize,
    (left, top): (usize, usize),
    scale: usize,
    text: &str,
) {
    let advance = 6 * scale;
    let chars: Vec<char> = text
        .chars()
        .take((w.saturating_sub(left)) / advance)
        .collect();
    if chars.is_empty() || top + 9 * scale > h {
        return;
    }
    // A dark backing box keeps the text readable over any background.
    let (bx, by) = (
        left.saturating_sub(scale) & !1,
        top.saturating_sub(scale) & !1,
    );
    let bw = ((chars.len() * advance + 2 * scale).min(w - bx) + 1) & !1;
    let bh = (9 * scale + 1) & !1;
    fill_rect(y, u, v, w, (bx, by), (bw.min(w - bx), bh), (16, 128, 128));
    for (i, ch) in chars.iter().enumerate() {
        let glyph = glyph(*ch);
        for (gy, bits) in glyph.iter().enumerate() {
            for gx in 0..5 {
                if bits & (0x10 >> gx) != 0 {
                    let px = left + i * advance + gx * scale;
                    let py = top + scale + gy * scale;
                    for yy in py..(py + scale).min(h) {
                        for xx in px..(px + scale).min(w) {
                            y[yy * w + xx] = WHITE;
                        }
                    }
                }
            }
        }
    }
}

/// Fills a rectangle; the chroma rectangle covers the same area at half resolution.
pub(crate) fn fill_rect(
    y: &mut [u8],
    u: &mut [u8],
    v: &mut [u8],
    w: usize,
    (x0, y0): (usize, usize),
    (rw, rh): (usize, usize),
    (ly, lu, lv): (u8, u8, u8),
) {
    let h = y.len() / w;
    let (x1, y1) = ((x0 + rw).min(w), (y0 + rh).min(h));
    for row in y0..y1 {
        y[row * w + x0..row * w + x1].fill(ly);
    }
    let cw = w / 2;
    for row in y0 / 2..y1.div_ceil(2).min(h / 2) {
        let range = row * cw + x0 / 2..row * cw + x1.div_ceil(2).min(cw);
        u[range.clone()].fill(lu);
        v[range].fill(lv);
    }
}

/// 5×7 glyphs, one byte per row, bit 4 = leftmost column. Letters are shown upper-case.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        ' ' => [0; 7],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(unix_ms: u64) -> FrameTime {
        FrameTime {
            unix_ms,
            ..FrameTime::now()
        }
    }

    #[test]
    fn band_round_trips_without_coding() {
        for (w, h) in [(640, 360), (1280, 720), (320, 180)] {
            let mut pattern = TestPattern::new("Ada", w, h).unwrap();
            for ms in [0, 1, 1_763_000_000_123, u64::MAX] {
                assert_eq!(read_time_band(&pattern.render(at(ms))), Some(ms), "{w}x{h}");
            }
        }
    }

    #[test]
    fn frames_move() {
        let mut pattern = TestPattern::new("Ada", 640, 360).unwrap();
        let a = pattern.render(at(5));
        let b = pattern.render(at(5));
        assert_ne!(
            a.y(),
            b.y(),
            "consecutive frames must differ even with the same time"
        );
    }

    #[test]
    fn a_single_flipped_cell_is_rejected() {
        let mut frame = TestPattern::new("Ada", 640, 360)
            .unwrap()
            .render(at(1_763_000_000_123));
        // Invert the last data cell of row 0 (columns 624..640, rows 0..16).
        let (y, _, _) = frame.planes_mut();
        for row in 0..16 {
            for p in &mut y[row * 640 + 624..row * 640 + 640] {
                *p = if *p > 128 { BLACK } else { WHITE };
            }
        }
        assert_eq!(read_time_band(&frame), None);
    }

    #[test]
    fn tiny_frames_have_no_band() {
        let frame = TestPattern::new("A", 160, 90).unwrap().render(at(42));
        assert_eq!(read_time_band(&frame), None);
    }
}
