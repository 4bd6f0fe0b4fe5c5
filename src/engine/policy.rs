//! What the call sends to whom, as a pure core: estimates and the time in, decisions out.
//! No sockets, no clocks, no tasks, so every rule is a millisecond test over a simulated
//! link; the actor feeds it and carries out its plan (str0m's shape: `handle_*` in, the
//! state read back).
//!
//! The rules:
//! - **Audio first.** A link's budget serves audio before video: the video budget is the
//!   congestion controller's estimate less [`AUDIO_SHARE_BPS`].
//! - **Each peer its layer.** A peer gets the largest layer whose least bitrate its video
//!   budget covers; below the smallest layer's least, its video pauses (audio goes on).
//! - **Down at once, up with patience.** A layer that no longer fits is left at the next
//!   estimate; a larger one is taken only after the budget has covered it, with a margin,
//!   for [`UPGRADE_HOLD`] ([`RESUME_HOLD`] to resume from a pause), one step at a time, so
//!   an estimate that wobbles does not flip layers (each flip costs a keyframe).
//! - **Each layer at what its peers carry.** A layer is encoded at the smallest budget
//!   among the peers on it, within the layer's range; a layer nobody is on is not encoded.
//! - **FEC for the worst link.** The one audio encoder plans in-band FEC for the highest
//!   audio loss any peer reports.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::media::video::LayerSpec;

/// What one peer's audio costs on the wire: 32 kbit/s of Opus plus 50 packets a second of
/// IP, UDP, RTP and SRTP headers (about 60 bytes each), rounded up.
pub(crate) const AUDIO_SHARE_BPS: u32 = 64_000;
/// How long a larger layer must fit before a peer moves up to it.
pub(crate) const UPGRADE_HOLD: Duration = Duration::from_secs(3);
/// How long the smallest layer must fit before paused video resumes.
pub(crate) const RESUME_HOLD: Duration = Duration::from_secs(2);
/// The budget must exceed a larger layer's least bitrate by this factor to move up to it.
const UP_MARGIN: f64 = 1.15;
/// While we share our screen, the share's part of a link's estimate (the camera and audio
/// plan with the rest; see [`VideoPolicy::beside_share`]).
pub(crate) const SCREEN_SHARE_PART: f64 = 0.6;

#[derive(Debug, Clone)]
struct PeerRate {
    budget: u32,
    layer: Option<usize>,
    /// Since when a larger layer has fitted.
    better_since: Option<Instant>,
}

/// The plan to carry out: each peer's layer and each layer's bitrate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Peer id and the layer it should receive (`None`: video paused).
    pub(crate) peers: Vec<(String, Option<usize>)>,
    /// Per layer: its bitrate, or `None` when nobody receives it.
    pub(crate) bitrates: Vec<Option<u32>>,
}

/// The video sending policy for one call; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct VideoPolicy {
    layers: Vec<LayerSpec>,
    max_bps: u32,
    peers: BTreeMap<String, PeerRate>,
}

impl VideoPolicy {
    /// A policy for `layers` (smallest first), never encoding above `max_bps`.
    pub(crate) fn new(layers: Vec<LayerSpec>, max_bps: u32) -> Self {
        Self {
            layers,
            max_bps,
            peers: BTreeMap::new(),
        }
    }

    /// The largest layer a video budget covers.
    fn fits(&self, budget: u32, margin: f64) -> Option<usize> {
        self.layers
            .iter()
            .rposition(|l| f64::from(budget) >= f64::from(l.min_bps) * margin)
    }

    /// The encoder's layers changed (another camera, say): every peer is placed afresh.
    pub(crate) fn set_layers(&mut self, layers: Vec<LayerSpec>) {
        if layers == self.layers {
            return;
        }
        self.layers = layers;
        let placed: Vec<(String, Option<usize>)> = self
            .peers
            .iter()
            .map(|(id, p)| (id.clone(), self.fits(p.budget, 1.0)))
            .collect();
        for (id, layer) in placed {
            if let Some(p) = self.peers.get_mut(&id) {
                p.layer = layer;
                p.better_since = None;
            }
        }
    }

    /// A peer joined our sending, with the controller's starting estimate; it is placed at
    /// once (no patience: there is nothing to flip from).
    pub(crate) fn add_peer(&mut self, id: &str, estimate_bps: u32) {
        let budget = estimate_bps.saturating_sub(AUDIO_SHARE_BPS);
        let layer = self.fits(budget, 1.0);
        self.peers.insert(
            id.to_owned(),
            PeerRate {
                budget,
                layer,
                better_since: None,
            },
        );
    }

    /// A peer joined whose link is not measured yet (`estimate_bps` is the controller's
    /// starting guess): it starts on the smallest layer and moves up with patience like any
    /// other. Placed by the guess, a peer behind a 400 kbit/s link started at 360p and the
    /// call's first seconds were a flood of loss, stale drops and keyframe requests.
    pub(crate) fn add_unmeasured_peer(&mut self, id: &str, estimate_bps: u32) {
        self.add_peer(id, estimate_bps);
        if let Some(p) = self.peers.get_mut(id) {
            p.layer = p.layer.map(|_| 0);
        }
    }

    /// A peer left: it no longer holds any layer's bitrate down.
    pub(crate) fn remove_peer(&mut self, id: &str) {
        self.peers.remove(id);
    }

    /// A new congestion-control estimate for the link to `id`, bits per second.
    pub(crate) fn handle_estimate(&mut self, now: Instant, id: &str, estimate_bps: u32) {
        let budget = estimate_bps.saturating_sub(AUDIO_SHARE_BPS);
        let fits = self.fits(budget, 1.0);
        let top = self.layers.len();
        let Some(p) = self.peers.get(id).cloned() else {
            return;
        };
        let mut p = PeerRate { budget, ..p };
        // `None` (paused) sorts below every layer, as it should.
        if fits < p.layer {
            p.layer = fits;
            p.better_since = None;
        } else {
            let next = p.layer.map_or(0, |l| l + 1);
            let better = next < top && self.fits(budget, UP_MARGIN) >= Some(next);
            if !better {
                p.better_since = None;
            } else {
                let since = *p.better_since.get_or_insert(now);
                let hold = if p.layer.is_none() {
                    RESUME_HOLD
                } else {
                    UPGRADE_HOLD
                };
                if now.saturating_duration_since(since) >= hold {
                    p.layer = Some(next);
                    // The next step up waits its own hold.
                    p.better_since = None;
                }
            }
        }
        self.peers.insert(id.to_owned(), p);
    }

    /// The part of the link to `id`'s `estimate_bps` the camera plans with while we share
    /// our screen: what the share's part leaves, but never less than the layer the peer has
    /// needs. The pacer sends the camera before the share, so a share over its part only
    /// loses frames (its frame rate gives, as it should), while a camera stepped down waits
    /// [`UPGRADE_HOLD`] to come back: measured, a share starting on a link still at its
    /// start estimate put the sharer's camera at 320x180 for three seconds, though the
    /// link's estimate had grown past both within a second.
    pub(crate) fn beside_share(&self, id: &str, estimate_bps: u32) -> u32 {
        let left = estimate_bps - (f64::from(estimate_bps) * SCREEN_SHARE_PART) as u32;
        let keep = self
            .peers
            .get(id)
            .and_then(|p| p.layer)
            .and_then(|l| self.layers.get(l))
            .map_or(0, |l| l.min_bps.saturating_add(AUDIO_SHARE_BPS));
        left.max(keep.min(estimate_bps))
    }

    /// The layer `id` should receive (`None`: paused, or unknown peer).
    pub(crate) fn layer_of(&self, id: &str) -> Option<usize> {
        self.peers.get(id).and_then(|p| p.layer)
    }

    /// The plan as it stands.
    pub(crate) fn plan(&self) -> Plan {
        let bitrates = self
            .layers
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let least = self
                    .peers
                    .values()
                    .filter(|p| p.layer == Some(i))
                    .map(|p| p.budget)
                    .min()?;
                let top = spec.max_bps.min(self.max_bps).max(spec.min_bps);
                Some(least.clamp(spec.min_bps, top))
            })
            .collect();
        Plan {
            peers: self
                .peers
                .iter()
                .map(|(id, p)| (id.clone(), p.layer))
                .collect(),
            bitrates,
        }
    }
}

/// The loss (percent) the audio encoder should plan FEC for, given the audio loss each
/// peer reports (fractions): a little above the worst, within 2–30 %. In-band FEC carries
/// each frame again at a lower rate inside the next packet, so a single lost packet is
/// recovered whole; planning for more loss than there is only costs a few kbit/s.
pub(crate) fn expected_audio_loss(reported: impl IntoIterator<Item = f64>) -> u32 {
    let worst = reported.into_iter().fold(0.0f64, f64::max);
    ((worst * 100.0 * 1.5).ceil() as u32 + 2).clamp(2, 30)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::video::ladder;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> VideoPolicy {
        VideoPolicy::new(ladder(1280, 720), 2_500_000)
    }

    /// Feeds an estimate for `id` once a second for `secs` seconds from `t`.
    fn steady(p: &mut VideoPolicy, t: &mut Instant, id: &str, bps: u32, secs: u64) {
        for _ in 0..secs {
            p.handle_estimate(*t, id, bps);
            *t += Duration::from_secs(1);
        }
    }

    #[test]
    fn a_share_starting_does_not_take_the_camera_s_layer() {
        let mut p = VideoPolicy::new(ladder(640, 360), 2_500_000);
        let mut t = Instant::now();
        p.add_peer("bob", 600_000);
        assert_eq!(p.layer_of("bob"), Some(1));
        // The share starts while the link is still at 600 kbit/s: its 60 % would leave the
        // camera 240 (176 after audio), under 360p's least; the camera keeps its layer.
        let beside = p.beside_share("bob", 600_000);
        assert!(beside >= 200_000 + AUDIO_SHARE_BPS, "{beside}");
        steady(&mut p, &mut t, "bob", beside, 2);
        assert_eq!(p.layer_of("bob"), Some(1));
        // A link that has grown leaves the camera the share's remainder.
        assert_eq!(p.beside_share("bob", 2_500_000), 1_000_000);
        // A link that carries less than the layer's least: the camera plans with all of it
        // and steps down, as without a share.
        assert_eq!(p.beside_share("bob", 150_000), 150_000);
        p.handle_estimate(t, "bob", 150_000);
        assert_eq!(p.layer_of("bob"), Some(0));
        // On the smallest layer the share's part applies as before.
        assert_eq!(p.beside_share("bob", 500_000), 200_000);
    }

    #[test]
    fn each_peer_gets_the_layer_its_own_link_carries() {
        let mut p = policy();
        p.add_peer("fast", 3_000_000);
        p.add_peer("slow", 200_000);
        p.add_peer("dial-up", 90_000);
        let plan = p.plan();
        assert_eq!(
            plan.peers,
            [
                ("dial-up".to_owned(), None),
                ("fast".to_owned(), Some(2)),
                ("slow".to_owned(), Some(0))
            ]
        );
        // 180p at slow's budget, 720p at fast's (capped at the configured maximum), 360p
        // nobody's.
        assert_eq!(plan.bitrates, [Some(136_000), None, Some(2_500_000)]);
    }

    #[test]
    fn a_slow_peer_never_drags_a_fast_one_down() {
        let mut p = VideoPolicy::new(ladder(640, 360), 2_500_000);
        p.add_peer("a", 1_000_000);
        p.add_peer("c", 1_000_000);
        let mut t = Instant::now();
        steady(&mut p, &mut t, "c", 180_000, 1);
        let plan = p.plan();
        assert_eq!(plan.peers[0], ("a".to_owned(), Some(1)));
        assert_eq!(plan.peers[1], ("c".to_owned(), Some(0)));
        assert_eq!(plan.bitrates[1], Some(936_000));
    }

    #[test]
    fn down_at_once_up_only_after_the_hold_one_step_at_a_time() {
        let mut p = policy();
        p.add_peer("x", 3_000_000);
        assert_eq!(p.layer_of("x"), Some(2));
        let mut t = Instant::now();
        // The link drops: straight down to what fits.
        p.handle_estimate(t, "x", 300_000);
        assert_eq!(p.layer_of("x"), Some(1));
        // It recovers: 720p fits again, but only after the hold, and via 360p.
        t += MS;
        p.handle_estimate(t, "x", 3_000_000);
        assert_eq!(p.layer_of("x"), Some(1));
        p.handle_estimate(t + UPGRADE_HOLD - MS, "x", 3_000_000);
        assert_eq!(p.layer_of("x"), Some(1));
        p.handle_estimate(t + UPGRADE_HOLD, "x", 3_000_000);
        assert_eq!(p.layer_of("x"), Some(2));
    }

    #[test]
    fn a_wobbling_estimate_does_not_flip_layers() {
        let mut p = policy();
        p.add_peer("x", 400_000);
        assert_eq!(p.layer_of("x"), Some(1));
        let mut t = Instant::now();
        let mut flips = 0;
        let mut last = p.layer_of("x");
        // 360p needs 200 kbit/s of video; the estimate swings around 1.2 Mbit/s, where
        // 720p (800 kbit/s) fits only now and then.
        for i in 0..120u32 {
            let bps = if i % 4 == 0 { 1_100_000 } else { 700_000 };
            p.handle_estimate(t, "x", bps);
            t += Duration::from_secs(1);
            if p.layer_of("x") != last {
                flips += 1;
                last = p.layer_of("x");
            }
        }
        assert_eq!(flips, 0);
    }

    #[test]
    fn a_link_too_slow_for_any_layer_pauses_and_resumes_when_it_recovers() {
        let mut p = VideoPolicy::new(ladder(640, 360), 2_500_000);
        p.add_peer("c", 600_000);
        let mut t = Instant::now();
        steady(&mut p, &mut t, "c", 80_000, 1);
        assert_eq!(
            p.layer_of("c"),
            None,
            "16 kbit/s of video is below 180p's least"
        );
        assert_eq!(
            p.plan().bitrates,
            [None, None],
            "nothing to encode for anyone"
        );
        // Enough for 180p with the margin: resumes after the hold.
        steady(&mut p, &mut t, "c", 130_000, 2);
        assert_eq!(p.layer_of("c"), None);
        steady(&mut p, &mut t, "c", 130_000, 1);
        assert_eq!(p.layer_of("c"), Some(0));
    }

    #[test]
    fn an_unmeasured_peer_starts_small_and_climbs_as_its_link_shows_it_can() {
        let mut p = policy();
        p.add_unmeasured_peer("x", 600_000);
        assert_eq!(p.layer_of("x"), Some(0));
        let mut t = Instant::now();
        steady(&mut p, &mut t, "x", 3_000_000, 4);
        assert_eq!(p.layer_of("x"), Some(1));
        steady(&mut p, &mut t, "x", 3_000_000, 4);
        assert_eq!(p.layer_of("x"), Some(2));
        // A guess below the smallest layer's least starts paused, as a measurement would.
        p.add_unmeasured_peer("y", 90_000);
        assert_eq!(p.layer_of("y"), None);
    }

    #[test]
    fn a_peer_who_left_no_longer_limits_the_layer() {
        let mut p = VideoPolicy::new(ladder(640, 360), 2_500_000);
        p.add_peer("a", 1_000_000);
        p.add_peer("b", 400_000);
        assert_eq!(p.plan().bitrates[1], Some(336_000));
        p.remove_peer("b");
        assert_eq!(p.plan().bitrates[1], Some(936_000));
        p.handle_estimate(Instant::now(), "b", 100_000);
        assert_eq!(
            p.plan().peers.len(),
            1,
            "an estimate for a stranger adds nobody"
        );
    }

    #[test]
    fn new_layers_place_everyone_afresh() {
        let mut p = VideoPolicy::new(ladder(640, 360), 2_500_000);
        p.add_peer("a", 3_000_000);
        assert_eq!(p.layer_of("a"), Some(1));
        p.set_layers(ladder(1280, 720));
        assert_eq!(p.layer_of("a"), Some(2));
    }

    #[test]
    fn fec_plans_for_the_worst_reported_audio_loss() {
        assert_eq!(expected_audio_loss([]), 2);
        assert_eq!(expected_audio_loss([0.0, 0.05]), 10);
        assert_eq!(expected_audio_loss([0.6]), 30);
    }
}
