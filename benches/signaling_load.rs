//! Signaling load: 2,000 sockets in 500 rooms against a `meshcall serve` child process.
//! Prints relay latency p50/p99 under load and the server's memory per socket.
//! Run: `cargo bench --bench signaling_load` (numbers go to docs/benchmarks.md).
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

const ROOMS: usize = 500;
const PER_ROOM: usize = 4;
const SIGNALS_PER_ROOM: usize = 20;
const SIGNAL_GAP: Duration = Duration::from_millis(50);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

async fn recv_json(ws: &mut Ws) -> Value {
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            _ => continue,
        }
    }
}

async fn join(url: &str, room: Option<&str>, name: &str) -> (Ws, Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut j = json!({"type": "join", "name": name});
    if let Some(room) = room {
        j["room"] = json!(room);
    }
    ws.send(Message::text(j.to_string())).await.unwrap();
    let v = recv_json(&mut ws).await;
    assert_eq!(v["type"], "joined", "{v}");
    (ws, v)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshcall"))
        .args(["serve", "--bind", "127.0.0.1:0", "--max-room-size", "8"])
        // Every socket comes from 127.0.0.1: lift the caps above the 2,000 it opens.
        .args(["--max-sockets", "4000", "--max-sockets-per-ip", "4000"])
        .env("RUST_LOG", "meshcall=info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(at) = line.find("ws://") {
            break line[at..].split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining the child's log so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (warm, _) = join(&url, None, "warm").await;
        drop(warm);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let base_kib = rss_kib(pid);

        let t_connect = Instant::now();
        let gate = Arc::new(Semaphore::new(64));
        let mut rooms = Vec::new();
        for r in 0..ROOMS {
            let url = url.clone();
            let gate = gate.clone();
            rooms.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.unwrap();
                let (first, j) = join(&url, None, "m0").await;
                let code = j["room"].as_str().unwrap().to_owned();
                let mut members = vec![(first, j["self"].as_str().unwrap().to_owned())];
                for i in 1..PER_ROOM {
                    let (ws, j) = join(&url, Some(&code), &format!("m{i}-{r}")).await;
                    members.push((ws, j["self"].as_str().unwrap().to_owned()));
                }
                members
            }));
        }
        let mut rooms_ready = Vec::new();
        for r in rooms {
            rooms_ready.push(r.await.unwrap());
        }
        let connect_time = t_connect.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let loaded_kib = rss_kib(pid);
        let sockets = ROOMS * PER_ROOM;
        let per_socket = (loaded_kib.saturating_sub(base_kib)) as f64 * 1024.0 / sockets as f64;

        // Relay latency with every room talking at once: member 0 signals member 1.
        let epoch = Instant::now();
        let mut probes = Vec::new();
        for mut members in rooms_ready {
            let (mut rx_ws, _) = members.remove(1);
            let (tx_ws, _) = members.remove(0);
            probes.push(tokio::spawn(async move {
                let recv = tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(SIGNALS_PER_ROOM);
                    while lat.len() < SIGNALS_PER_ROOM {
                        let v = recv_json(&mut rx_ws).await;
                        if v["type"] == "signal" {
                            let sent = Duration::from_nanos(v["payload"]["t"].as_u64().unwrap());
                            lat.push(epoch.elapsed().saturating_sub(sent));
                        }
                    }
                    (lat, rx_ws)
                });
                (tx_ws, recv, members)
            }));
        }
        let mut senders = Vec::new();
        for p in probes {
            senders.push(p.await.unwrap());
        }
        // Receiver ids: joins were in order, so member 1 of each room is "p2".
        let t_relay = Instant::now();
        let mut send_tasks = Vec::new();
        for (mut tx_ws, recv, members) in senders {
            send_tasks.push(tokio::spawn(async move {
                for _ in 0..SIGNALS_PER_ROOM {
                    let t = epoch.elapsed().as_nanos() as u64;
                    let m = json!({"type": "signal", "to": "p2", "payload": {"t": t}});
                    tx_ws.send(Message::text(m.to_string())).await.unwrap();
                    tokio::time::sleep(SIGNAL_GAP).await;
                }
                let (lat, rx_ws) = recv.await.unwrap();
                (lat, tx_ws, rx_ws, members)
            }));
        }
        let mut all = Vec::new();
        let mut keep = Vec::new();
        for t in send_tasks {
            let (lat, a, b, m) = t.await.unwrap();
            all.extend(lat);
            keep.push((a, b, m));
        }
        let relay_time = t_relay.elapsed();
        all.sort();
        let rate = all.len() as f64 / relay_time.as_secs_f64();
        println!("signaling load: {sockets} sockets in {ROOMS} rooms ({PER_ROOM} each)");
        println!("  connect+join all: {:.2} s", connect_time.as_secs_f64());
        println!(
            "  server RSS: {base_kib} KiB idle -> {loaded_kib} KiB loaded = {:.1} KiB per socket",
            per_socket / 1024.0
        );
        println!(
            "  relay latency over {} signals at {rate:.0}/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            all.len(),
            percentile(&all, 0.50).as_secs_f64() * 1e3,
            percentile(&all, 0.99).as_secs_f64() * 1e3,
            all.last().unwrap().as_secs_f64() * 1e3
        );
        drop(keep);
    });
    let _ = child.kill();
    let _ = child.wait();
}
