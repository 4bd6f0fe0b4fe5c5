//! Counters for `/metrics`, rendered as Prometheus text.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::limits::SocketRefusal;
use crate::proto::ErrorCode;

/// Server-wide counters; gauges that the room registry knows are passed in when rendering.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) sockets: AtomicU64,
    pub(crate) relayed: AtomicU64,
    pub(crate) frames_received: AtomicU64,
    refused: [AtomicU64; ErrorCode::ALL.len()],
    /// Passcodes compared with a room's (wrong or right).
    pub(crate) passcode_checks: AtomicU64,
    /// Joins answered `rate-limited` because of a passcode back-off, unchecked.
    pub(crate) passcode_backoffs: AtomicU64,
    sockets_refused_per_address: AtomicU64,
    sockets_refused_total: AtomicU64,
}

impl Metrics {
    pub(crate) fn refused(&self, code: ErrorCode) {
        self.refused[code.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn socket_refused(&self, why: SocketRefusal) {
        match why {
            SocketRefusal::PerAddress => &self.sockets_refused_per_address,
            SocketRefusal::Total => &self.sockets_refused_total,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn relayed(&self) {
        self.relayed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn render(&self, rooms: usize, members: usize) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge("meshcall_rooms", "Rooms that exist now.", rooms as u64);
        gauge(
            "meshcall_members",
            "Members in all rooms, including those inside a resume grace period.",
            members as u64,
        );
        gauge(
            "meshcall_sockets",
            "Open WebSocket connections.",
            self.sockets.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP meshcall_frames_received_total Text and binary frames read from clients.\n\
             # TYPE meshcall_frames_received_total counter\n\
             meshcall_frames_received_total {}",
            self.frames_received.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP meshcall_messages_relayed_total Signals and chat messages delivered onward.\n\
             # TYPE meshcall_messages_relayed_total counter\n\
             meshcall_messages_relayed_total {}",
            self.relayed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP meshcall_messages_refused_total Messages answered with an error, by code.\n\
             # TYPE meshcall_messages_refused_total counter"
        );
        for code in ErrorCode::ALL {
            let _ = writeln!(
                out,
                "meshcall_messages_refused_total{{code=\"{code}\"}} {}",
                self.refused[code.index()].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP meshcall_sockets_refused_total WebSocket upgrades refused by a socket cap.\n\
             # TYPE meshcall_sockets_refused_total counter\n\
             meshcall_sockets_refused_total{{cap=\"per-address\"}} {}\n\
             meshcall_sockets_refused_total{{cap=\"total\"}} {}",
            self.sockets_refused_per_address.load(Ordering::Relaxed),
            self.sockets_refused_total.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP meshcall_passcode_checks_total Passcodes compared with a room's.\n\
             # TYPE meshcall_passcode_checks_total counter\n\
             meshcall_passcode_checks_total {}",
            self.passcode_checks.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP meshcall_passcode_backoffs_total Joins answered rate-limited, unchecked, \
             during a wrong-passcode back-off.\n\
             # TYPE meshcall_passcode_backoffs_total counter\n\
             meshcall_passcode_backoffs_total {}",
            self.passcode_backoffs.load(Ordering::Relaxed)
        );
        out
    }
}
