//! What the call screen shows, folded from the engine's events: who is here, their
//! numbers, the chat. Plain data, so tests can drive it without a window.

use std::collections::VecDeque;
use std::time::Duration;

use crate::client::ConnectionState;
use crate::engine::{LinkState, Member, MemberStats};
use crate::proto::ChatMessage;

/// Messages kept in the chat panel (the server replays 50 on join).
const CHAT_KEPT: usize = 500;
/// Stats samples (about one a second) their video bitrate is averaged over, as the
/// participant report does.
const KBPS_SAMPLES: usize = 10;

/// Connection quality toward one member, for the tile's mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    /// Media flows with low delay and little loss.
    Good,
    /// Noticeable delay or loss.
    Fair,
    /// Heavy loss or delay, or the link is down.
    Poor,
    /// Nothing measured yet.
    Unknown,
}

/// Numbers behind a quality mark, as the tooltip shows them: the participant report's
/// per-peer numbers, live.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkNumbers {
    /// Round-trip time, ms.
    pub rtt_ms: Option<f64>,
    /// Packets lost in the last interval, as a fraction of those expected.
    pub loss: f64,
    /// Their packets lost since the connection began, as a fraction (the report's
    /// `loss_pct`).
    pub loss_total: f64,
    /// Received bits per second.
    pub bitrate_in: f64,
    /// Sent bits per second.
    pub bitrate_out: f64,
    /// Their video bits per second, the mean of the last 10 samples (the report's
    /// `video_kbps`).
    pub video_bitrate_in: f64,
    /// Their video frames decoded per second over the last 10 s (the report's `fps`), or
    /// assembled in the last interval where nothing decodes.
    pub fps_in: f64,
    /// Size of their last decoded frame.
    pub resolution: Option<(u32, u32)>,
    /// Their video's freezes (gaps longer than max(3 x the mean interval, 150 ms)).
    pub freezes: u64,
    /// The freezes' total length.
    pub freeze_time: Duration,
    /// Their audio frames made up by concealment.
    pub audio_concealed: u64,
    /// Their video packets we asked for again, and the retransmissions that came.
    pub nacks_sent: u64,
    /// See `nacks_sent`.
    pub retransmissions: u64,
    /// The video layer we send them (`640x360`, `paused`).
    pub layer_out: Option<String>,
}

/// One remote member as the call screen knows them.
#[derive(Debug, Clone)]
pub struct MemberView {
    /// What the engine said last.
    pub member: Member,
    /// The latest numbers.
    pub numbers: Option<LinkNumbers>,
    last_counts: Option<(i64, u64)>,
    /// Their video bitrate in the last samples, newest last.
    video_bps: VecDeque<f64>,
}

impl MemberView {
    /// The quality mark for this member.
    pub fn quality(&self) -> Quality {
        if matches!(
            self.member.link,
            LinkState::Reconnecting | LinkState::Failed
        ) {
            return Quality::Poor;
        }
        match &self.numbers {
            None => Quality::Unknown,
            Some(n) => quality_of(n),
        }
    }
}

/// Grades numbers: loss matters most to a call, then delay.
pub fn quality_of(n: &LinkNumbers) -> Quality {
    let rtt = n.rtt_ms.unwrap_or(0.0);
    if n.loss > 0.10 || rtt > 400.0 {
        Quality::Poor
    } else if n.loss > 0.02 || rtt > 150.0 {
        Quality::Fair
    } else {
        Quality::Good
    }
}

/// The room we are in.
#[derive(Debug, Clone)]
pub struct CallModel {
    /// Room code.
    pub room: String,
    /// Our peer id.
    pub self_id: String,
    /// The others, in the order they arrived.
    pub members: Vec<MemberView>,
    /// The room's chat, oldest first.
    pub chat: Vec<ChatMessage>,
    /// Messages from others that arrived while the chat panel was closed.
    pub unread: usize,
    /// Whether the chat panel is open.
    pub chat_open: bool,
    /// The signaling link.
    pub signaling: ConnectionState,
    /// Members sharing their screen, in the order they started (the newest last).
    pub shares: Vec<String>,
}

impl CallModel {
    /// The call as `joined` describes it.
    pub fn new(
        room: String,
        self_id: String,
        members: Vec<Member>,
        chat: Vec<ChatMessage>,
    ) -> Self {
        let mut model = Self {
            room,
            self_id,
            members: Vec::new(),
            chat,
            unread: 0,
            chat_open: false,
            signaling: ConnectionState::Connected,
            shares: Vec::new(),
        };
        for m in members {
            model.upsert(m);
        }
        model
    }

    /// Adds a member or updates one we know.
    pub fn upsert(&mut self, member: Member) {
        let sharing = self.shares.contains(&member.id);
        if member.screen && !sharing {
            self.shares.push(member.id.clone());
        } else if !member.screen && sharing {
            self.shares.retain(|id| *id != member.id);
        }
        match self.members.iter_mut().find(|v| v.member.id == member.id) {
            Some(v) => v.member = member,
            None => self.members.push(MemberView {
                member,
                numbers: None,
                last_counts: None,
                video_bps: VecDeque::new(),
            }),
        }
    }

    /// Removes a member.
    pub fn remove(&mut self, id: &str) {
        self.members.retain(|v| v.member.id != id);
        self.shares.retain(|s| s != id);
    }

    /// The share to show large: `pinned` while that member still shares, else the newest.
    pub fn spotlight(&self, pinned: Option<&str>) -> Option<&MemberView> {
        let id = pinned
            .filter(|p| self.shares.iter().any(|s| s == p))
            .or_else(|| self.shares.last().map(String::as_str))?;
        self.member(id)
    }

    /// Takes in a chat message; counts it as unread if the panel is closed and it is not ours.
    pub fn add_chat(&mut self, msg: ChatMessage) {
        if !self.chat_open && msg.from != self.self_id {
            self.unread += 1;
        }
        self.chat.push(msg);
        if self.chat.len() > CHAT_KEPT {
            self.chat.drain(..self.chat.len() - CHAT_KEPT);
        }
    }

    /// Opens or closes the chat panel; opening it reads everything.
    pub fn set_chat_open(&mut self, open: bool) {
        self.chat_open = open;
        if open {
            self.unread = 0;
        }
    }

    /// Takes in a member's numbers (loss is measured between two samples).
    pub fn add_stats(&mut self, id: &str, stats: &MemberStats) {
        let Some(v) = self.members.iter_mut().find(|v| v.member.id == id) else {
            return;
        };
        let counts = (stats.packets_lost.max(0), stats.packets_received);
        let loss = match v.last_counts {
            Some((lost0, recv0)) => {
                let lost = counts.0.saturating_sub(lost0) as f64;
                let recv = counts.1.saturating_sub(recv0) as f64;
                if lost + recv > 0.0 {
                    lost / (lost + recv)
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        v.last_counts = Some(counts);
        let expected = counts.0 as f64 + counts.1 as f64;
        v.video_bps.push_back(stats.video_bitrate_in);
        if v.video_bps.len() > KBPS_SAMPLES {
            v.video_bps.pop_front();
        }
        let decoded = stats.decoded.unwrap_or_default();
        v.numbers = Some(LinkNumbers {
            rtt_ms: stats.rtt_ms,
            loss,
            loss_total: if expected > 0.0 {
                counts.0 as f64 / expected
            } else {
                0.0
            },
            bitrate_in: stats.bitrate_in,
            bitrate_out: stats.bitrate_out,
            video_bitrate_in: v.video_bps.iter().sum::<f64>() / v.video_bps.len() as f64,
            fps_in: stats.decoded.map_or(stats.fps, |d| d.fps),
            resolution: (decoded.width > 0).then_some((decoded.width, decoded.height)),
            freezes: decoded.freezes,
            freeze_time: decoded.freeze_time,
            audio_concealed: stats.audio_concealed,
            nacks_sent: stats.nacks_sent,
            retransmissions: stats.retransmissions_received,
            layer_out: stats.layer.clone(),
        });
    }

    /// Looks a member up.
    pub fn member(&self, id: &str) -> Option<&MemberView> {
        self.members.iter().find(|v| v.member.id == id)
    }

    /// People in the call, us included.
    pub fn people(&self) -> usize {
        self.members.len() + 1
    }
}

/// Up to two initials for a tile without video ("Ada Lovelace" → "AL").
pub fn initials(name: &str) -> String {
    let mut out: String = name
        .split_whitespace()
        .filter_map(|w| w.chars().next())
        .take(2)
        .flat_map(char::to_uppercase)
        .collect();
    if out.is_empty() {
        out.push('?');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, name: &str) -> Member {
        Member {
            id: id.into(),
            name: name.into(),
            audio: true,
            video: true,
            screen: false,
            link: LinkState::Connected,
        }
    }

    fn chat(from: &str, text: &str) -> ChatMessage {
        ChatMessage {
            from: from.into(),
            name: from.into(),
            text: text.into(),
            ts: 0,
        }
    }

    #[test]
    fn members_keep_arrival_order_and_update_in_place() {
        let mut m = CallModel::new("r".into(), "me".into(), vec![member("b", "B")], vec![]);
        m.upsert(member("a", "A"));
        let mut b = member("b", "Bea");
        b.audio = false;
        m.upsert(b);
        let names: Vec<_> = m.members.iter().map(|v| v.member.name.as_str()).collect();
        assert_eq!(names, ["Bea", "A"]);
        assert!(!m.member("b").unwrap().member.audio);
        m.remove("b");
        assert_eq!(m.people(), 2);
    }

    #[test]
    fn the_newest_share_is_the_spotlight_unless_one_is_pinned() {
        let sharing = |id: &str, on: bool| Member {
            screen: on,
            ..member(id, id)
        };
        let mut m = CallModel::new("r".into(), "me".into(), vec![sharing("a", true)], vec![]);
        m.upsert(member("b", "b"));
        assert_eq!(m.spotlight(None).unwrap().member.id, "a");
        m.upsert(sharing("b", true));
        // An update that keeps sharing does not reorder.
        m.upsert(sharing("a", true));
        assert_eq!(m.shares, ["a", "b"]);
        assert_eq!(m.spotlight(None).unwrap().member.id, "b");
        assert_eq!(m.spotlight(Some("a")).unwrap().member.id, "a");
        m.upsert(sharing("b", false));
        assert_eq!(m.spotlight(None).unwrap().member.id, "a");
        // A pin on someone who stopped falls back to the newest.
        assert_eq!(m.spotlight(Some("b")).unwrap().member.id, "a");
        m.remove("a");
        assert!(m.spotlight(None).is_none());
        assert!(m.shares.is_empty());
    }

    #[test]
    fn unread_counts_only_others_while_closed() {
        let mut m = CallModel::new("r".into(), "me".into(), vec![], vec![chat("x", "old")]);
        m.add_chat(chat("x", "hi"));
        m.add_chat(chat("me", "mine"));
        assert_eq!(m.unread, 1);
        m.set_chat_open(true);
        assert_eq!(m.unread, 0);
        m.add_chat(chat("x", "seen"));
        assert_eq!(m.unread, 0);
        assert_eq!(m.chat.len(), 4);
    }

    #[test]
    fn loss_is_measured_between_samples() {
        let mut m = CallModel::new("r".into(), "me".into(), vec![member("a", "A")], vec![]);
        let mut s = MemberStats {
            rtt_ms: Some(20.0),
            packets_lost: 5,
            packets_received: 1000,
            ..Default::default()
        };
        m.add_stats("a", &s);
        assert_eq!(m.member("a").unwrap().quality(), Quality::Good);
        s.packets_lost = 25;
        s.packets_received = 1080;
        m.add_stats("a", &s);
        let n = m.member("a").unwrap().numbers.clone().unwrap();
        assert!((n.loss - 0.2).abs() < 1e-9, "{}", n.loss);
        assert_eq!(m.member("a").unwrap().quality(), Quality::Poor);
        let mut down = member("a", "A");
        down.link = LinkState::Reconnecting;
        m.upsert(down);
        assert_eq!(m.member("a").unwrap().quality(), Quality::Poor);
    }

    #[test]
    fn numbers_match_the_participant_report() {
        let mut m = CallModel::new("r".into(), "me".into(), vec![member("a", "A")], vec![]);
        for kbps in [100.0, 200.0, 300.0] {
            let s = MemberStats {
                video_bitrate_in: kbps * 1000.0,
                packets_lost: 10,
                packets_received: 190,
                fps: 12.0,
                ..Default::default()
            };
            m.add_stats("a", &s);
        }
        let n = m.member("a").unwrap().numbers.clone().unwrap();
        assert!((n.video_bitrate_in - 200_000.0).abs() < 1e-6);
        assert!((n.loss_total - 0.05).abs() < 1e-9);
        // Nothing decodes here (a counting sink): the interval's rate stands in.
        assert!((n.fps_in - 12.0).abs() < 1e-9);
        assert_eq!(n.resolution, None);
    }

    #[test]
    fn quality_grades() {
        let n = |rtt, loss| LinkNumbers {
            rtt_ms: Some(rtt),
            loss,
            ..Default::default()
        };
        assert_eq!(quality_of(&n(30.0, 0.0)), Quality::Good);
        assert_eq!(quality_of(&n(200.0, 0.0)), Quality::Fair);
        assert_eq!(quality_of(&n(30.0, 0.05)), Quality::Fair);
        assert_eq!(quality_of(&n(500.0, 0.0)), Quality::Poor);
    }

    #[test]
    fn initials_from_names() {
        assert_eq!(initials("Ada Lovelace"), "AL");
        assert_eq!(initials("grace"), "G");
        assert_eq!(initials("  "), "?");
        assert_eq!(initials("Émile Zola Extra"), "ÉZ");
    }
}
