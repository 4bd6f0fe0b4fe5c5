//! Two peer connections from [`PeerFactory`] in one process on 127.0.0.1: they connect,
//! H.264 RTP flows, a PLI from the receiver reaches the sender's track, and no candidate
//! names any address but loopback.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::TrackRemoteEvent;
use webrtc::peer_connection::RTCPeerConnectionState;

use super::link_shaper::LinkShaper;
use super::peer::{Forward, PcEvent, local_track};
use super::peer_factory::{BitrateRange, H264_PT, PeerFactory, SendSide};

fn factory() -> PeerFactory {
    PeerFactory {
        ice_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        bitrate: BitrateRange::default(),
        ice_disconnected: Duration::from_secs(5),
        ice_failed: Duration::from_secs(25),
        link: LinkShaper::default(),
        relay_only: false,
    }
}

const SSRC: u32 = 0x1234_5678;

fn send_side() -> SendSide {
    SendSide {
        audio_ssrc: 0x0a0d_10a0,
        video_ssrc: SSRC,
        meter: Arc::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_connect_on_loopback_and_exchange_rtp_and_pli() {
    let (a_tx, mut a_rx) = mpsc::unbounded_channel();
    let (b_tx, mut b_rx) = mpsc::unbounded_channel();
    let a = factory()
        .build(&[], true, &send_side(), Arc::new(Forward(a_tx)))
        .await
        .unwrap();
    let b = factory()
        .build(&[], false, &send_side(), Arc::new(Forward(b_tx)))
        .await
        .unwrap();
    let track = local_track("peer-a", RtpCodecKind::Video, SSRC);
    a.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
        .await
        .unwrap();

    let offer = a.create_offer(None).await.unwrap();
    assert!(
        offer.sdp.contains("profile-level-id=42e01f"),
        "{}",
        offer.sdp
    );
    assert!(offer.sdp.contains("transport-cc"), "no TWCC in offer");
    a.set_local_description(offer.clone()).await.unwrap();
    b.set_remote_description(offer).await.unwrap();
    let answer = b.create_answer(None).await.unwrap();
    b.set_local_description(answer.clone()).await.unwrap();
    a.set_remote_description(answer).await.unwrap();

    let mut candidates = Vec::new();
    let (mut a_up, mut b_up) = (false, false);
    let mut remote_track = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(a_up && b_up) {
        tokio::select! {
            Some(ev) = a_rx.recv() => match ev {
                PcEvent::Candidate(c) => { candidates.push(c.candidate.clone()); b.add_ice_candidate(c).await.unwrap(); }
                PcEvent::State(s) => a_up |= s == RTCPeerConnectionState::Connected,
                PcEvent::Track(_) | PcEvent::NegotiationNeeded => {}
            },
            Some(ev) = b_rx.recv() => match ev {
                PcEvent::Candidate(c) => { candidates.push(c.candidate.clone()); a.add_ice_candidate(c).await.unwrap(); }
                PcEvent::State(s) => b_up |= s == RTCPeerConnectionState::Connected,
                PcEvent::Track(t) => remote_track = Some(t),
                PcEvent::NegotiationNeeded => {}
            },
            () = tokio::time::sleep_until(deadline) => panic!("not connected: a {a_up} b {b_up}"),
        }
    }
    assert!(!candidates.is_empty());
    for c in &candidates {
        assert!(c.contains(" 127.0.0.1 "), "candidate off loopback: {c}");
    }

    // 90 access units of one small NAL each (a non-IDR slice header is enough for RTP).
    let sender = {
        let track = Arc::clone(&track);
        tokio::spawn(async move {
            for i in 0..90u32 {
                let pkt = rtp::Packet {
                    header: rtp::header::Header {
                        version: 2,
                        marker: true,
                        payload_type: H264_PT,
                        sequence_number: i as u16,
                        timestamp: i * 3000,
                        ssrc: SSRC,
                        ..Default::default()
                    },
                    payload: bytes::Bytes::from(vec![0x41, 0x9a, i as u8, 0x10, 0x20]),
                };
                track.write_rtp(pkt).await.unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let remote = match remote_track {
        Some(t) => t,
        None => loop {
            match tokio::time::timeout(Duration::from_secs(5), b_rx.recv())
                .await
                .unwrap()
            {
                Some(PcEvent::Track(t)) => break t,
                Some(_) => continue,
                None => panic!("b's events ended"),
            }
        },
    };
    assert_eq!(remote.kind().await, RtpCodecKind::Video);
    assert_eq!(remote.stream_id().await, "peer-a");
    let media_ssrc = remote.ssrcs().await[0];
    remote
        .write_rtcp(vec![Box::new(PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc,
        })])
        .await
        .unwrap();
    let mut packets = 0;
    let counted = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(ev) = remote.poll().await {
            if let TrackRemoteEvent::OnRtpPacket(p) = ev {
                assert_eq!(p.header.payload_type, H264_PT);
                packets += 1;
                if packets >= 60 {
                    break;
                }
            }
        }
    })
    .await;
    assert!(counted.is_ok(), "only {packets} RTP packets arrived");
    let pli = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match track.poll().await {
                Some(TrackLocalEvent::OnRtcpPacket(pkts)) => {
                    if pkts
                        .iter()
                        .any(|p| p.as_any().is::<PictureLossIndication>())
                    {
                        return true;
                    }
                }
                Some(_) => {}
                None => return false,
            }
        }
    })
    .await;
    assert_eq!(pli, Ok(true), "the PLI never reached the sender's track");
    sender.await.unwrap();
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// The `a=setup:` value of a description.
fn setup_role(sdp: &str) -> &str {
    sdp.lines()
        .find_map(|l| l.strip_prefix("a=setup:"))
        .unwrap_or("none")
        .trim()
}

/// A later offer from the member who answered first must be answered with the DTLS role
/// the first exchange gave us (passive), or a browser refuses the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_offerer_keeps_its_dtls_role_when_it_answers_a_later_offer() {
    let (a_tx, _a_rx) = mpsc::unbounded_channel();
    let (b_tx, _b_rx) = mpsc::unbounded_channel();
    let a = factory()
        .build(&[], true, &send_side(), Arc::new(Forward(a_tx)))
        .await
        .unwrap();
    let b = factory()
        .build(&[], false, &send_side(), Arc::new(Forward(b_tx)))
        .await
        .unwrap();
    let track = local_track("peer-a", RtpCodecKind::Video, SSRC);
    a.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
        .await
        .unwrap();
    let offer = a.create_offer(None).await.unwrap();
    assert_eq!(setup_role(&offer.sdp), "actpass");
    a.set_local_description(offer.clone()).await.unwrap();
    b.set_remote_description(offer).await.unwrap();
    let answer = b.create_answer(None).await.unwrap();
    assert_eq!(setup_role(&answer.sdp), "active", "b is the DTLS client");
    b.set_local_description(answer.clone()).await.unwrap();
    a.set_remote_description(answer).await.unwrap();

    // b starts sending too, which needs a new offer from b.
    let b_track = local_track("peer-b", RtpCodecKind::Video, SSRC + 1);
    b.add_track(Arc::clone(&b_track) as Arc<dyn TrackLocal>)
        .await
        .unwrap();
    let reoffer = b.create_offer(None).await.unwrap();
    b.set_local_description(reoffer.clone()).await.unwrap();
    a.set_remote_description(reoffer).await.unwrap();
    let reanswer = a.create_answer(None).await.unwrap();
    assert_eq!(
        setup_role(&reanswer.sdp),
        "passive",
        "a must stay the DTLS server"
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

fn quick_factory(link: LinkShaper) -> PeerFactory {
    PeerFactory {
        ice_disconnected: Duration::from_millis(1000),
        ice_failed: Duration::from_millis(2000),
        link,
        ..factory()
    }
}

type Pc = Arc<dyn webrtc::peer_connection::PeerConnection>;

/// `a` offers, `b` answers, both apply (candidates go through the event channels).
async fn negotiate(a: &Pc, b: &Pc) {
    let offer = a.create_offer(None).await.unwrap();
    a.set_local_description(offer.clone()).await.unwrap();
    b.set_remote_description(offer).await.unwrap();
    let answer = b.create_answer(None).await.unwrap();
    b.set_local_description(answer.clone()).await.unwrap();
    a.set_remote_description(answer).await.unwrap();
}

/// Two connections on loopback, `a` sending one video track to `b`, both connected.
struct VideoPair {
    a: Pc,
    b: Pc,
    a_rx: mpsc::UnboundedReceiver<PcEvent>,
    b_rx: mpsc::UnboundedReceiver<PcEvent>,
    /// `a`'s video track.
    track: Arc<TrackLocalStaticRTP>,
    /// What `b` received so far (the video track, once it came).
    tracks: Vec<Arc<dyn webrtc::media_stream::track_remote::TrackRemote>>,
}

/// Builds `a` with `a_factory` (its sending side `a_side`) and `b` with `b_factory`,
/// negotiates one video track from `a` and relays candidates until both are connected.
async fn connected_video_pair(
    a_factory: PeerFactory,
    a_side: &SendSide,
    b_factory: PeerFactory,
) -> VideoPair {
    let (a_tx, mut a_rx) = mpsc::unbounded_channel();
    let (b_tx, mut b_rx) = mpsc::unbounded_channel();
    let a = a_factory
        .build(&[], true, a_side, Arc::new(Forward(a_tx)))
        .await
        .unwrap();
    let b = b_factory
        .build(&[], false, &send_side(), Arc::new(Forward(b_tx)))
        .await
        .unwrap();
    let track = local_track("peer-a", RtpCodecKind::Video, SSRC);
    a.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
        .await
        .unwrap();
    negotiate(&a, &b).await;
    let mut tracks = Vec::new();
    pump_until(
        &a,
        &mut a_rx,
        &b,
        &mut b_rx,
        RTCPeerConnectionState::Connected,
        &mut tracks,
    )
    .await;
    VideoPair {
        a,
        b,
        a_rx,
        b_rx,
        track,
        tracks,
    }
}

/// Relays candidates both ways until both connections reach `want` (or panics after 15 s).
async fn pump_until(
    a: &Arc<dyn webrtc::peer_connection::PeerConnection>,
    a_rx: &mut mpsc::UnboundedReceiver<PcEvent>,
    b: &Arc<dyn webrtc::peer_connection::PeerConnection>,
    b_rx: &mut mpsc::UnboundedReceiver<PcEvent>,
    want: RTCPeerConnectionState,
    tracks: &mut Vec<Arc<dyn webrtc::media_stream::track_remote::TrackRemote>>,
) {
    let (mut a_in, mut b_in) = (false, false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !(a_in && b_in) {
        tokio::select! {
            Some(ev) = a_rx.recv() => match ev {
                PcEvent::Candidate(c) => { let _ = b.add_ice_candidate(c).await; }
                PcEvent::State(s) => { eprintln!("a: {s}"); a_in = s == want; }
                PcEvent::Track(_) | PcEvent::NegotiationNeeded => {}
            },
            Some(ev) = b_rx.recv() => match ev {
                PcEvent::Candidate(c) => { let _ = a.add_ice_candidate(c).await; }
                PcEvent::State(s) => { eprintln!("b: {s}"); b_in = s == want; }
                PcEvent::Track(t) => tracks.push(t),
                PcEvent::NegotiationNeeded => {}
            },
            () = tokio::time::sleep_until(deadline) => panic!("not {want}: a {a_in} b {b_in}"),
        }
    }
}

/// The fact the engine's link recovery rests on: in webrtc-rs 0.21 an ICE restart brings
/// back a connection whose agent already reached Failed (it stops checking and drops its
/// candidates there), keeping DTLS and the tracks. The media path is cut with the gate on
/// one side only, as a dead network would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_restart_recovers_a_failed_connection() {
    let gate = LinkShaper::default();
    let VideoPair {
        a,
        b,
        mut a_rx,
        mut b_rx,
        track,
        mut tracks,
    } = connected_video_pair(
        quick_factory(gate.clone()),
        &send_side(),
        quick_factory(LinkShaper::default()),
    )
    .await;
    let sent = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let sender = {
        let track = Arc::clone(&track);
        let sent = Arc::clone(&sent);
        tokio::spawn(async move {
            for i in 0..3000u32 {
                sent.store(i, std::sync::atomic::Ordering::SeqCst);
                let pkt = rtp::Packet {
                    header: rtp::header::Header {
                        version: 2,
                        marker: true,
                        payload_type: H264_PT,
                        sequence_number: i as u16,
                        timestamp: i * 3000,
                        ssrc: SSRC,
                        ..Default::default()
                    },
                    payload: bytes::Bytes::from(vec![0x41, 0x9a, i as u8, 0x10, 0x20]),
                };
                let _ = track.write_rtp(pkt).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = std::time::Instant::now();
    gate.set_blocked(true);
    pump_until(
        &a,
        &mut a_rx,
        &b,
        &mut b_rx,
        RTCPeerConnectionState::Failed,
        &mut tracks,
    )
    .await;
    eprintln!("both failed after {:?}", t0.elapsed());
    gate.set_blocked(false);
    let t1 = std::time::Instant::now();
    a.restart_ice().await.unwrap();
    negotiate(&a, &b).await;
    pump_until(
        &a,
        &mut a_rx,
        &b,
        &mut b_rx,
        RTCPeerConnectionState::Connected,
        &mut tracks,
    )
    .await;
    eprintln!("both connected again after {:?}", t1.elapsed());
    // Only packets written after the restart count (the track's queue still holds older ones).
    let first_new = sent.load(std::sync::atomic::Ordering::SeqCst) + 1;
    let remote = tracks.pop().expect("no remote track");
    let mut packets = 0;
    let counted = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(ev) = remote.poll().await {
            if let TrackRemoteEvent::OnRtpPacket(p) = ev
                && u32::from(p.header.sequence_number) >= first_new
            {
                packets += 1;
                if packets >= 100 {
                    break;
                }
            }
        }
    })
    .await;
    assert!(
        counted.is_ok(),
        "only {packets} new RTP packets arrived after the restart"
    );
    // Keyframe requests still reach the sender after the restart.
    let media_ssrc = remote.ssrcs().await[0];
    remote
        .write_rtcp(vec![Box::new(PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc,
        })])
        .await
        .unwrap();
    let pli = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match track.poll().await {
                Some(TrackLocalEvent::OnRtcpPacket(pkts))
                    if pkts
                        .iter()
                        .any(|p| p.as_any().is::<PictureLossIndication>()) =>
                {
                    return true;
                }
                Some(_) => {}
                None => return false,
            }
        }
    })
    .await;
    assert_eq!(
        pli,
        Ok(true),
        "a PLI after the restart never reached the sender"
    );
    sender.abort();
}

/// Sends a camera stream of small frames from `a` to `b` over `link` for two seconds, with
/// a 300 kB burst on it after 300 ms (what a share's first 1080p keyframe is to the pacer),
/// and returns the highest estimate `a`'s link reached.
async fn highest_estimate_after_a_burst(link: LinkShaper) -> u64 {
    let side = send_side();
    let meter = Arc::clone(&side.meter);
    let VideoPair { a, b, track, .. } =
        connected_video_pair(quick_factory(link), &side, factory()).await;
    let mut seq = 0u16;
    let mut highest = 0;
    for frame in 0..60u32 {
        let (packets, size) = if frame == 9 { (250, 1188) } else { (1, 300) };
        for k in 0..packets {
            let pkt = rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    marker: k == packets - 1,
                    payload_type: H264_PT,
                    sequence_number: seq,
                    timestamp: frame * 3000,
                    ssrc: SSRC,
                    ..Default::default()
                },
                payload: bytes::Bytes::from(vec![0x41; size]),
            };
            seq = seq.wrapping_add(1);
            track.write_rtp(pkt).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(33)).await;
        highest = highest.max(
            meter
                .estimate_bps
                .load(std::sync::atomic::Ordering::Relaxed),
        );
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
    eprintln!("highest estimate {highest} bit/s");
    highest
}

/// Probing over webrtc-rs' real transport feedback: the burst is probed and a clean link's
/// estimate jumps from its cautious 150 kbit/s start (climbing alone, it reaches under
/// 500 kbit/s in two seconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_probed_and_a_clean_link_s_estimate_jumps() {
    let highest = highest_estimate_after_a_burst(LinkShaper::default()).await;
    assert!(highest >= 1_500_000, "highest estimate {highest}");
}

/// The same probe into a 400 kbit/s bottleneck (a 30 kB FIFO) lifts the estimate no
/// higher than the bottleneck carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_into_a_400_kbit_link_stays_under_its_rate() {
    use super::link_shaper::{LinkConditions, RateCap};
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let link = LinkShaper::default();
    link.set_conditions(LinkConditions {
        rate: Some(RateCap {
            bits_per_second: 400_000,
            queue_bytes: 30_000,
        }),
        ..Default::default()
    });
    let highest = highest_estimate_after_a_burst(link).await;
    assert!(highest <= 440_000, "highest estimate {highest}");
    assert!(highest >= 150_000, "highest estimate {highest}");
}
