// A room on Janus VideoRoom from the page (docs/protocol-sfu.md): one WebSocket with the
// `janus-protocol` subprotocol, a session kept alive, a publisher handle (our camera and
// mic, H.264 42e01f + Opus) and one multistream subscriber handle receiving every other
// member, whose feeds Janus names by `display` = peer id. Janus carries only media: names,
// mute, chat and leave stay on our own signaling.

/** Janus closes a session after 60 s without a request; ask well before. */
const KEEPALIVE_MS = 25_000;
/** How long one request may wait for Janus' answer. */
const REQUEST_MS = 10_000;
/** How often feeds Janus refused (media not up yet: 428) are asked for again. */
const RETRY_MS = 500;
const PLUGIN = 'janus.plugin.videoroom';

/** Janus refused a request, or did not answer it. */
export class JanusError extends Error {
  constructor(request, message, code = null) {
    super(`${request}: ${message}`);
    this.name = 'JanusError';
    this.code = code;
  }
}

/** The WebSocket and its transactions; events without a transaction go to their handle. */
class Transport {
  constructor(url, { event, closed }) {
    this.url = url;
    this.onEvent = event;
    this.onClosed = closed;
    this.pending = new Map(); // transaction -> { resolve, reject, request, ackAnswers, timer }
    this.next = 1;
    this.ws = null;
  }

  open() {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this.url, 'janus-protocol');
      } catch (e) {
        reject(new JanusError('connect', e.message));
        return;
      }
      this.ws = ws;
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new JanusError('connect', `cannot reach ${this.url}`));
      ws.onmessage = (ev) => this.receive(ev.data);
      ws.onclose = () => {
        for (const p of this.pending.values()) {
          clearTimeout(p.timer);
          p.reject(new JanusError(p.request, 'the connection to the media server closed'));
        }
        this.pending.clear();
        if (this.ws === ws) this.onClosed();
      };
    });
  }

  /**
   * Sends `msg` and resolves with Janus' answer: `success`, a plugin `event` carrying the
   * transaction, or (`ackAnswers`: keepalive, trickle) the `ack`.
   */
  request(msg, ackAnswers = false) {
    const transaction = String(this.next++);
    const request = (msg.body && msg.body.request) || msg.janus;
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject(new JanusError(request, 'not connected to the media server'));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(transaction);
        reject(new JanusError(request, 'no answer from the media server'));
      }, REQUEST_MS);
      this.pending.set(transaction, { resolve, reject, request, ackAnswers, timer });
      this.ws.send(JSON.stringify({ ...msg, transaction }));
    });
  }

  receive(text) {
    let msg;
    try { msg = JSON.parse(text); } catch { return; }
    const p = msg.transaction && this.pending.get(msg.transaction);
    if (!p) {
      this.onEvent(msg);
      return;
    }
    if (msg.janus === 'ack' && !p.ackAnswers) return; // the answer follows as an event
    this.pending.delete(msg.transaction);
    clearTimeout(p.timer);
    if (msg.janus === 'error') {
      p.reject(new JanusError(p.request, msg.error.reason, msg.error.code));
      return;
    }
    const data = msg.plugindata && msg.plugindata.data;
    if (data && data.error_code) {
      p.reject(new JanusError(p.request, data.error, data.error_code));
      return;
    }
    p.resolve({ data: data || msg.data, jsep: msg.jsep });
  }

  close() {
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
  }
}

/** The video mids of a publisher's streams, in m-line order (camera first, screen second). */
function videoMidsOf(publisher) {
  return (publisher.streams || []).filter((s) => s.type === 'video' && !s.disabled)
    .sort((a, b) => a.mindex - b.mindex).map((s) => s.mid);
}

/**
 * One member's media through Janus. hooks:
 *   track(peerId, track, slot)  a received track ('audio', 'camera' or 'screen')
 *   published(feed)             Janus says our publisher connection is up
 *   failed(reason)              Janus cannot be reached or used; the room is closed
 * `known(id)` says whether `id` is a member our signaling told us about.
 */
export class JanusRoom {
  constructor({ sfu, selfId, iceServers, relayOnly, media, known, hooks }) {
    this.sfu = sfu;
    this.selfId = selfId;
    this.config = { iceServers, iceTransportPolicy: relayOnly ? 'relay' : 'all' };
    this.media = media;
    this.known = known;
    this.hooks = hooks;
    this.transport = new Transport(sfu.url, {
      event: (msg) => this.onJanus(msg),
      closed: () => this.fail('the connection to the media server closed'),
    });
    this.session = null;
    this.keepalive = null;
    this.retry = null;
    this.closed = false;
    this.feed = null;          // our feed id
    this.privateId = null;
    this.pub = null;           // { handle, pc, senders: { audio, video, screen } }
    this.pubOps = Promise.resolve(); // publisher renegotiations, one at a time
    this.screen = null;        // { track, stream } to send as our feed's second video
    this.sub = null;           // { handle, pc } once subscribed to someone
    this.subOps = Promise.resolve(); // subscriber requests and answers, one at a time
    this.publishers = new Map(); // feed id -> the publisher as Janus lists it
    this.subscribed = new Map(); // feed id -> Set of its mids in our subscription
    this.streams = [];           // the subscription's streams (mid -> feed) from Janus
    this.shown = new Map();      // our mid -> "peer/slot/track id" last handed to hooks.track
    this.busy = false;           // a round of subscribeWanted is queued or running
  }

  /** Joins the room, publishes and subscribes to whoever publishes; throws on failure. */
  async start() {
    await this.transport.open();
    const created = await this.transport.request({ janus: 'create' });
    this.session = created.data.id;
    this.keepalive = setInterval(() => {
      this.transport.request({ janus: 'keepalive', session_id: this.session }, true)
        .catch((e) => console.warn('janus keepalive', e.message));
    }, KEEPALIVE_MS);
    const handle = await this.attach();
    const joined = await this.message(handle, {
      request: 'join', ptype: 'publisher', room: this.sfu.room, pin: this.sfu.pin, display: this.selfId,
    });
    this.feed = joined.data.id;
    this.privateId = joined.data.private_id;
    this.pubOps = this.publish(handle);
    await this.pubOps;
    // A share that was on before we published (a mesh room moving) goes on Janus too.
    if (this.screen && this.screen.track) await this.setScreen(this.screen.track, this.screen.stream);
    this.notePublishers(joined.data.publishers || []);
    this.retry = setInterval(() => this.subscribeWanted(), RETRY_MS);
    this.subscribeWanted();
  }

  async attach() {
    const r = await this.transport.request({ janus: 'attach', session_id: this.session, plugin: PLUGIN });
    return r.data.id;
  }

  message(handle, body, jsep) {
    const msg = { janus: 'message', session_id: this.session, handle_id: handle, body };
    if (jsep) msg.jsep = jsep;
    return this.transport.request(msg);
  }

  trickle(handle, candidate) {
    if (this.closed) return;
    const msg = { janus: 'trickle', session_id: this.session, handle_id: handle,
      candidate: candidate ? candidate.toJSON() : { completed: true } };
    this.transport.request(msg, true).catch((e) => console.warn('janus trickle', e.message));
  }

  /**
   * Our publisher connection: audio then video (as the mesh offers), both send-only and
   * there from the start, so mute, camera off and a device turned on later only swap the
   * track. Video offers only H.264 42e01f: the room forwards nothing else.
   */
  async publish(handle) {
    const pc = new RTCPeerConnection(this.config);
    const senders = {};
    for (const kind of ['audio', 'video']) {
      const track = this.media.sending(kind) ? this.media.track(kind) : null;
      const t = pc.addTransceiver(track || kind, { direction: 'sendonly', streams: [this.media.stream] });
      senders[kind] = t.sender;
      if (kind === 'video') onlyBaseline(t);
    }
    pc.onicecandidate = (e) => this.trickle(handle, e.candidate);
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed') this.fail('the connection to the media server failed');
    };
    this.pub = { handle, pc, senders };
    await pc.setLocalDescription();
    const r = await this.message(handle, { request: 'publish' }, pc.localDescription.toJSON());
    if (!r.jsep) throw new JanusError('publish', 'no answer SDP');
    await pc.setRemoteDescription(r.jsep);
  }

  /**
   * Sends `track` as our screen share, or nothing with null: the feed's second video
   * stream (after the camera, as protocol.md orders a mesh's m-sections). The first share
   * adds it by renegotiating with Janus (`configure`); it stays, and later shares reuse it.
   */
  setScreen(track, stream) {
    this.screen = { track, stream };
    this.pubOps = this.pubOps.then(() => this.applyScreen())
      .catch((e) => console.warn('janus screen share', e));
    return this.pubOps;
  }

  async applyScreen() {
    if (this.closed || !this.pub) return;
    const { track, stream } = this.screen;
    const { pc, handle, senders } = this.pub;
    if (senders.screen) {
      await senders.screen.replaceTrack(track);
      return;
    }
    if (!track) return; // never shared: nothing to stop
    const t = pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
    onlyBaseline(t);
    senders.screen = t.sender;
    await pc.setLocalDescription();
    const r = await this.message(handle, { request: 'configure' }, pc.localDescription.toJSON());
    if (!r.jsep) throw new JanusError('configure', 'no answer SDP');
    await pc.setRemoteDescription(r.jsep);
  }

  /** Starts or stops sending one kind (mute, camera off, a device turned on later). */
  setSending(kind, track) {
    const sender = this.pub && this.pub.senders[kind];
    if (sender) sender.replaceTrack(track).catch((e) => console.warn('janus replaceTrack', e));
  }

  /** Remembers publishers and which of their streams we still need. */
  notePublishers(list) {
    for (const p of list) this.publishers.set(p.id, p);
  }

  /** Feeds of members (display = a peer id we know) with streams we have not subscribed. */
  wanted() {
    const out = [];
    for (const [feed, p] of this.publishers) {
      if (p.display === this.selfId || !this.known(p.display)) continue;
      const have = this.subscribed.get(feed);
      if (!have) out.push({ feed, streams: [{ feed }] });
      else {
        // A stream added later (the screen share): asked for by its mid.
        const more = (p.streams || []).filter((s) => !s.disabled && !have.has(s.mid));
        if (more.length) out.push({ feed, streams: more.map((s) => ({ feed, mid: s.mid })) });
      }
    }
    return out;
  }

  /** Asks for each wanted feed on its own: Janus refuses a whole request for one not up yet. */
  subscribeWanted() {
    if (this.busy || this.closed) return;
    this.busy = true;
    this.subOps = this.subOps.then(async () => {
      for (const want of this.wanted()) {
        if (this.closed) return;
        try {
          await this.subscribe(want.streams);
          const mids = this.subscribed.get(want.feed) || new Set();
          const p = this.publishers.get(want.feed);
          for (const s of (p && p.streams) || []) {
            if (want.streams.some((w) => !w.mid || w.mid === s.mid)) mids.add(s.mid);
          }
          this.subscribed.set(want.feed, mids);
        } catch (e) {
          // 428: the publisher's media is not set up yet; tried again shortly.
          if (e.code !== 428) console.warn('janus subscribe', want.feed, e.message);
        }
      }
    }).catch((e) => console.warn('janus subscribe', e)).finally(() => { this.busy = false; });
  }

  async subscribe(streams) {
    if (this.sub) {
      const r = await this.message(this.sub.handle, { request: 'subscribe', streams });
      await this.answer(r);
      return;
    }
    const handle = await this.attach();
    let r;
    try {
      r = await this.message(handle, {
        request: 'join', ptype: 'subscriber', room: this.sfu.room, pin: this.sfu.pin,
        private_id: this.privateId, streams,
      });
    } catch (e) {
      // A refused join leaves a handle that cannot be joined again: let it go.
      this.transport.request({ janus: 'detach', session_id: this.session, handle_id: handle }).catch(() => {});
      throw e;
    }
    const pc = new RTCPeerConnection(this.config);
    pc.onicecandidate = (e) => this.trickle(handle, e.candidate);
    pc.ontrack = () => this.showTracks();
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed') this.fail('the connection to the media server failed');
    };
    this.sub = { handle, pc };
    await this.answer(r);
  }

  /** Answers Janus' offer for the subscription (first, added feeds, or a re-offer). */
  async answer({ data, jsep }) {
    if (data && data.streams) this.streams = data.streams;
    if (!jsep) return;
    const { pc, handle } = this.sub;
    await pc.setRemoteDescription(jsep);
    await pc.setLocalDescription();
    await this.message(handle, { request: 'start' }, pc.localDescription.toJSON());
    this.showTracks();
  }

  /**
   * Hands every subscribed track to its member's tile. Janus reuses m-lines of feeds that
   * left for new ones, so the mapping is read again after each offer from its stream list.
   */
  showTracks() {
    if (!this.sub) return;
    for (const t of this.sub.pc.getTransceivers()) {
      const where = this.owner(t.mid);
      if (!where) continue;
      const key = `${where.peer}/${where.slot}/${t.receiver.track.id}`;
      if (this.shown.get(t.mid) === key) continue;
      this.shown.set(t.mid, key);
      this.hooks.track(where.peer, t.receiver.track, where.slot);
    }
  }

  /** Whose, and which slot, our m-section `mid` carries; null when none (inactive). */
  owner(mid) {
    const s = this.streams.find((x) => x.mid === mid);
    if (!s || s.active === false || !s.feed_display || !this.known(s.feed_display)) return null;
    if (s.type === 'audio') return { peer: s.feed_display, slot: 'audio' };
    if (s.type !== 'video') return null;
    // The feed's first video stream is its camera, the second its screen (protocol.md's
    // order, as in a mesh); by the publisher's m-line order, else by the order Janus lists.
    const p = this.publishers.get(s.feed_id);
    let order = p ? videoMidsOf(p) : [];
    if (!order.includes(s.feed_mid)) {
      order = this.streams.filter((x) => x.feed_id === s.feed_id && x.type === 'video').map((x) => x.feed_mid);
    }
    const slot = ['camera', 'screen'][order.indexOf(s.feed_mid)];
    return slot ? { peer: s.feed_display, slot } : null;
  }

  /** Receivers by slot for member `peerId` (for stats and the move). */
  receivers(peerId) {
    const out = {};
    if (!this.sub) return out;
    for (const t of this.sub.pc.getTransceivers()) {
      const where = this.owner(t.mid);
      if (where && where.peer === peerId) out[where.slot] = t.receiver;
    }
    return out;
  }

  /** Events Janus sends unasked: publishers coming and going, re-offers, hang-ups. */
  onJanus(msg) {
    if (this.closed) return;
    if (msg.janus === 'timeout') {
      this.fail('the media server ended the session');
      return;
    }
    const pub = this.pub && msg.sender === this.pub.handle;
    const sub = this.sub && msg.sender === this.sub.handle;
    if (msg.janus === 'webrtcup' && pub) this.hooks.published(this.feed);
    if (msg.janus === 'hangup' && (pub || sub)) this.fail(`the media server hung up (${msg.reason})`);
    if (msg.janus !== 'event') return;
    const data = (msg.plugindata && msg.plugindata.data) || {};
    if (data.publishers) {
      this.notePublishers(data.publishers);
      this.subscribeWanted();
    }
    for (const gone of [data.unpublished, data.leaving]) {
      if (typeof gone === 'number') {
        this.publishers.delete(gone);
        this.subscribed.delete(gone);
      }
    }
    if (sub && msg.jsep) {
      // Janus re-offers the subscription (a feed left, or a stream came or went).
      this.subOps = this.subOps.then(() => this.answer({ data, jsep: msg.jsep }))
        .catch((e) => console.warn('janus re-offer', e));
    }
  }

  fail(reason) {
    if (this.closed) return;
    this.close();
    this.hooks.failed(reason);
  }

  /** Leaves Janus: stops both connections and destroys the session. */
  close() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.keepalive);
    clearInterval(this.retry);
    for (const c of [this.pub, this.sub]) if (c) c.pc.close();
    if (this.session !== null) {
      // Best effort: closing the socket ends the session on Janus too.
      this.transport.request({ janus: 'destroy', session_id: this.session }).catch(() => {})
        .finally(() => this.transport.close());
    } else {
      this.transport.close();
    }
  }
}

/** Offers only H.264 constrained baseline 3.1, packetization mode 1. */
function onlyBaseline(transceiver) {
  if (!('setCodecPreferences' in RTCRtpTransceiver.prototype)) return;
  const caps = RTCRtpSender.getCapabilities('video');
  if (!caps) return;
  const h264 = caps.codecs.filter((c) => c.mimeType.toLowerCase() === 'video/h264'
    && /profile-level-id=42e01f/i.test(c.sdpFmtpLine || '')
    && /packetization-mode=1/i.test(c.sdpFmtpLine || ''));
  if (h264.length === 0) return;
  try {
    transceiver.setCodecPreferences(h264);
  } catch (e) {
    console.warn('codec preferences', e);
  }
}
