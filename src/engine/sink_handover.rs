//! One sink per remote member, shared by the mesh link and the SFU subscription during a
//! move (issue 14): each kind of media (video, audio, screen share) is taken from one path
//! at a time, and the SFU path claims it when its first usable media from the member
//! arrives. The
//! member's sink (decoder, audio output, counters) is handed over, never rebuilt: a
//! decoding sink removes the member's output when it is dropped, so the mesh link's
//! teardown must not be what drops it while the SFU still delivers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::local_media::OPUS_FRAME_TICKS;
use crate::media::pipeline::{RemoteMediaSink, SinkFactory, VideoQuality};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
use crate::media::video::AccessUnit;

/// A member's sink and which path feeds each kind of its media.
pub(crate) struct Handover {
    inner: Arc<dyn RemoteMediaSink>,
    video_from_sfu: AtomicBool,
    audio_from_sfu: AtomicBool,
    screen_from_sfu: AtomicBool,
    /// Audio numbering across the switch: the jitter buffer sees one stream, so the SFU's
    /// packets continue the mesh's sequence numbers and timestamps (a jump made it drop
    /// the rest of a member's audio in one run).
    audio_numbers: Mutex<AudioNumbers>,
}

#[derive(Default)]
struct AudioNumbers {
    /// The last (sequence, timestamp) the mesh path delivered.
    last_mesh: Option<(u16, u32)>,
    /// What is added to the SFU path's numbers, fixed at its first packet.
    sfu_offset: Option<(u16, u32)>,
}

impl Handover {
    /// The SFU path takes this member's video from now on; true if it just did.
    pub(crate) fn claim_video(&self) -> bool {
        !self.video_from_sfu.swap(true, Ordering::Relaxed)
    }

    /// The SFU path takes this member's audio from now on; true if it just did.
    pub(crate) fn claim_audio(&self) -> bool {
        !self.audio_from_sfu.swap(true, Ordering::Relaxed)
    }

    /// The SFU path takes this member's screen share from now on; true if it just did.
    pub(crate) fn claim_screen(&self) -> bool {
        !self.screen_from_sfu.swap(true, Ordering::Relaxed)
    }

    /// The member's sink itself (for its counters).
    pub(crate) fn sink(&self) -> &Arc<dyn RemoteMediaSink> {
        &self.inner
    }

    /// Every kind back to the mesh (a cancelled move).
    pub(crate) fn release(&self) {
        self.video_from_sfu.store(false, Ordering::Relaxed);
        self.audio_from_sfu.store(false, Ordering::Relaxed);
        self.screen_from_sfu.store(false, Ordering::Relaxed);
        lock(&self.audio_numbers).sfu_offset = None;
    }
}

/// One path's view of a member's sink: passes on only what its path currently owns.
pub(crate) struct Side {
    handover: Arc<Handover>,
    sfu: bool,
}

impl Side {
    /// The shared state (to claim media for the SFU path).
    pub(crate) fn handover(&self) -> &Handover {
        &self.handover
    }

    fn owns_video(&self) -> bool {
        self.handover.video_from_sfu.load(Ordering::Relaxed) == self.sfu
    }

    fn owns_audio(&self) -> bool {
        self.handover.audio_from_sfu.load(Ordering::Relaxed) == self.sfu
    }

    fn owns_screen(&self) -> bool {
        self.handover.screen_from_sfu.load(Ordering::Relaxed) == self.sfu
    }
}

impl RemoteMediaSink for Side {
    fn video(&self, au: AccessUnit) {
        if self.owns_video() {
            self.handover.inner.video(au);
        }
    }
    fn audio(&self, seq: u16, timestamp: u32, payload: Bytes) {
        if !self.owns_audio() {
            return;
        }
        let (seq, timestamp) = {
            let mut n = lock(&self.handover.audio_numbers);
            if self.sfu {
                let last_mesh = n.last_mesh;
                let (ds, dt) = *n.sfu_offset.get_or_insert_with(|| match last_mesh {
                    Some((s, t)) => (
                        s.wrapping_add(1).wrapping_sub(seq),
                        t.wrapping_add(OPUS_FRAME_TICKS).wrapping_sub(timestamp),
                    ),
                    None => (0, 0),
                });
                (seq.wrapping_add(ds), timestamp.wrapping_add(dt))
            } else {
                n.last_mesh = Some((seq, timestamp));
                (seq, timestamp)
            }
        };
        self.handover.inner.audio(seq, timestamp, payload);
    }
    fn screen(&self, au: AccessUnit) {
        // Claimed apart from the camera: a share started during a move may reach us
        // through Janus before or after the member's camera does.
        if self.owns_screen() {
            self.handover.inner.screen(au);
        }
    }
    fn take_screen_decoder_failure(&self) -> bool {
        self.owns_screen() && self.handover.inner.take_screen_decoder_failure()
    }
    fn take_decoder_failure(&self) -> bool {
        // Only the path feeding the decoder should repair it with a keyframe.
        self.owns_video() && self.handover.inner.take_decoder_failure()
    }
    fn counts(&self) -> (u64, u64) {
        self.handover.inner.counts()
    }
    fn video_quality(&self) -> Option<VideoQuality> {
        self.handover.inner.video_quality()
    }
    fn audio_concealed(&self) -> u64 {
        self.handover.inner.audio_concealed()
    }
}

/// Every member's shared sink, by peer id, made on first use with the engine's factory.
#[derive(Clone)]
pub(crate) struct SinkBook {
    factory: SinkFactory,
    sinks: Arc<Mutex<HashMap<String, Arc<Handover>>>>,
}

impl SinkBook {
    /// A book that makes sinks with `factory`.
    pub(crate) fn new(factory: SinkFactory) -> Self {
        Self {
            factory,
            sinks: Arc::default(),
        }
    }

    fn handover(&self, id: &str) -> Arc<Handover> {
        let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(sinks.entry(id.to_owned()).or_insert_with(|| {
            Arc::new(Handover {
                inner: (self.factory)(id),
                video_from_sfu: AtomicBool::new(false),
                audio_from_sfu: AtomicBool::new(false),
                screen_from_sfu: AtomicBool::new(false),
                audio_numbers: Mutex::default(),
            })
        }))
    }

    /// The mesh link's side of member `id`'s sink.
    pub(crate) fn mesh(&self, id: &str) -> Arc<dyn RemoteMediaSink> {
        Arc::new(Side {
            handover: self.handover(id),
            sfu: false,
        })
    }

    /// The SFU subscription's side of member `id`'s sink.
    pub(crate) fn sfu(&self, id: &str) -> Arc<Side> {
        Arc::new(Side {
            handover: self.handover(id),
            sfu: true,
        })
    }

    /// Member `id`'s shared state, if its sink exists.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Handover>> {
        let sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        sinks.get(id).cloned()
    }

    /// Forgets member `id`: its sink ends when the last path holding it lets go.
    pub(crate) fn forget(&self, id: &str) {
        let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        sinks.remove(id);
    }

    /// Every member's shared state (to hand media back on a cancelled move).
    pub(crate) fn all(&self) -> Vec<Arc<Handover>> {
        let sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        sinks.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::CountingSinks;

    fn au(keyframe: bool) -> AccessUnit {
        AccessUnit {
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
            timestamp: 0,
            keyframe,
            follows_loss: false,
        }
    }

    #[test]
    fn each_kind_comes_from_one_path_and_the_sfu_claims_it() {
        let counting = CountingSinks::default();
        let book = SinkBook::new(counting.factory());
        let mesh = book.mesh("p1");
        let sfu = book.sfu("p1");
        mesh.video(au(true));
        sfu.video(au(true));
        mesh.audio(1, 0, Bytes::new());
        sfu.audio(9, 0, Bytes::new());
        let c = counting.get("p1").unwrap();
        assert_eq!((c.video_frames(), c.audio_packets()), (1, 1));
        assert!(sfu.handover().claim_video());
        assert!(!sfu.handover().claim_video());
        mesh.video(au(false));
        sfu.video(au(false));
        sfu.video(au(false));
        mesh.audio(2, 0, Bytes::new());
        assert_eq!((c.video_frames(), c.audio_packets()), (3, 2));
        // Dropping the mesh side leaves the SFU's delivery working.
        drop(mesh);
        sfu.video(au(false));
        assert_eq!(c.video_frames(), 4);
        book.get("p1").unwrap().release();
        sfu.video(au(false));
        assert_eq!(c.video_frames(), 4);
    }

    #[test]
    fn a_share_comes_from_one_path_claimed_apart_from_the_camera() {
        let counting = CountingSinks::default();
        let book = SinkBook::new(counting.factory());
        let mesh = book.mesh("p1");
        let sfu = book.sfu("p1");
        mesh.screen(au(true));
        // The camera moving to the SFU leaves the share with the mesh.
        assert!(sfu.handover().claim_video());
        mesh.screen(au(false));
        sfu.screen(au(false));
        let c = counting.get("p1").unwrap();
        assert_eq!(c.screen_frames(), 2);
        assert!(sfu.handover().claim_screen());
        assert!(!sfu.handover().claim_screen());
        mesh.screen(au(false));
        sfu.screen(au(true));
        sfu.screen(au(false));
        assert_eq!(c.screen_frames(), 4);
        book.get("p1").unwrap().release();
        sfu.screen(au(false));
        mesh.screen(au(false));
        assert_eq!(c.screen_frames(), 5);
    }
}
