// The page in a room on Janus (docs/protocol-sfu.md): owns the JanusRoom and, for a mesh
// room on its way there, the make-before-break move: a mesh connection to X closes once
// X's media arrives through Janus (or after 5 s when nothing of X's comes), then
// `sfu-ready`. Tiles switch to Janus' tracks only once they carry media, so no one
// watches a blank tile while the mesh still shows the member.

import { JanusRoom } from './janus.js';

/** How often a move looks at what arrived through Janus. */
const CHECK_MS = 200;
/** A member whose media did not come through Janus at all by then is closed anyway. */
const NOTHING_ARRIVED_MS = 5000;
/**
 * A mesh connection stays this long after its member's media came through Janus: closing
 * cuts both directions, and the member may not receive us through Janus yet (the engine
 * found 1.5 s, sfu_move.rs).
 */
const LINGER_MS = 1500;

/** What arrived through `receiver` so far: decoded video frames, or audio packets. */
async function arrivedCount(receiver, kind) {
  if (!receiver) return 0;
  let n = 0;
  (await receiver.getStats()).forEach((x) => {
    if (x.type !== 'inbound-rtp') return;
    n += kind === 'video' ? (x.framesDecoded || 0) : (x.packetsReceived || 0);
  });
  return n;
}

export class SfuMove {
  /**
   * peers/links: the app's maps (peer id -> peer, -> PeerLink), read only.
   * hooks: { show(id, track, slot), closeLink(id), ready(feed), failed(reason, duringMove) }
   */
  constructor({ sfu, moving, selfId, iceServers, relayOnly, media, peers, links, hooks }) {
    this.moving = moving;
    this.peers = peers;
    this.links = links;
    this.hooks = hooks;
    this.feed = null;
    this.publishedAt = null;
    this.held = new Map();     // peer id -> { slot: track } not shown yet (mesh still shows it)
    this.complete = new Map(); // peer id -> when all its media had come through Janus
    this.checking = false;
    this.closed = false;
    this.room = new JanusRoom({
      sfu, selfId, iceServers, relayOnly, media,
      known: (id) => this.peers.has(id),
      hooks: {
        track: (id, track, slot) => this.onTrack(id, track, slot),
        published: (feed) => {
          this.feed = feed;
          this.publishedAt = Date.now();
        },
        failed: (reason) => this.onFailed(reason),
      },
    });
    this.timer = moving ? setInterval(() => this.check(), CHECK_MS) : null;
    this.room.start().catch((e) => this.onFailed(e.message));
  }

  onTrack(id, track, slot) {
    // Audio, or a share, never blanks anything: only a camera tile waits for frames.
    if (this.links.has(id) && slot === 'camera') {
      this.hold(id).camera = track;
      return;
    }
    this.hooks.show(id, track, slot);
  }

  hold(id) {
    let h = this.held.get(id);
    if (!h) {
      h = {};
      this.held.set(id, h);
    }
    return h;
  }

  /** Shows what was held for `id`. */
  release(id) {
    const h = this.held.get(id);
    this.held.delete(id);
    if (h && h.camera) this.hooks.show(id, h.camera, 'camera');
  }

  /** One round of the move: close what came through Janus; `sfu-ready` when none is left. */
  async check() {
    if (!this.moving || this.checking || this.publishedAt === null) return;
    this.checking = true;
    try {
      const now = Date.now();
      for (const id of [...this.links.keys()]) {
        const peer = this.peers.get(id) || {};
        const r = this.room.receivers(id);
        const video = (await arrivedCount(r.camera, 'video')) > 0;
        const audio = (await arrivedCount(r.audio, 'audio')) > 0;
        if (!this.moving) return; // closed or cancelled meanwhile
        if (video) this.release(id);
        if ((video || !peer.video) && (audio || !peer.audio)) {
          if (!this.complete.has(id)) this.complete.set(id, now);
          if (now - this.complete.get(id) >= LINGER_MS) this.closeLink(id);
        } else if (now - this.publishedAt >= NOTHING_ARRIVED_MS && !video && !audio) {
          this.closeLink(id);
        }
      }
      if (this.links.size === 0) {
        this.moving = false;
        clearInterval(this.timer);
        this.hooks.ready(this.feed);
      }
    } finally {
      this.checking = false;
    }
  }

  closeLink(id) {
    this.hooks.closeLink(id);
    this.release(id);
  }

  onFailed(reason) {
    if (this.closed) return; // we closed it ourselves: a cancelled move, or leaving
    const duringMove = this.moving;
    this.close();
    this.hooks.failed(reason, duringMove);
  }

  /** A member left the room. */
  forget(id) {
    this.held.delete(id);
    this.complete.delete(id);
  }

  setSending(kind, track) {
    this.room.setSending(kind, track);
  }

  /** Our screen share through Janus (null: stopped); resolves once Janus took it. */
  setScreen(track, stream) {
    return this.room.setScreen(track, stream);
  }

  /** Receivers by slot for member `id` through Janus (tests read stats from them). */
  receivers(id) {
    return this.room.receivers(id);
  }

  close() {
    this.closed = true;
    this.moving = false;
    clearInterval(this.timer);
    this.room.close();
  }
}
