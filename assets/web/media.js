// The local camera and mic, and the screen share. Muting swaps the track out of every
// sender (no renegotiation); a device that was missing at join can be asked for again later.

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

/**
 * Video only: the page shares no system or tab sound. Larger screens are scaled down to
 * 1080p, and content rarely needs more than 15 fps.
 */
const SCREEN_CONSTRAINTS = {
  video: { width: { max: 1920 }, height: { max: 1080 }, frameRate: { max: 15 } },
  audio: false,
};

/** A sentence telling the user why the share did not start. */
export function describeShareFailure(error) {
  switch (error && error.name) {
    case 'NotAllowedError':
      return 'Screen sharing was cancelled or blocked by the browser.';
    case 'NoDisplayMedia':
      return 'This browser cannot share its screen.';
    default:
      return `The screen could not be shared (${(error && error.name) || 'unknown error'}).`;
  }
}

export class LocalMedia {
  constructor() {
    this.stream = new MediaStream();
    this.on = { audio: false, video: false };
    this.screen = null;       // the shared screen's video track while a share is on
    this.screenStream = null;
  }

  /**
   * Asks the browser for a screen, window or tab; `ended` runs when the share stops from
   * outside (the browser's own "Stop sharing" bar). Returns '' or a message for the user.
   */
  async startShare(ended) {
    if (this.screen) return '';
    try {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) {
        throw Object.assign(new Error('no getDisplayMedia'), { name: 'NoDisplayMedia' });
      }
      const s = await navigator.mediaDevices.getDisplayMedia(SCREEN_CONSTRAINTS);
      const track = s.getVideoTracks()[0];
      // Text and lines: the encoder keeps detail and gives up frame rate first.
      track.contentHint = 'detail';
      track.addEventListener('ended', ended, { once: true });
      this.screen = track;
      this.screenStream = s;
      return '';
    } catch (e) {
      console.warn('getDisplayMedia', e.name, e.message);
      return describeShareFailure(e);
    }
  }

  /** Ends the share (a no-op when none is on). */
  stopShare() {
    if (this.screen) this.screen.stop();
    this.screen = null;
    this.screenStream = null;
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
    this.stopShare();
    for (const t of this.stream.getTracks()) t.stop();
    this.stream = new MediaStream();
    this.on = { audio: false, video: false };
  }
}
