//! How a socket's end is asked for — by its own reader (a rule broken, the client left), by
//! the hub (replaced, too slow), or by shutdown — and how long closing may take. The request
//! does not travel through the bounded write queue, so a full queue cannot lose or delay
//! it; the first request wins.

use std::sync::OnceLock;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Close codes this server uses.
pub(crate) mod code {
    pub(crate) const NORMAL: u16 = 1000;
    pub(crate) const GOING_AWAY: u16 = 1001;
    pub(crate) const POLICY: u16 = 1008;
    pub(crate) const TOO_BIG: u16 = 1009;
    /// Another socket resumed this membership (protocol.md, *Resume*).
    pub(crate) const REPLACED: u16 = 4001;
}

/// How long the writer may spend getting what was queued, then the close frame, onto a
/// socket whose client reads slowly or not at all.
pub(crate) const CLOSE_FLUSH: Duration = Duration::from_secs(5);

/// How long after the close frame went out the socket stays open for the client's own
/// close frame. Dropping it at once while the client still sends makes the kernel answer
/// with a reset, and a client whose write (a pong, say) meets that reset reports 1006
/// without reading the close frame that had already arrived.
pub(crate) const LINGER: Duration = Duration::from_secs(2);

/// How a socket should end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Send a close frame with this code and reason, after what was already queued.
    Close(u16, &'static str),
    /// The client is gone or unresponsive: drop the socket without a close frame.
    Drop,
}

/// One socket's end, requested once from wherever and awaited by its task.
#[derive(Debug, Default)]
pub(crate) struct Ending {
    end: OnceLock<End>,
    asked: CancellationToken,
}

impl Ending {
    /// Asks for the socket to end; later requests are ignored.
    pub(crate) fn request(&self, end: End) {
        let _ = self.end.set(end);
        self.asked.cancel();
    }

    /// Waits until an end was requested; returns the first request.
    pub(crate) async fn requested(&self) -> End {
        self.asked.cancelled().await;
        *self
            .end
            .get()
            .expect("the end is set before the token is cancelled")
    }

    /// The end, if one was requested.
    pub(crate) fn get(&self) -> Option<End> {
        self.end.get().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_request_wins() {
        let e = Ending::default();
        assert_eq!(e.get(), None);
        e.request(End::Close(code::POLICY, "message flood"));
        e.request(End::Close(code::REPLACED, "replaced"));
        e.request(End::Drop);
        assert_eq!(
            e.requested().await,
            End::Close(code::POLICY, "message flood")
        );
    }
}
