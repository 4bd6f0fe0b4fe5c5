//! The `meshcall` binary: parses the command line, starts logging, calls the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use meshcall::media::video::screen::ScreenSource;
use meshcall::proto::IceServer;
use meshcall::server::{ServerConfig, SfuConfig, TlsFiles, TurnConfig};

/// meshcall: video calls with everyone in a room, peer to peer.
///
/// Without a subcommand, opens the desktop window.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    window: WindowArgs,
}

/// Prefills the window's lobby; with --room it joins at once.
#[derive(Args, Debug)]
struct WindowArgs {
    /// Signaling server, e.g. ws://127.0.0.1:8787 (default: the remembered one).
    #[arg(long)]
    server: Option<String>,
    /// Room code (or invite link) to join at once.
    #[arg(long)]
    room: Option<String>,
    /// Display name.
    #[arg(long)]
    name: Option<String>,
    /// What to send as video: test, camera or none.
    #[arg(long, value_parser = parse_video)]
    video: Option<VideoArg>,
    /// What to send as audio: tone, mic (the default one), mic:NAME or none.
    #[arg(long, value_parser = parse_audio)]
    audio: Option<AudioArg>,
    /// Local IP address(es) for ICE host candidates (comma-separated); also MESHCALL_ICE_IP.
    #[arg(long, env = meshcall::engine::ICE_IP_ENV)]
    ice_ip: Option<String>,
    /// Use only relay (TURN) candidates, as a browser's `iceTransportPolicy: relay`: every
    /// media link goes through the TURN server the signaling server hands out.
    #[arg(long)]
    relay_only: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the signaling server that rooms meet on.
    Serve(ServeArgs),
    /// Join a room as a headless participant (for tests, demos and load).
    Join(JoinArgs),
}

#[derive(Args, Debug)]
struct JoinArgs {
    /// Signaling server, e.g. ws://127.0.0.1:8787.
    #[arg(long, default_value = "ws://127.0.0.1:8787")]
    server: String,
    /// Room code to join; without it a new room is created and printed first.
    #[arg(long)]
    room: Option<String>,
    /// Display name.
    #[arg(long, default_value = "headless")]
    name: String,
    /// Room passcode.
    #[arg(long)]
    passcode: Option<String>,
    /// What to send as video: test, camera or none; or test:fail-after=N, the test pattern
    /// failing after N frames as an unplugged camera would (to try the failure path).
    #[arg(long, value_parser = parse_video, default_value = "test")]
    video: VideoArg,
    /// What to send as audio: tone, mic (the default one), mic:NAME (a PulseAudio source
    /// name, e.g. mic.monitor) or none.
    #[arg(long, value_parser = parse_audio, default_value = "tone")]
    audio: AudioArg,
    /// Where to play what we receive.
    #[arg(long, value_enum, default_value = "none")]
    speaker: SpeakerArg,
    /// Leave after this many seconds (default: at Ctrl-C).
    #[arg(long)]
    duration: Option<f64>,
    /// Mute the microphone this many seconds after joining.
    #[arg(long)]
    mute_audio_at: Option<f64>,
    /// Unmute the microphone this many seconds after joining.
    #[arg(long)]
    unmute_audio_at: Option<f64>,
    /// Turn the camera off this many seconds after joining.
    #[arg(long)]
    camera_off_at: Option<f64>,
    /// Turn the camera back on this many seconds after joining.
    #[arg(long)]
    camera_on_at: Option<f64>,
    /// Local IP address(es) for ICE host candidates (comma-separated); also MESHCALL_ICE_IP.
    #[arg(long, env = meshcall::engine::ICE_IP_ENV)]
    ice_ip: Option<String>,
    /// Use only relay (TURN) candidates, as a browser's `iceTransportPolicy: relay`: every
    /// media link goes through the TURN server the signaling server hands out.
    #[arg(long)]
    relay_only: bool,
    /// Where to write the JSON report at the end; `-` for standard output.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Share a screen: `test` (a synthetic 1920x1080 screen with fine text, a moving
    /// pointer and the time band for latency), `x11` (the whole screen of DISPLAY) or
    /// `x11:DISPLAY` (e.g. x11::99).
    #[arg(long, value_parser = parse_screen)]
    screen: Option<ScreenSource>,
    /// Start the share this many seconds after joining (default: at once).
    #[arg(long, requires = "screen")]
    screen_at: Option<f64>,
    /// Stop the share this many seconds after joining (default: at the end).
    #[arg(long, requires = "screen")]
    screen_stop_at: Option<f64>,
    /// At the end, write the last screen-share frame received to this file (PPM).
    #[arg(long)]
    save_screen: Option<PathBuf>,
    /// Count complete video access units instead of decoding them (many members on few
    /// cores, e.g. a 12-member SFU room); the report then has no sizes or latencies.
    #[arg(long)]
    count_only: bool,
}

fn parse_screen(s: &str) -> Result<ScreenSource, String> {
    use meshcall::media::video::screen::ScreenTarget;
    match s {
        "test" => Ok(ScreenSource::Test {
            width: 1920,
            height: 1080,
        }),
        "x11" => Ok(ScreenSource::X11 {
            display: None,
            target: ScreenTarget::Screen,
        }),
        _ => s
            .strip_prefix("x11:")
            .filter(|d| !d.is_empty())
            .map(|d| ScreenSource::X11 {
                display: Some(d.to_owned()),
                target: ScreenTarget::Screen,
            })
            .ok_or_else(|| format!("'{s}' is not test, x11 or x11:DISPLAY")),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum VideoArg {
    Test,
    /// The test pattern, failing after this many frames.
    TestFailAfter(u64),
    Camera,
    None,
}

fn parse_video(s: &str) -> Result<VideoArg, String> {
    match s {
        "test" => Ok(VideoArg::Test),
        "camera" => Ok(VideoArg::Camera),
        "none" => Ok(VideoArg::None),
        _ => s
            .strip_prefix("test:fail-after=")
            .and_then(|n| n.parse().ok())
            .map(VideoArg::TestFailAfter)
            .ok_or_else(|| format!("'{s}' is not test, camera, none or test:fail-after=N")),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum AudioArg {
    Tone,
    /// A microphone: the default one, or one by name.
    Mic(Option<String>),
    None,
}

fn parse_audio(s: &str) -> Result<AudioArg, String> {
    match s {
        "tone" => Ok(AudioArg::Tone),
        "mic" => Ok(AudioArg::Mic(None)),
        "none" => Ok(AudioArg::None),
        _ => s
            .strip_prefix("mic:")
            .filter(|name| !name.is_empty())
            .map(|name| AudioArg::Mic(Some(name.to_owned())))
            .ok_or_else(|| format!("'{s}' is not tone, mic, mic:NAME or none")),
    }
}

#[derive(clap::ValueEnum, Clone, Debug)]
enum SpeakerArg {
    None,
    Default,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Address to listen on; use 0.0.0.0:8787 to accept other machines.
    #[arg(long, default_value = "127.0.0.1:8787")]
    bind: SocketAddr,
    /// Members a room may hold.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    max_room_size: u16,
    /// Seconds a member whose connection dropped keeps its place.
    #[arg(long, default_value_t = 20)]
    grace: u64,
    /// Open WebSocket connections in all; more are refused with HTTP 503.
    #[arg(long, default_value_t = meshcall::server::DEFAULT_MAX_SOCKETS as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_sockets: u32,
    /// Open WebSocket connections from one address (IPv6: one /64); more are refused with
    /// HTTP 429. Behind a reverse proxy every client has the proxy's address: raise it.
    #[arg(long, default_value_t = meshcall::server::DEFAULT_MAX_SOCKETS_PER_IP as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_sockets_per_ip: u32,
    /// A STUN/TURN URL handed to clients (repeatable).
    #[arg(long = "ice-server", value_name = "URL")]
    ice_servers: Vec<String>,
    /// A TURN server sharing --turn-secret (coturn's use-auth-secret).
    #[arg(long, requires = "turn_secret")]
    turn_url: Option<String>,
    /// coturn's static-auth-secret.
    #[arg(
        long,
        requires = "turn_url",
        env = "MESHCALL_TURN_SECRET",
        hide_env_values = true
    )]
    turn_secret: Option<String>,
    /// Janus' WebSocket API (e.g. ws://127.0.0.1:8188): rooms past --sfu-above move onto
    /// its VideoRoom plugin (docs/sfu.md). Without it every room stays a mesh.
    #[arg(long, value_name = "URL")]
    sfu: Option<String>,
    /// Janus' WebSocket API as members reach it, when it differs from --sfu (e.g. behind a
    /// proxy: wss://sfu.example.org/janus).
    #[arg(long, value_name = "URL", requires = "sfu")]
    sfu_public: Option<String>,
    /// A mesh room of this many members moves onto the SFU when one more joins.
    #[arg(long, default_value_t = meshcall::server::DEFAULT_SFU_ABOVE as u16,
          value_parser = clap::value_parser!(u16).range(1..), requires = "sfu")]
    sfu_above: u16,
    /// Members a room on the SFU may hold (--max-room-size stays the mesh's limit).
    #[arg(long, default_value_t = meshcall::server::DEFAULT_SFU_MAX_ROOM_SIZE as u16,
          value_parser = clap::value_parser!(u16).range(2..), requires = "sfu")]
    sfu_max_room_size: u16,
    /// VideoRoom's admin_key, when your Janus requires one to create rooms.
    #[arg(
        long,
        requires = "sfu",
        env = "MESHCALL_SFU_ADMIN_KEY",
        hide_env_values = true
    )]
    sfu_admin_key: Option<String>,
    /// PEM certificate chain for wss:// (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for wss:// (with --tls-cert).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "meshcall=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Some(Command::Serve(args)) => run_serve(args),
        Some(Command::Join(args)) => run_join(args),
        None => run_window(cli.window),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("meshcall: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = ServerConfig {
        max_room_size: usize::from(args.max_room_size),
        grace: Duration::from_secs(args.grace),
        max_sockets: args.max_sockets as usize,
        max_sockets_per_ip: args.max_sockets_per_ip as usize,
        ice_servers: args
            .ice_servers
            .into_iter()
            .map(|url| IceServer {
                urls: vec![url],
                username: None,
                credential: None,
            })
            .collect(),
        turn: args
            .turn_url
            .zip(args.turn_secret)
            .map(|(url, secret)| TurnConfig {
                urls: vec![url],
                secret,
                ttl_secs: 24 * 3600,
            }),
        sfu: args.sfu.map(|url| SfuConfig {
            public_url: args.sfu_public,
            above: usize::from(args.sfu_above),
            max_room_size: usize::from(args.sfu_max_room_size),
            admin_key: args.sfu_admin_key,
            ..SfuConfig::new(url)
        }),
        ..ServerConfig::default()
    };
    let tls = args
        .tls_cert
        .zip(args.tls_key)
        .map(|(cert, key)| TlsFiles { cert, key });
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.bind)
            .await
            .with_context(|| format!("cannot listen on {}", args.bind))?;
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        tracing::info!(
            "signaling server on {scheme}://{}/ws (Ctrl-C to stop)",
            listener.local_addr()?
        );
        meshcall::server::serve(listener, config, tls, shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

fn run_window(args: WindowArgs) -> anyhow::Result<()> {
    use meshcall::ui::settings::{CameraPick, MicPick};
    let mut engine = meshcall::engine::EngineConfig::default();
    if let Some(ips) = &args.ice_ip {
        engine.ice_ips =
            meshcall::engine::parse_ips(ips).map_err(|e| anyhow::anyhow!("--ice-ip: {e}"))?;
    }
    engine.relay_only = args.relay_only;
    let launch = meshcall::ui::Launch {
        server: args.server,
        room: args.room,
        name: args.name,
        camera: args
            .video
            .map(|v| match v {
                VideoArg::Test => Ok(CameraPick::TestPattern),
                VideoArg::TestFailAfter(_) => Err(anyhow::anyhow!(
                    "--video test:fail-after is for `meshcall join` only"
                )),
                VideoArg::Camera => Ok(CameraPick::Camera(0)),
                VideoArg::None => Ok(CameraPick::None),
            })
            .transpose()?,
        mic: args.audio.map(|a| match a {
            AudioArg::Tone => MicPick::Tone,
            AudioArg::Mic(None) => MicPick::Default,
            AudioArg::Mic(Some(name)) => MicPick::Device(name),
            AudioArg::None => MicPick::None,
        }),
        engine,
    };
    meshcall::ui::run(launch)
}

fn secs(s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| anyhow::anyhow!("'{s}' is not a number of seconds"))
}

fn run_join(args: JoinArgs) -> anyhow::Result<()> {
    use meshcall::engine::{Command as EngineCommand, EngineConfig, parse_ips};
    use meshcall::media::pipeline::{AudioChoice, Speaker, VideoChoice};
    use meshcall::participant::{ParticipantConfig, ScreenPlan, run};
    let mut engine = EngineConfig::default();
    if let Some(ips) = &args.ice_ip {
        engine.ice_ips = parse_ips(ips).map_err(|e| anyhow::anyhow!("--ice-ip: {e}"))?;
    }
    engine.relay_only = args.relay_only;
    let mut schedule = Vec::new();
    for (at, cmd) in [
        (args.mute_audio_at, EngineCommand::SetMic(false)),
        (args.unmute_audio_at, EngineCommand::SetMic(true)),
        (args.camera_off_at, EngineCommand::SetCamera(false)),
        (args.camera_on_at, EngineCommand::SetCamera(true)),
    ] {
        if let Some(at) = at {
            schedule.push((secs(at)?, cmd));
        }
    }
    let config = ParticipantConfig {
        server: args.server,
        room: args.room,
        name: args.name,
        passcode: args.passcode,
        video: match args.video {
            VideoArg::Test => VideoChoice::TestPattern,
            VideoArg::TestFailAfter(frames) => VideoChoice::FailingTestPattern(frames),
            VideoArg::Camera => VideoChoice::Camera(0),
            VideoArg::None => VideoChoice::None,
        },
        audio: match args.audio {
            AudioArg::Tone => AudioChoice::Tone { beep_every: None },
            AudioArg::Mic(name) => AudioChoice::Mic(name),
            AudioArg::None => AudioChoice::None,
        },
        speaker: match args.speaker {
            SpeakerArg::None => Speaker::None,
            SpeakerArg::Default => Speaker::Default,
        },
        duration: args.duration.map(secs).transpose()?,
        schedule,
        engine,
        screen: match args.screen {
            Some(source) => Some(ScreenPlan {
                source,
                start_at: args.screen_at.map(secs).transpose()?.unwrap_or_default(),
                stop_at: args.screen_stop_at.map(secs).transpose()?,
            }),
            None => None,
        },
        save_screen: args.save_screen,
        count_only: args.count_only,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let report = runtime.block_on(run(config, shutdown_signal(), |room| {
        use std::io::Write as _;
        println!("room: {room}");
        let _ = std::io::stdout().flush();
    }))?;
    let json = serde_json::to_string_pretty(&report)?;
    match args.report {
        Some(path) if path.as_os_str() == "-" => println!("{json}"),
        Some(path) => std::fs::write(&path, json + "\n")
            .with_context(|| format!("writing the report to {}", path.display()))?,
        None => {}
    }
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screen_arguments_parse() {
        assert_eq!(
            parse_screen("test"),
            Ok(ScreenSource::Test {
                width: 1920,
                height: 1080
            })
        );
        assert!(matches!(
            parse_screen("x11::99"),
            Ok(ScreenSource::X11 { display: Some(d), .. }) if d == ":99"
        ));
        assert!(matches!(
            parse_screen("x11"),
            Ok(ScreenSource::X11 { display: None, .. })
        ));
        assert!(parse_screen("x11:").is_err());
        assert!(parse_screen("wayland").is_err());
    }

    #[test]
    fn video_and_audio_arguments_parse() {
        assert_eq!(parse_video("test"), Ok(VideoArg::Test));
        assert_eq!(
            parse_video("test:fail-after=90"),
            Ok(VideoArg::TestFailAfter(90))
        );
        assert!(parse_video("test:fail-after=x").is_err());
        assert!(parse_video("webcam").is_err());
        assert_eq!(parse_audio("mic"), Ok(AudioArg::Mic(None)));
        assert_eq!(
            parse_audio("mic:mic.monitor"),
            Ok(AudioArg::Mic(Some("mic.monitor".into())))
        );
        assert!(parse_audio("mic:").is_err());
    }
}
