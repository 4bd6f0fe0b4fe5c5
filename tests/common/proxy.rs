//! A TCP proxy on 127.0.0.1 whose live connections a test can cut, to drop a client's
//! socket the way a network outage would (without the client saying goodbye).
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct CutProxy {
    pub addr: SocketAddr,
    cuts: Arc<Mutex<CancellationToken>>,
    refusing: Arc<std::sync::atomic::AtomicBool>,
    stop: CancellationToken,
}

impl CutProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cuts = Arc::new(Mutex::new(CancellationToken::new()));
        let refusing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = CancellationToken::new();
        let (c, r, st) = (cuts.clone(), refusing.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    a = listener.accept() => a.unwrap(),
                    () = st.cancelled() => return,
                };
                if r.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let cut = c.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = cut.cancelled() => {}
                    }
                });
            }
        });
        Self {
            addr,
            cuts,
            refusing,
            stop,
        }
    }

    /// Drops every connection open now; later ones pass unless `refuse` is set.
    pub fn cut(&self) {
        let mut c = self.cuts.lock().unwrap();
        c.cancel();
        *c = CancellationToken::new();
    }

    /// While set, new connections are dropped at once.
    pub fn refuse(&self, on: bool) {
        self.refusing.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut();
    }
}
