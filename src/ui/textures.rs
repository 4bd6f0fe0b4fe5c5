//! One texture per video, created once and updated with `set` only when a new frame came.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui::{ColorImage, Context, TextureHandle, TextureOptions};

use crate::media::video::{I420Frame, i420_to_rgba_into};

/// Textures keyed by member id (our own self-view under [`SELF_KEY`]).
#[derive(Default)]
pub struct VideoTextures {
    textures: HashMap<String, Video>,
    /// Reused between conversions so a frame costs no allocation.
    rgba: Vec<u8>,
}

/// The key of our own self-view.
pub const SELF_KEY: &str = "";

/// The key of member `id`'s screen share, beside their camera's (the server's peer ids are
/// `p<n>`, so no camera key looks like this).
pub fn screen_key(id: &str) -> String {
    format!("screen:{id}")
}

struct Video {
    texture: TextureHandle,
    /// The frame now in the texture, so the same one is never uploaded twice.
    shown: Arc<I420Frame>,
    /// When it was put there.
    updated: Instant,
}

impl VideoTextures {
    /// Puts `frame` into `key`'s texture (creating it the first time), unless it is there already.
    pub fn update(&mut self, ctx: &Context, key: &str, frame: Arc<I420Frame>) {
        if self
            .textures
            .get(key)
            .is_some_and(|v| Arc::ptr_eq(&v.shown, &frame))
        {
            return;
        }
        if let Err(e) = i420_to_rgba_into(&frame, &mut self.rgba) {
            tracing::debug!("frame for {key:?} not shown: {e}");
            return;
        }
        let size = [frame.width() as usize, frame.height() as usize];
        let image = ColorImage::from_rgba_unmultiplied(size, &self.rgba);
        match self.textures.get_mut(key) {
            Some(v) => {
                v.texture.set(image, TextureOptions::LINEAR);
                v.shown = frame;
                v.updated = Instant::now();
            }
            None => {
                let texture =
                    ctx.load_texture(format!("video-{key}"), image, TextureOptions::LINEAR);
                self.textures.insert(
                    key.to_owned(),
                    Video {
                        texture,
                        shown: frame,
                        updated: Instant::now(),
                    },
                );
            }
        }
    }

    /// `key`'s texture, if it ever had a frame.
    pub fn get(&self, key: &str) -> Option<&TextureHandle> {
        self.textures.get(key).map(|v| &v.texture)
    }

    /// How long ago `key`'s texture last got a new frame.
    pub fn age(&self, key: &str) -> Option<Duration> {
        self.textures.get(key).map(|v| v.updated.elapsed())
    }

    /// Frees `key`'s texture.
    pub fn remove(&mut self, key: &str) {
        self.textures.remove(key);
    }

    /// Frees every texture whose key `keep` refuses.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.textures.retain(|k, _| keep(k));
    }

    /// How many textures exist.
    pub fn len(&self) -> usize {
        self.textures.len()
    }

    /// Whether none exist.
    pub fn is_empty(&self) -> bool {
        self.textures.is_empty()
    }
}
