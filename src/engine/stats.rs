//! Per-member numbers from webrtc-rs' getStats, turned into rates between two samples.

use std::sync::Arc;
use std::time::Instant;

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use webrtc::peer_connection::{PeerConnection, StatsSelector};

use super::api::MemberStats;

/// Remembers the previous sample so byte and frame counters become rates.
#[derive(Default)]
pub(crate) struct StatsTracker {
    last: Option<(Instant, u64, u64, u64)>,
}

impl StatsTracker {
    /// Reads the connection's stats; `counts` are the sink's (video frames, audio packets).
    pub(crate) async fn sample(
        &mut self,
        pc: &Arc<dyn PeerConnection>,
        counts: (u64, u64),
    ) -> MemberStats {
        let now = Instant::now();
        let report = pc.get_stats(now, StatsSelector::None).await;
        let mut s = MemberStats {
            video_frames: counts.0,
            audio_packets: counts.1,
            ..Default::default()
        };
        // The nominated pair's RTT is the only working RTT source in webrtc-rs 0.21.
        s.rtt_ms = report
            .candidate_pairs()
            .filter(|p| p.nominated)
            .map(|p| p.current_round_trip_time * 1000.0)
            .next();
        let (bytes_in, bytes_out) = report
            .transport()
            .map_or((0, 0), |t| (t.bytes_received, t.bytes_sent));
        for inbound in report.inbound_rtp_streams() {
            let r = &inbound.received_rtp_stream_stats;
            s.packets_lost += r.packets_lost;
            s.packets_received += r.packets_received;
            if r.rtp_stream_stats.kind == RtpCodecKind::Video {
                // RTP timestamp units at 90 kHz.
                s.jitter_ms = r.jitter / 90.0;
            }
        }
        s.target_bitrate = report
            .outbound_rtp_streams()
            .filter(|o| o.sent_rtp_stream_stats.rtp_stream_stats.kind == RtpCodecKind::Video)
            .map(|o| o.target_bitrate)
            .find(|b| *b > 0.0);
        if let Some((then, last_in, last_out, last_frames)) = self.last {
            let secs = now.duration_since(then).as_secs_f64().max(1e-3);
            s.bitrate_in = bytes_in.saturating_sub(last_in) as f64 * 8.0 / secs;
            s.bitrate_out = bytes_out.saturating_sub(last_out) as f64 * 8.0 / secs;
            s.fps = counts.0.saturating_sub(last_frames) as f64 / secs;
        }
        self.last = Some((now, bytes_in, bytes_out, counts.0));
        s
    }
}
