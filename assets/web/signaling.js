// The WebSocket to the meshcall server (protocol.md): join, resume after a drop, back-off.

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000];

export class Signaling {
  /** handlers: { message(msg), dropped(), unreachable() } */
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.join = null;      // the join message to (re)send, without resume
    this.resume = null;    // {id, token} once joined; the latest token wins
    this.attempt = 0;
    this.everOpened = false;
    this.left = false;
    this.ws = null;
  }

  start(join) {
    this.join = join;
    this.left = false;
    this.connect();
  }

  connect() {
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      // A URL the browser refuses outright: no close event will come to retry from.
      console.warn('WebSocket', e);
      this.retry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.everOpened = true;
      this.sendJoin();
    };
    ws.onmessage = (ev) => this.receive(ev.data);
    ws.onclose = () => {
      if (ws !== this.ws || this.left) return;
      if (!this.everOpened) {
        this.handlers.unreachable();
        return;
      }
      this.handlers.dropped();
      this.retry();
    };
  }

  /** Connects again after the next back-off delay. */
  retry() {
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    setTimeout(() => { if (!this.left) this.connect(); }, delay);
  }

  sendJoin(extra = {}) {
    Object.assign(this.join, extra);
    const msg = { type: 'join', ...this.join };
    if (this.resume) msg.resume = this.resume;
    this.send(msg);
  }

  receive(text) {
    let msg;
    try { msg = JSON.parse(text); } catch { return; }
    if (msg.type === 'joined') {
      this.attempt = 0;
      this.resume = { id: msg.self, token: msg.token };
      // A resumed join must name the room; a fresh one may have created it.
      this.join.room = msg.room;
    } else if (msg.type === 'error' && msg.code === 'bad-resume') {
      // The grace period ran out: join afresh on the same socket.
      this.resume = null;
      this.sendJoin();
    } else if (msg.type === 'error' && msg.code === 'room-moving') {
      // The room is moving onto the media server for a few seconds: ask again.
      setTimeout(() => { if (!this.left) this.sendJoin(); }, 1000);
    }
    this.handlers.message(msg);
  }

  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  leave() {
    this.send({ type: 'leave' });
    this.left = true;
    this.resume = null;
    if (this.ws) this.ws.close();
  }
}
