// One RTCPeerConnection to one other member: first offer, trickle ICE, perfect negotiation.

import { preferH264 } from './codecs.js';

export class PeerLink {
  /**
   * selfId/peerId: ids from the server; initiator: we just joined and offer first.
   * hooks: { signal(payload), track(track), closed() }
   */
  constructor({ selfId, peerId, initiator, iceServers, relayOnly, media, hooks }) {
    this.peerId = peerId;
    this.hooks = hooks;
    this.polite = selfId > peerId;   // the smaller id is impolite
    this.mayOffer = initiator;       // existing members wait for the newcomer's offer
    this.makingOffer = false;
    this.ignoreOffer = false;
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
    pc.onnegotiationneeded = () => this.offer();
    pc.onicecandidate = (e) => {
      this.hooks.signal({ candidate: e.candidate ? e.candidate.toJSON() : null });
    };
    pc.ontrack = (e) => this.hooks.track(e.track);
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
      this.ignoreOffer = !this.polite && collision;
      if (this.ignoreOffer) return;
      await pc.setRemoteDescription(desc); // rolls back our own offer when polite
      if (desc.type === 'offer') {
        preferH264(pc);
        await pc.setLocalDescription();
        this.hooks.signal({ sdp: pc.localDescription.toJSON() });
        this.mayOffer = true;
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
    const idle = this.pc.getTransceivers().find((t) => !t.stopped && !t.sender.track
      && t.receiver.track && t.receiver.track.kind === kind);
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

  close() {
    this.pc.close();
  }
}
