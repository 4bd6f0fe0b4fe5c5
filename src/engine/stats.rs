//! Per-member numbers from webrtc-rs' getStats, turned into rates between two samples.

use std::sync::Arc;
use std::time::Instant;

use rtc::peer_connection::transport::RTCIceCandidateType;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::statistics::report::RTCStatsReportEntry;
use webrtc::peer_connection::{PeerConnection, StatsSelector};

use super::api::{CandidateKind, MemberStats};
use crate::media::pipeline::RemoteMediaSink;

/// The counters of one sample that the next turns into rates.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    bytes_in: u64,
    bytes_out: u64,
    video_bytes_in: u64,
    frames: u64,
    packets_received: u64,
    packets_lost: i64,
}

/// Remembers the previous sample so counters become rates.
#[derive(Default)]
pub(crate) struct StatsTracker {
    last: Option<Sample>,
}

impl StatsTracker {
    /// Reads the connection's stats, and from `sink` what arrived and how it decoded.
    pub(crate) async fn sample(
        &mut self,
        pc: &Arc<dyn PeerConnection>,
        sink: &dyn RemoteMediaSink,
    ) -> MemberStats {
        let now = Instant::now();
        let report = pc.get_stats(now, StatsSelector::None).await;
        let counts = sink.counts();
        let mut s = MemberStats {
            video_frames: counts.0,
            audio_packets: counts.1,
            decoded: sink.video_quality(),
            audio_concealed: sink.audio_concealed(),
            ..Default::default()
        };
        // The nominated pair's RTT is the only working RTT source in webrtc-rs 0.21.
        s.rtt_ms = report
            .candidate_pairs()
            .filter(|p| p.nominated)
            .map(|p| p.current_round_trip_time * 1000.0)
            .next();
        if let Some(pair) = report.candidate_pairs().find(|p| p.nominated) {
            // The pair names its candidates by their bare ids; the candidates' own entries
            // are prefixed (webrtc-rs 0.21). A peer-reflexive remote candidate, learnt from
            // a check rather than signaled, has no entry at all.
            let kind = |prefix: &str, id: &str| {
                [id.to_owned(), format!("{prefix}{id}")]
                    .iter()
                    .find_map(|id| match report.get(id) {
                        Some(
                            RTCStatsReportEntry::LocalCandidate(c)
                            | RTCStatsReportEntry::RemoteCandidate(c),
                        ) => candidate_kind(c.candidate_type),
                        _ => None,
                    })
            };
            s.candidate = kind("RTCLocalIceCandidate_", &pair.local_candidate_id);
            s.remote_candidate = kind("RTCRemoteIceCandidate_", &pair.remote_candidate_id)
                .or(Some(CandidateKind::Prflx));
        }
        let (bytes_in, bytes_out) = report
            .transport()
            .map_or((0, 0), |t| (t.bytes_received, t.bytes_sent));
        let mut video_bytes_in = 0;
        for inbound in report.inbound_rtp_streams() {
            let r = &inbound.received_rtp_stream_stats;
            s.packets_lost += r.packets_lost;
            s.packets_received += r.packets_received;
            if r.rtp_stream_stats.kind == RtpCodecKind::Video {
                // RTP timestamp units at 90 kHz.
                s.jitter_ms = r.jitter / 90.0;
                video_bytes_in += inbound.bytes_received + inbound.header_bytes_received;
            }
        }
        let sample = Sample {
            at: now,
            bytes_in,
            bytes_out,
            video_bytes_in,
            frames: counts.0,
            packets_received: s.packets_received,
            packets_lost: s.packets_lost,
        };
        if let Some(last) = self.last {
            let secs = now.duration_since(last.at).as_secs_f64().max(1e-3);
            let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 * 8.0 / secs;
            s.bitrate_in = rate(bytes_in, last.bytes_in);
            s.bitrate_out = rate(bytes_out, last.bytes_out);
            s.video_bitrate_in = rate(video_bytes_in, last.video_bytes_in);
            s.fps = counts.0.saturating_sub(last.frames) as f64 / secs;
            let lost = (sample.packets_lost - last.packets_lost).max(0) as f64;
            let got = sample
                .packets_received
                .saturating_sub(last.packets_received) as f64;
            if lost + got > 0.0 {
                s.loss_pct = 100.0 * lost / (lost + got);
            }
        }
        self.last = Some(sample);
        s
    }
}

fn candidate_kind(t: RTCIceCandidateType) -> Option<CandidateKind> {
    match t {
        RTCIceCandidateType::Host => Some(CandidateKind::Host),
        RTCIceCandidateType::Srflx => Some(CandidateKind::Srflx),
        RTCIceCandidateType::Prflx => Some(CandidateKind::Prflx),
        RTCIceCandidateType::Relay => Some(CandidateKind::Relay),
        _ => None,
    }
}
