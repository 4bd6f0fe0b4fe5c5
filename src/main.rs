//! The `meshcall` binary: parses the command line, starts logging, calls the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use meshcall::proto::IceServer;
use meshcall::server::{ServerConfig, TlsFiles, TurnConfig};

/// meshcall: video calls with everyone in a room, peer to peer.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the signaling server that rooms meet on.
    Serve(ServeArgs),
    /// Join a room as a headless participant (for tests, demos and load).
    Join,
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
        Some(Command::Join) => Err(anyhow::anyhow!(
            "the headless participant is not built yet; `meshcall serve` is what works today"
        )),
        None => Err(anyhow::anyhow!(
            "the desktop app is not built yet; run `meshcall serve` to host a signaling server"
        )),
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
