//! Builds one webrtc-rs peer connection per remote member, configured the same way every
//! time: H.264 constrained baseline and Opus, NACK, reports, GCC over TWCC, keyframe
//! requests delivered to us, and ICE host candidates only on the configured addresses.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{
    CongestionControlBuilder, Gcc, NackGeneratorBuilder, NackResponderBuilder,
    ReceiverReportBuilder, Registry, SenderReportBuilder, Slot, TwccReceiverBuilder,
    TwccSenderBuilder,
};
use rtc::peer_connection::configuration::RTCIceTransportPolicy;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS};
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use webrtc::peer_connection::{
    CongestionFeedback, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceServer, SettingEngineBuilder,
    configure_congestion_control, register_default_interceptors,
};

use super::estimator::{CAUTIOUS_START_BPS, LinkEstimator};
use super::keyframe_requests::{KeyframeRequests, SLOT};
use super::link_shaper::{LinkShaper, ShapedRuntime};
use super::pacer::{AudioFirstPacer, LinkMeter};
use crate::proto::IceServer;

/// RTP payload type for H.264 (every meshcall peer uses the same media engine).
pub(crate) const H264_PT: u8 = 102;
/// RTP payload type for Opus.
pub(crate) const OPUS_PT: u8 = 111;
/// Constrained baseline level 3.1, packetization mode 1: what every browser decodes.
const H264_FMTP: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";

/// The range the congestion controller may choose a video bitrate in, bits per second.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BitrateRange {
    pub(crate) initial: u32,
    pub(crate) min: u32,
    pub(crate) max: u32,
}

impl Default for BitrateRange {
    fn default() -> Self {
        // 150 kbps still carries a legible 360p face; 2.5 Mbps is 720p30 at good quality,
        // and more than a mesh of 8 can send to 7 peers on ordinary uplinks.
        Self {
            initial: 600_000,
            min: 150_000,
            max: 2_500_000,
        }
    }
}

/// How often the receiver asks again for missing video packets. webrtc-rs asks every
/// 100 ms by default; a hole then costs a frozen picture for that long at the least, and a
/// retransmission on most paths comes back within tens of milliseconds.
const NACK_INTERVAL: Duration = Duration::from_millis(20);
/// How often one missing packet is asked for before the receiver gives it up (bounded, so a
/// packet that is gone for good does not cost feedback forever).
const NACKS_PER_PACKET: u16 = 10;

/// How often ICE checks candidate pairs while connecting (webrtc-rs: 200 ms). Also how
/// late the DTLS client's first flight may leave; see `build_with`.
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(20);
/// Checks per candidate pair before it is given up: 1.4 s at `ICE_CHECK_INTERVAL`, as
/// webrtc-rs' default 7 x 200 ms.
const ICE_CHECKS_PER_PAIR: u16 = 70;

/// What one connection's sending side is wired to.
pub(crate) struct SendSide {
    /// Our outgoing audio and video SSRCs, so the pacer tells them apart.
    pub(crate) audio_ssrc: u32,
    /// See `audio_ssrc`.
    pub(crate) video_ssrc: u32,
    /// Where the pacer reports what the link says.
    pub(crate) meter: Arc<LinkMeter>,
}

/// The interceptor chain: GCC's delay half over TWCC (with our own loss half,
/// `estimator.rs`) and our audio-first pacer in place of webrtc-rs'
/// FIFO, NACK both ways (asking quickly), sender and receiver reports, and keyframe requests
/// delivered to us. Built by hand rather than with webrtc-rs' `configure_*` helpers because
/// each helper installs its own pacer and NACK timing; the helpers are still run on a
/// throwaway registry for what they declare in the media engine (feedback, extensions).
fn interceptors(
    me: &mut MediaEngine,
    b: BitrateRange,
    send: &SendSide,
    screen_ssrc: Option<u32>,
) -> webrtc::error::Result<Registry> {
    let (initial, min, max) = (f64::from(b.initial), f64::from(b.min), f64::from(b.max));
    let estimator = LinkEstimator::new(initial, min, max, Arc::clone(&send.meter))
        .with_cautious_start(CAUTIOUS_START_BPS);
    configure_congestion_control(
        Registry::new(),
        Gcc::new(initial, min, max),
        CongestionFeedback::Twcc,
        me,
    )?;
    register_default_interceptors(Registry::new(), me)?;
    Ok(Registry::new()
        .with(
            Slot::CongestionControl,
            CongestionControlBuilder::new(estimator).build(),
        )
        .with(Slot::Pacer, {
            let pacer =
                AudioFirstPacer::new(send.audio_ssrc, send.video_ssrc, Arc::clone(&send.meter))
                    .with_max_bitrate(max);
            match screen_ssrc {
                Some(ssrc) => pacer.with_screen(ssrc),
                None => pacer,
            }
        })
        .with(Slot::TwccSender, TwccSenderBuilder::new().build())
        .with(Slot::TwccReceiver, TwccReceiverBuilder::new().build())
        .with(Slot::NackResponder, NackResponderBuilder::new().build())
        .with(
            Slot::NackGenerator,
            NackGeneratorBuilder::new()
                .with_interval(NACK_INTERVAL)
                .with_max_nacks_per_packet(NACKS_PER_PACKET)
                .build(),
        )
        .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build())
        .with(Slot::SenderReport, SenderReportBuilder::new().build())
        .with(Slot::from(SLOT), KeyframeRequests::default()))
}

/// Makes peer connections with one configuration.
#[derive(Debug, Clone)]
pub(crate) struct PeerFactory {
    /// Local addresses for host candidates; tests pin 127.0.0.1.
    pub(crate) ice_ips: Vec<IpAddr>,
    pub(crate) bitrate: BitrateRange,
    /// ICE consent: no answer for `ice_disconnected` means Disconnected, and for
    /// `ice_disconnected + ice_failed` Failed.
    pub(crate) ice_disconnected: Duration,
    /// See `ice_disconnected`.
    pub(crate) ice_failed: Duration,
    /// The network the engine's datagrams go through (a perfect one but in tests).
    pub(crate) link: LinkShaper,
    /// Gather and use relay candidates only (`RTCIceTransportPolicy::Relay`).
    pub(crate) relay_only: bool,
}

fn media_engine() -> webrtc::error::Result<MediaEngine> {
    let mut me = MediaEngine::default();
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_H264.to_owned(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: H264_FMTP.to_owned(),
                rtcp_feedback: vec![],
            },
            payload_type: H264_PT,
        },
        RtpCodecKind::Video,
    )?;
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48_000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                rtcp_feedback: vec![],
            },
            payload_type: OPUS_PT,
        },
        RtpCodecKind::Audio,
    )?;
    Ok(me)
}

/// Converts the server's ICE servers for webrtc-rs.
pub(crate) fn rtc_ice_servers(servers: &[IceServer]) -> Vec<RTCIceServer> {
    servers
        .iter()
        .map(|s| RTCIceServer {
            urls: s.urls.clone(),
            username: s.username.clone().unwrap_or_default(),
            credential: s.credential.clone().unwrap_or_default(),
        })
        .collect()
}

/// The payload type the answer gave `mime` among a sender's negotiated codecs.
///
/// A browser that makes the offer picks its own numbers (Chromium 156 gave H.264 108,
/// not our 102), and the answer must use them; packets with any other number are dropped.
pub(crate) fn negotiated_payload_type(codecs: &[RTCRtpCodecParameters], mime: &str) -> Option<u8> {
    codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
        .map(|c| c.payload_type)
}

/// The DTLS role to put in our answers, which must keep the role the first exchange set.
///
/// webrtc-rs answers every offer with its configured role (client by default), even a
/// later offer on a connection whose DTLS role is long settled. When we made the first
/// offer (`actpass`), the other side answered, and browsers and webrtc-rs answer `active`,
/// so we are the DTLS server; answering a later offer `active` would ask to swap roles,
/// which Chromium refuses ("Failed to set SSL role for the transport") and then stays in
/// have-local-offer. When they offered first we answered as client, the default.
fn answering_dtls_role(initiator: bool) -> RTCDtlsRole {
    if initiator {
        RTCDtlsRole::Server
    } else {
        RTCDtlsRole::Client
    }
}

impl PeerFactory {
    /// A new peer connection reporting to `handler`; `initiator`: we make the first offer.
    pub(crate) async fn build(
        &self,
        ice_servers: &[IceServer],
        initiator: bool,
        send: &SendSide,
        handler: Arc<dyn PeerConnectionEventHandler>,
    ) -> webrtc::error::Result<Arc<dyn PeerConnection>> {
        self.build_sharing(ice_servers, initiator, send, None, handler)
            .await
    }

    /// [`Self::build`] for a connection that may also carry our screen share, sent with
    /// `screen_ssrc` (the pacer tells it from the camera by that).
    pub(crate) async fn build_sharing(
        &self,
        ice_servers: &[IceServer],
        initiator: bool,
        send: &SendSide,
        screen_ssrc: Option<u32>,
        handler: Arc<dyn PeerConnectionEventHandler>,
    ) -> webrtc::error::Result<Arc<dyn PeerConnection>> {
        match self
            .build_with(
                ice_servers,
                initiator,
                (send, screen_ssrc),
                Arc::clone(&handler),
                MulticastDnsMode::QueryOnly,
            )
            .await
        {
            Ok(pc) => Ok(pc),
            Err(e) => {
                // The mDNS socket's multicast join fails with ENODEV where no interface has
                // a multicast route (a network namespace holding only `lo`), and that fails
                // the whole build; such a machine has no `.local` names to resolve anyway.
                tracing::debug!("peer connection without mDNS after: {e}");
                self.build_with(
                    ice_servers,
                    initiator,
                    (send, screen_ssrc),
                    handler,
                    MulticastDnsMode::Disabled,
                )
                .await
            }
        }
    }

    async fn build_with(
        &self,
        ice_servers: &[IceServer],
        initiator: bool,
        (send, screen_ssrc): (&SendSide, Option<u32>),
        handler: Arc<dyn PeerConnectionEventHandler>,
        mdns: MulticastDnsMode,
    ) -> webrtc::error::Result<Arc<dyn PeerConnection>> {
        // Codecs first: the interceptor helpers only decorate codecs that already exist.
        let mut me = media_engine()?;
        let registry = interceptors(&mut me, self.bitrate, send, screen_ssrc)?;
        // Relay: webrtc-rs gathers no host candidates and allocates on the TURN servers
        // from the host sockets below, so `ice_ips` still decides where we send from.
        let policy = if self.relay_only {
            RTCIceTransportPolicy::Relay
        } else {
            RTCIceTransportPolicy::All
        };
        let config = RTCConfigurationBuilder::new()
            .with_ice_servers(rtc_ice_servers(ice_servers))
            .with_ice_transport_policy(policy)
            .build();
        let addrs: Vec<String> = if self.ice_ips.is_empty() {
            vec!["0.0.0.0:0".to_owned()]
        } else {
            self.ice_ips.iter().map(|ip| format!("{ip}:0")).collect()
        };
        // Keep-alives every 2 s (webrtc-rs's default) so consent is checked well inside
        // the disconnected timeout.
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(mdns)
            .with_answering_dtls_role(answering_dtls_role(initiator))
            .with_ice_timeouts(
                Some(self.ice_disconnected),
                Some(self.ice_failed),
                Some(Duration::from_secs(2).min(self.ice_disconnected / 2)),
            )
            // The far side's first check usually arrives before its candidate does (the
            // candidate comes through the signaling server), so the pair is learnt as
            // peer-reflexive, and webrtc-rs would wait 1 s before nominating it: a
            // newcomer's first picture took 1.2 s in about one join in four. A pair that
            // has passed a check both ways is as direct as a host pair, which is accepted
            // at once. (`None` here means webrtc-rs' 1 s default, not "no wait".)
            .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
            // webrtc-rs 0.21 starts the DTLS client's handshake when ICE selects a pair
            // but leaves its ClientHello queued until the connection's next timer fires
            // (`rtc` handler/dtls.rs `handle_event` calls `connect` and never drains
            // `poll_transmit`; only `handle_timeout`/`handle_read` do). That timer is the
            // ICE check tick, 200 ms by default, so almost every join lost ~200 ms
            // there. A 20 ms tick bounds the loss to 20 ms; 70 attempts per pair keep
            // the default 1.4 s before a silent pair is given up. The tick only runs
            // this fast while checking; once connected it is the keep-alive interval.
            .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), Some(ICE_CHECKS_PER_PAIR));
        let pc = PeerConnectionBuilder::new()
            .with_setting_engine(settings.build())
            .with_configuration(config)
            .with_media_engine(me)
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_runtime(Arc::new(ShapedRuntime::new(self.link.clone())))
            .with_udp_addrs(addrs)
            .build()
            .await?;
        Ok(Arc::new(pc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(mime: &str, pt: u8) -> RTCRtpCodecParameters {
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: mime.to_owned(),
                ..Default::default()
            },
            payload_type: pt,
        }
    }

    #[test]
    fn the_answers_payload_type_wins_over_ours() {
        let codecs = [codec("video/rtx", 107), codec("video/H264", 106)];
        assert_eq!(negotiated_payload_type(&codecs, MIME_TYPE_H264), Some(106));
        assert_eq!(negotiated_payload_type(&codecs, MIME_TYPE_OPUS), None);
    }
}
