//! Offer/answer for one peer connection, following protocol.md: the newcomer offers first,
//! candidates wait until a remote description is set, and later renegotiation uses the W3C
//! perfect negotiation pattern (the peer with the smaller id is impolite). webrtc-rs has
//! no implicit rollback, so the polite side rolls back explicitly.

use std::sync::Arc;

use webrtc::peer_connection::{
    PeerConnection, RTCIceCandidateInit, RTCSdpType, RTCSessionDescription,
};

use crate::proto::{IceCandidateInit, PeerPayload, SessionDescription};

/// Negotiation state of one peer connection. All calls come from the peer's own task, so
/// there is never more than one operation on the connection at a time.
pub(crate) struct Negotiation {
    polite: bool,
    /// Our offer is set locally and its answer has not come back (have-local-offer).
    have_local_offer: bool,
    /// The last incoming offer was ignored as a collision (so its candidates may fail).
    ignore_offer: bool,
    remote_set: bool,
    pending: Vec<RTCIceCandidateInit>,
    /// One full offer/answer has completed; until then negotiation-needed is not ours to act on.
    pub(crate) initial_done: bool,
    /// The first `a=mid:` of our description, for the candidates we send.
    mid: Option<String>,
}

/// What the peer task should send after handling a payload.
pub(crate) type Outgoing = Option<PeerPayload>;

/// Byte-string comparison as protocol.md asks: the larger id is polite.
pub(crate) fn is_polite(self_id: &str, remote_id: &str) -> bool {
    self_id.as_bytes() > remote_id.as_bytes()
}

fn first_mid(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.strip_prefix("a=mid:"))
        .map(|m| m.trim().to_owned())
}

fn to_rtc(desc: &SessionDescription) -> webrtc::error::Result<RTCSessionDescription> {
    match desc.kind.as_str() {
        "offer" => RTCSessionDescription::offer(desc.sdp.clone()),
        "answer" => RTCSessionDescription::answer(desc.sdp.clone()),
        "pranswer" => RTCSessionDescription::pranswer(desc.sdp.clone()),
        other => Err(webrtc::error::Error::Other(format!(
            "unsupported description type '{other}'"
        ))),
    }
}

fn from_rtc(desc: &RTCSessionDescription) -> PeerPayload {
    let kind = match desc.sdp_type {
        RTCSdpType::Offer => "offer",
        RTCSdpType::Answer => "answer",
        RTCSdpType::Pranswer => "pranswer",
        _ => "rollback",
    };
    PeerPayload::Sdp(SessionDescription {
        kind: kind.to_owned(),
        sdp: desc.sdp.clone(),
    })
}

impl Negotiation {
    pub(crate) fn new(self_id: &str, remote_id: &str) -> Self {
        Self {
            polite: is_polite(self_id, remote_id),
            have_local_offer: false,
            ignore_offer: false,
            remote_set: false,
            pending: Vec::new(),
            initial_done: false,
            mid: None,
        }
    }

    /// Creates and sets an offer; returns it for sending.
    pub(crate) async fn offer(
        &mut self,
        pc: &Arc<dyn PeerConnection>,
    ) -> webrtc::error::Result<PeerPayload> {
        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer.clone()).await?;
        self.have_local_offer = true;
        self.mid = self.mid.take().or_else(|| first_mid(&offer.sdp));
        Ok(from_rtc(&offer))
    }

    /// Whether an offer of ours is out, its answer not back yet.
    pub(crate) fn offering(&self) -> bool {
        self.have_local_offer
    }

    /// Whether we are the impolite side (the smaller id), whose offers win a collision.
    pub(crate) fn impolite(&self) -> bool {
        !self.polite
    }

    /// An offer that restarts ICE. An offer of ours still unanswered is rolled back first:
    /// on a failed link its answer may never come, and a new offer needs a stable state.
    pub(crate) async fn restart_ice(
        &mut self,
        pc: &Arc<dyn PeerConnection>,
    ) -> webrtc::error::Result<PeerPayload> {
        if self.have_local_offer {
            pc.set_local_description(RTCSessionDescription::rollback(None)?)
                .await?;
            self.have_local_offer = false;
        }
        pc.restart_ice().await?;
        self.offer(pc).await
    }

    /// Applies a description or candidate from the remote peer.
    pub(crate) async fn on_payload(
        &mut self,
        pc: &Arc<dyn PeerConnection>,
        payload: PeerPayload,
    ) -> webrtc::error::Result<Outgoing> {
        match payload {
            PeerPayload::Sdp(desc) => self.on_description(pc, desc).await,
            PeerPayload::Candidate(Some(c)) => {
                let init = RTCIceCandidateInit {
                    candidate: c.candidate,
                    sdp_mid: c.sdp_mid,
                    sdp_mline_index: c.sdp_m_line_index,
                    username_fragment: c.username_fragment,
                    url: None,
                };
                if !self.remote_set {
                    self.pending.push(init);
                } else if let Err(e) = pc.add_ice_candidate(init).await
                    && !self.ignore_offer
                {
                    return Err(e);
                }
                Ok(None)
            }
            // webrtc-rs has no end-of-candidates call; nothing to do.
            PeerPayload::Candidate(None) => Ok(None),
        }
    }

    async fn on_description(
        &mut self,
        pc: &Arc<dyn PeerConnection>,
        desc: SessionDescription,
    ) -> webrtc::error::Result<Outgoing> {
        let is_offer = desc.kind == "offer";
        let collision = is_offer && self.have_local_offer;
        self.ignore_offer = collision && !self.polite;
        if self.ignore_offer {
            tracing::debug!("offer collision: impolite, ignoring theirs");
            return Ok(None);
        }
        if collision {
            tracing::debug!("offer collision: polite, rolling back ours");
            pc.set_local_description(RTCSessionDescription::rollback(None)?)
                .await?;
            self.have_local_offer = false;
        }
        pc.set_remote_description(to_rtc(&desc)?).await?;
        self.remote_set = true;
        if !is_offer {
            self.have_local_offer = false;
        }
        for c in std::mem::take(&mut self.pending) {
            if let Err(e) = pc.add_ice_candidate(c).await {
                tracing::debug!("buffered candidate refused: {e}");
            }
        }
        if is_offer {
            let answer = pc.create_answer(None).await?;
            pc.set_local_description(answer.clone()).await?;
            self.mid = self.mid.take().or_else(|| first_mid(&answer.sdp));
            self.initial_done = true;
            return Ok(Some(from_rtc(&answer)));
        }
        self.initial_done = true;
        Ok(None)
    }

    /// Wraps one of our gathered candidates for the wire, the way browsers shape it.
    pub(crate) fn candidate_payload(&self, init: RTCIceCandidateInit) -> PeerPayload {
        PeerPayload::Candidate(Some(IceCandidateInit {
            candidate: init.candidate,
            // webrtc-rs says "", which browsers refuse; every m-line is bundled on the first.
            sdp_mid: Some(self.mid.clone().unwrap_or_else(|| "0".to_owned())),
            sdp_m_line_index: Some(0),
            username_fragment: init.username_fragment,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_larger_id_is_polite() {
        assert!(is_polite("p2", "p1"));
        assert!(!is_polite("p1", "p2"));
        // Byte strings, not numbers.
        assert!(is_polite("p9", "p10"));
    }

    #[test]
    fn first_mid_is_found() {
        assert_eq!(
            first_mid("v=0\r\na=mid:0\r\na=mid:1\r\n").as_deref(),
            Some("0")
        );
        assert_eq!(first_mid("v=0\r\n"), None);
    }
}
