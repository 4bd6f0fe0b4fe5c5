//! Joins a Janus VideoRoom headless and prints, every second, what arrived from each
//! publisher: the first step toward `meshcall join` in an SFU room (issue 14).
//!
//! ```text
//! scripts/janus &                       # Janus on ws://127.0.0.1:8188
//! cargo run --example janus_join -- --create --name ann --duration 30
//! cargo run --example janus_join -- --room <printed number> --name bob --duration 20
//! ```
//! It publishes the test pattern and a tone, subscribes to whoever publishes already and
//! to everyone who starts later, and leaves after `--duration` seconds.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use meshcall::engine::{JanusMember, JanusMemberConfig, create_janus_room};
use meshcall::sfu::janus::{RoomConfig, VideoRoomEvent};

#[derive(Parser)]
struct Args {
    /// Janus' WebSocket API.
    #[arg(long, default_value = "ws://127.0.0.1:8188")]
    url: String,
    /// The room to join.
    #[arg(long, conflicts_with = "create")]
    room: Option<u64>,
    /// The room's pin, if it has one.
    #[arg(long)]
    pin: Option<String>,
    /// Create a new H.264 + Opus room and join it.
    #[arg(long)]
    create: bool,
    /// Our display name.
    #[arg(long, default_value = "meshcall")]
    name: String,
    /// Seconds to stay.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Local addresses for ICE host candidates (repeatable).
    #[arg(long = "ice-ip", default_value = "127.0.0.1")]
    ice_ips: Vec<IpAddr>,
    /// Count complete access units only; do not decode.
    #[arg(long)]
    no_decode: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "meshcall=info".into()),
        )
        .init();
    let args = Args::parse();
    let room = match (args.room, args.create) {
        (Some(room), _) => room,
        (None, true) => {
            let room = create_janus_room(&args.url, &RoomConfig::default()).await?;
            println!("created room {room}");
            room
        }
        (None, false) => anyhow::bail!("give --room N or --create"),
    };
    let mut member = JanusMember::publish(JanusMemberConfig {
        url: args.url.clone(),
        room,
        pin: args.pin.clone(),
        name: args.name.clone(),
        ice_ips: args.ice_ips.clone(),
        width: 640,
        height: 360,
        fps: 30,
        decode: !args.no_decode,
    })
    .await?;
    member.wait_published().await?;
    println!("publishing in room {room} as feed {}", member.feed_id());
    let present: Vec<u64> = member.publishers_at_join().iter().map(|p| p.id).collect();
    if !present.is_empty() {
        member.subscribe(&present).await?;
    }

    let end = Instant::now() + Duration::from_secs(args.duration);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(end.into()) => break,
            _ = tick.tick() => {
                for c in member.counts() {
                    println!(
                        "{:>10} ({}): {} units, {} decoded, {} errors, {} audio",
                        c.display, c.feed, c.video_units, c.decoded_frames, c.decode_errors,
                        c.audio_packets
                    );
                }
            }
            event = member.next_room_event() => match event {
                Some(VideoRoomEvent::Publishers(list)) => {
                    let feeds: Vec<u64> = list.iter().map(|p| p.id).collect();
                    println!("publishers arrived: {feeds:?}");
                    if let Err(e) = member.subscribe(&feeds).await {
                        eprintln!("cannot subscribe to {feeds:?}: {e}");
                    }
                }
                Some(VideoRoomEvent::Unpublished(feed) | VideoRoomEvent::Leaving(feed)) => {
                    println!("publisher {feed} left");
                }
                Some(_) => {}
                None => {
                    eprintln!("the connection to Janus is gone");
                    break;
                }
            },
        }
    }
    member.leave().await;
    Ok(())
}
