//! Laying tiles out: the grid that fits 1 to 9 (or more) tiles of one aspect ratio into
//! the space there is, as large as possible, rows centred.

use egui::{Pos2, Rect, Vec2, pos2, vec2};

/// Aspect ratio of a tile (width / height): video is 16:9.
pub const TILE_ASPECT: f32 = 16.0 / 9.0;

/// Space between tiles, points.
pub const GAP: f32 = 8.0;

/// Where each of `n` tiles goes inside `area`.
pub fn tile_rects(n: usize, area: Rect, aspect: f32, gap: f32) -> Vec<Rect> {
    if n == 0 || area.width() <= 0.0 || area.height() <= 0.0 {
        return Vec::new();
    }
    let (cols, tile) = best_columns(n, area.size(), aspect, gap);
    let rows = n.div_ceil(cols);
    let grid_h = rows as f32 * tile.y + (rows - 1) as f32 * gap;
    // Clamped: when the grid fills the height exactly, rounding can leave it a hair above.
    let top = area.top() + ((area.height() - grid_h) / 2.0).max(0.0);
    let mut rects = Vec::with_capacity(n);
    for row in 0..rows {
        let in_row = (n - row * cols).min(cols);
        let row_w = in_row as f32 * tile.x + (in_row - 1) as f32 * gap;
        let left = area.left() + ((area.width() - row_w) / 2.0).max(0.0);
        for col in 0..in_row {
            let min: Pos2 = pos2(
                left + col as f32 * (tile.x + gap),
                top + row as f32 * (tile.y + gap),
            );
            rects.push(Rect::from_min_size(min, tile));
        }
    }
    rects
}

/// The column count giving the largest tiles, and that tile size.
fn best_columns(n: usize, avail: Vec2, aspect: f32, gap: f32) -> (usize, Vec2) {
    let mut best = (1, Vec2::ZERO);
    for cols in 1..=n {
        let rows = n.div_ceil(cols);
        let cell_w = (avail.x - gap * (cols - 1) as f32) / cols as f32;
        let cell_h = (avail.y - gap * (rows - 1) as f32) / rows as f32;
        if cell_w <= 0.0 || cell_h <= 0.0 {
            continue;
        }
        // Whichever side limits is taken exactly, so a full column of tiles sums to the
        // height available rather than a rounding error past it.
        let tile = if cell_w <= cell_h * aspect {
            vec2(cell_w, cell_w / aspect)
        } else {
            vec2(cell_h * aspect, cell_h)
        };
        if tile.x > best.1.x {
            best = (cols, tile);
        }
    }
    best
}

/// The largest rect of `aspect` centred in `outer` (video letterboxed in its tile).
pub fn fit(outer: Rect, aspect: f32) -> Rect {
    let w = outer.width().min(outer.height() * aspect);
    Rect::from_center_size(outer.center(), vec2(w, w / aspect))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(w: f32, h: f32) -> Rect {
        Rect::from_min_size(Pos2::ZERO, vec2(w, h))
    }

    fn cols(rects: &[Rect]) -> usize {
        rects
            .iter()
            .filter(|r| (r.top() - rects[0].top()).abs() < 0.5)
            .count()
    }

    #[test]
    fn grows_sensibly_from_one_to_nine() {
        let a = area(1280.0, 720.0);
        let expected_cols = [1, 2, 2, 2, 3, 3, 3, 3, 3];
        for n in 1..=9 {
            let rects = tile_rects(n, a, TILE_ASPECT, GAP);
            assert_eq!(rects.len(), n);
            assert_eq!(cols(&rects), expected_cols[n - 1], "n={n}");
            for r in &rects {
                // A thousandth of a point is float rounding, not a tile off screen.
                assert!(a.expand(1e-3).contains_rect(*r), "n={n}: {r:?} outside");
                assert!((r.width() / r.height() - TILE_ASPECT).abs() < 1e-3);
            }
            for (i, x) in rects.iter().enumerate() {
                for y in &rects[i + 1..] {
                    assert!(!x.shrink(0.5).intersects(*y), "n={n}: overlap");
                }
            }
        }
    }

    #[test]
    fn tall_windows_stack_tiles() {
        let rects = tile_rects(3, area(400.0, 1200.0), TILE_ASPECT, GAP);
        assert_eq!(cols(&rects), 1);
    }

    #[test]
    fn last_row_is_centred() {
        let a = area(1280.0, 720.0);
        let rects = tile_rects(3, a, TILE_ASPECT, GAP);
        let last = rects[2];
        assert!((last.center().x - a.center().x).abs() < 0.5);
    }

    #[test]
    fn nothing_fits_in_nothing() {
        assert!(tile_rects(4, area(0.0, 100.0), TILE_ASPECT, GAP).is_empty());
        assert!(tile_rects(0, area(100.0, 100.0), TILE_ASPECT, GAP).is_empty());
    }

    #[test]
    fn video_keeps_its_aspect_inside_a_tile() {
        let tile = area(160.0, 90.0);
        let portrait = fit(tile, 9.0 / 16.0);
        assert!((portrait.height() - 90.0).abs() < 1e-3);
        assert!((portrait.width() - 90.0 * 9.0 / 16.0).abs() < 1e-3);
        assert!((portrait.center().x - 80.0).abs() < 1e-3);
    }
}
