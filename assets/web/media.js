// The local camera and mic. Muting swaps the track out of every sender (no renegotiation);
// a device that was missing at join can be asked for again later.

const CONSTRAINTS = { audio: { audio: true }, video: { video: { width: 640, height: 360 } } };
const DEVICE = { audio: 'microphone', video: 'camera' };
const BUTTON = { audio: 'Unmute', video: 'Camera on' };

/** A sentence telling the user why `kind` could not be opened and what to do about it. */
export function describeFailure(kind, error) {
  const device = DEVICE[kind];
  switch (error && error.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return `The browser blocked the ${device}. Allow it for this site, then press ${BUTTON[kind]}.`;
    case 'NotFoundError':
    case 'OverconstrainedError':
      return `No ${device} was found.`;
    case 'NotReadableError':
    case 'AbortError':
      return `The ${device} is in use by another program or could not start.`;
    case 'NoMediaDevices':
      return `This page cannot use the ${device}: it needs https (or localhost).`;
    default:
      return `The ${device} is unavailable (${(error && error.name) || 'unknown error'}).`;
  }
}

export class LocalMedia {
  constructor() {
    this.stream = new MediaStream();
    this.on = { audio: false, video: false };
  }

  /** Asks for mic and camera; returns a message for the user when something failed. */
  async open() {
    const problems = [];
    for (const kind of ['audio', 'video']) {
      const problem = await this.acquire(kind);
      if (problem) problems.push(problem);
    }
    return problems.join(' ');
  }

  /** Opens one device and turns it on; returns a message when it failed, else ''. */
  async acquire(kind) {
    if (this.track(kind)) return '';
    try {
      // Without mediaDevices (an insecure page) there is nothing to ask.
      if (!navigator.mediaDevices) throw Object.assign(new Error('no mediaDevices'), { name: 'NoMediaDevices' });
      const s = await navigator.mediaDevices.getUserMedia(CONSTRAINTS[kind]);
      for (const t of s.getTracks()) this.stream.addTrack(t);
      this.on[kind] = true;
      return '';
    } catch (e) {
      console.warn('getUserMedia', kind, e.name, e.message);
      return describeFailure(kind, e);
    }
  }

  track(kind) {
    return kind === 'audio' ? this.stream.getAudioTracks()[0] : this.stream.getVideoTracks()[0];
  }

  sending(kind) {
    return this.on[kind] && !!this.track(kind);
  }

  /** Flips one kind that has a track; returns the track to send now (null while off). */
  toggle(kind) {
    const track = this.track(kind);
    if (!track) return null;
    this.on[kind] = !this.on[kind];
    track.enabled = this.on[kind];
    return this.on[kind] ? track : null;
  }

  stop() {
    for (const t of this.stream.getTracks()) t.stop();
    this.stream = new MediaStream();
    this.on = { audio: false, video: false };
  }
}
