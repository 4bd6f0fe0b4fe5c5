// One RTCPeerConnection to one other member: first offer, trickle ICE, perfect negotiation,
// and the screen share's m-section (the second video one, protocol.md).

import { preferH264 } from './codecs.js';
import { idBefore, slotOf, videoTransceivers } from './slots.js';

/** The most a screen share sends (issue 13: up to 2.5 Mbit/s, 5–15 fps). */
const SCREEN_MAX_BITRATE = 2_500_000;
const SCREEN_MAX_FPS = 15;

/**
 * Bitrate cap and "keep the resolution, drop frames" for a screen sender. Best effort: a
 * browser that refuses one field still gets the others.
 */
async function tuneScreen(sender) {
  for (const withPreference of [true, false]) {
    try {
      const p = sender.getParameters();
      if (!p.encodings || p.encodings.length === 0) p.encodings = [{}];
      p.encodings[0].maxBitrate = SCREEN_MAX_BITRATE;
      p.encodings[0].maxFramerate = SCREEN_MAX_FPS;
      if (withPreference) p.degradationPreference = 'maintain-resolution';
      await sender.setParameters(p);
      return;
    } catch (e) {
      console.warn('screen sender parameters', e.name, e.message);
    }
  }
}

export class PeerLink {
  /**
   * selfId/peerId: ids from the server; initiator: we just joined and offer first.
   * hooks: { signal(payload), track(track, slot) } where slot is 'audio', 'camera' or 'screen'.
   */
  constructor({ selfId, peerId, initiator, iceServers, relayOnly, media, hooks }) {
    this.peerId = peerId;
    this.hooks = hooks;
    this.polite = idBefore(peerId, selfId); // the smaller id is impolite
    this.mayOffer = initiator;       // existing members wait for the newcomer's offer
    // The screen slot may be touched only once the first offer/answer has placed the
    // camera's m-section; before that a new video transceiver could take the camera's place.
    this.ready = initiator;
    this.screen = { track: null, stream: null };
    this.screenOps = Promise.resolve(); // share changes are applied one at a time
    this.makingOffer = false;
    this.ignoreOffer = false;
    // Offer collisions seen and shares moved onto the winning screen m-section (for tests).
    this.glare = { collisions: 0, adopted: 0 };
    this.queue = Promise.resolve(); // signals are applied one at a time, in order
    this.pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: relayOnly ? 'relay' : 'all' });
    this.senders = {};
    this.wire(media, initiator);
  }

  wire(media, initiator) {
    const pc = this.pc;
    for (const kind of ['audio', 'video']) {
      const track = media.track(kind);
      if (track) {
        this.senders[kind] = pc.addTrack(track, media.stream);
        if (!media.sending(kind)) this.senders[kind].replaceTrack(null);
      } else if (initiator) {
        pc.addTransceiver(kind, { direction: 'recvonly' });
      }
    }
    if (initiator) preferH264(pc);
    // A share already on when this connection is made (a member joined during it).
    if (media.screen) this.setScreen(media.screen, media.screenStream);
    pc.onnegotiationneeded = () => this.offer();
    pc.onicecandidate = (e) => {
      this.hooks.signal({ candidate: e.candidate ? e.candidate.toJSON() : null });
    };
    // Told apart by m-section order only: track ids and arrival order mean nothing.
    pc.ontrack = (e) => {
      const slot = slotOf(pc, e.transceiver);
      if (slot) this.hooks.track(e.track, slot);
      else console.warn('a third video m-section from', this.peerId, 'ignored');
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed') pc.restartIce();
    };
  }

  async offer() {
    if (!this.mayOffer) return;
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      this.hooks.signal({ sdp: this.pc.localDescription.toJSON() });
    } catch (e) {
      console.warn('offer to', this.peerId, e);
    } finally {
      this.makingOffer = false;
    }
  }

  /** Applies a payload from the other member. */
  receive(payload) {
    this.queue = this.queue.then(() => this.apply(payload)).catch((e) => {
      console.warn('signal from', this.peerId, e);
    });
  }

  async apply(payload) {
    const pc = this.pc;
    if (payload.sdp) {
      const desc = payload.sdp;
      const collision = desc.type === 'offer' && (this.makingOffer || pc.signalingState !== 'stable');
      if (collision) this.glare.collisions += 1;
      this.ignoreOffer = !this.polite && collision;
      if (this.ignoreOffer) return;
      await pc.setRemoteDescription(desc); // rolls back our own offer when polite
      if (desc.type === 'offer') {
        await this.adoptScreenSlot();
        preferH264(pc);
        await pc.setLocalDescription();
        this.hooks.signal({ sdp: pc.localDescription.toJSON() });
        this.mayOffer = true;
        if (!this.ready) {
          this.ready = true;
          if (this.screen.track) this.setScreen(this.screen.track, this.screen.stream);
        }
      }
    } else if ('candidate' in payload) {
      // End of candidates needs no call: ICE completes without it.
      if (!payload.candidate) return;
      try {
        await pc.addIceCandidate(payload.candidate);
      } catch (e) {
        if (!this.ignoreOffer) throw e;
      }
    }
  }

  /** Starts or stops sending one kind; mute and unmute do not renegotiate. */
  setSending(kind, track, stream) {
    const sender = this.senders[kind];
    if (sender) {
      sender.replaceTrack(track).catch((e) => console.warn('replaceTrack', e));
    } else if (track) {
      this.startSending(kind, track, stream).catch((e) => console.warn('start sending', kind, e));
    }
  }

  /**
   * A device that was missing when this connection was made: send on the m-line that
   * so far only received this kind, or add one. Either way the direction or the m-lines
   * change, so negotiationneeded fires and perfect negotiation carries the new offer.
   */
  async startSending(kind, track, stream) {
    // Video only on the camera's m-section (the first video one), never the screen's.
    const candidates = kind === 'video' ? videoTransceivers(this.pc).slice(0, 1)
      : this.pc.getTransceivers().filter((t) => !t.stopped && t.receiver.track.kind === kind);
    const idle = candidates.find((t) => !t.sender.track);
    if (idle) {
      this.senders[kind] = idle.sender;
      idle.sender.setStreams(stream);
      // The track first, so the offer the direction change causes already names it.
      await idle.sender.replaceTrack(track);
      idle.direction = 'sendrecv';
    } else {
      this.senders[kind] = this.pc.addTrack(track, stream);
      preferH264(this.pc);
    }
  }

  /**
   * Sends `track` as the screen share, or nothing with null. The first share adds the
   * screen's m-section (renegotiating); it stays afterwards and later shares reuse it.
   */
  setScreen(track, stream) {
    this.screen = { track, stream };
    if (!this.ready) return; // applied after the first answer
    this.screenOps = this.screenOps.then(() => this.applyScreen())
      .catch((e) => console.warn('screen share to', this.peerId, e));
  }

  async applyScreen() {
    const { track, stream } = this.screen;
    const video = videoTransceivers(this.pc);
    let slot = video[1];
    if (!slot) {
      if (!track) return; // never shared on this connection: nothing to stop
      // No camera m-section yet (neither side had one): hold its place so the share is second.
      if (video.length === 0) this.pc.addTransceiver('video', { direction: 'recvonly' });
      slot = this.pc.addTransceiver(track, {
        direction: 'sendrecv',
        streams: [stream],
        sendEncodings: [{ maxBitrate: SCREEN_MAX_BITRATE, maxFramerate: SCREEN_MAX_FPS }],
      });
      preferH264(this.pc);
    } else {
      if (track) slot.sender.setStreams(stream);
      await slot.sender.replaceTrack(track);
      // A slot the other side made, on which we only received so far: send on it too.
      if (track && slot.direction !== 'sendrecv') slot.direction = 'sendrecv';
    }
    if (track) await tuneScreen(slot.sender);
  }

  /**
   * Both sides started sharing at about the same time: our new screen transceiver has no
   * m-section yet (our offer lost the collision and was rolled back, or was not made yet),
   * while the other side's offer brings the screen m-section. Carry our share on that one,
   * so the screen stays the second video m-section both ways instead of adding a third.
   */
  async adoptScreenSlot() {
    const video = videoTransceivers(this.pc);
    const slot = video[1];
    const mine = this.screen.track;
    const orphan = mine && video.find((t) => t.mid === null && t !== slot && t.sender.track === mine);
    if (!slot || !orphan || slot.mid === null) return;
    orphan.stop();
    this.glare.adopted += 1;
    if (this.screen.stream) slot.sender.setStreams(this.screen.stream);
    await slot.sender.replaceTrack(mine);
    slot.direction = 'sendrecv';
    await tuneScreen(slot.sender);
  }

  close() {
    this.pc.close();
  }
}
