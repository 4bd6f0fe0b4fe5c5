// The Chromium half of scripts/join-time --chromium (issue 12 item 3): how long a newcomer
// on our browser page waits for the first picture, measured like meshcall's `join_ms`.
//
// Run by scripts/join-time inside its private network namespace (only `lo`), with
// `meshcall serve` up. Starts one headless Chromium (fake devices, camera at 30 fps) and
// then answers one line per try on stdin:
//   try N   -> tab A opens `/`, joins with no room code (so it creates a room, as meshcall's
//              member A does), and once A is in the call, tab B opens `/r/<code>`, waits
//              for the page to load and presses Join. Prints one JSON line:
//              {"try":N,"join_ms":..,"click_ms":..,"sent_ms":..} (numbers or null) or
//              {"try":N,"error":"..."}. Both tabs (browser contexts) are closed after.
//   quit    -> closes Chromium and exits.
// Prints `ready` once Chromium is up. Logs go to stderr.
//
// env: SERVER_URL (http://127.0.0.1:PORT), CHROMIUM (default /usr/bin/chromium)
//
// The clock, in tab B, on one performance.now() timeline (the page is not changed; an init
// script wraps the page's WebSocket and RTCPeerConnection constructors and the <video>
// srcObject setter):
//   start  the page creates its signaling WebSocket (`new WebSocket`, right after the
//          camera and microphone are open), the counterpart of meshcall's `join_ms` start
//          (the join command to its engine, which then connects and sends `join`);
//   frame  the first remote video frame shown in the remote tile's <video>:
//          requestVideoFrameCallback's metadata.presentationTime (the frame handed to the
//          compositor, after decoding).
//   join_ms = frame - start. Also: click_ms = frame - the Join button's submit event (adds
//   getUserMedia of the fake devices), sent_ms = frame - the `join` message sent (leaves out
//   the WebSocket handshake). Page loads are never counted. `phases` gives the times from
//   start at which B sent `join`, received `joined`, sent its offer, A received it and
//   sent its answer (A's marks moved to B's clock through performance.timeOrigin), B
//   received the answer, got the remote video track, saw its connection `connected`
//   (ICE + DTLS) and showed the first frame.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const BASE = process.env.SERVER_URL || 'http://127.0.0.1:8787';
const tmp = mkdtempSync(join(tmpdir(), 'meshcall-join-time-'));
const log = (...a) => console.error('[join-time chromium]', ...a);

/** Injected into every page before its scripts: the marks above, in window.__joinTime. */
function marks() {
  const t = { click: null, start: null, sent: null, frame: null, frameCallback: null, joined: null, connected: null, track: null,
    offerOut: null, offerIn: null, answerOut: null, answerIn: null };
  window.__joinTime = t;
  document.addEventListener('submit', () => { if (t.click === null) t.click = performance.now(); }, true);

  const WS = window.WebSocket;
  window.WebSocket = class extends WS {
    constructor(...args) {
      if (t.start === null) t.start = performance.now();
      super(...args);
      this.addEventListener('message', (e) => {
        const text = String(e.data);
        if (t.joined === null && text.includes('"type":"joined"')) t.joined = performance.now();
        if (t.offerIn === null && text.includes('"type":"offer"')) t.offerIn = performance.now();
        if (t.answerIn === null && text.includes('"type":"answer"')) t.answerIn = performance.now();
      });
    }

    send(data) {
      if (typeof data === 'string') {
        if (t.sent === null && data.includes('"type":"join"')) t.sent = performance.now();
        if (t.offerOut === null && data.includes('"type":"offer"')) t.offerOut = performance.now();
        if (t.answerOut === null && data.includes('"type":"answer"')) t.answerOut = performance.now();
      }
      return super.send(data);
    }
  };

  // Remote tracks, known before the page's own ontrack handler attaches them.
  const remote = new WeakSet();
  const PC = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends PC {
    constructor(...args) {
      super(...args);
      this.addEventListener('track', (e) => {
        remote.add(e.track);
        if (t.track === null && e.track.kind === 'video') t.track = performance.now();
      });
      this.addEventListener('connectionstatechange', () => {
        if (t.connected === null && this.connectionState === 'connected') t.connected = performance.now();
      });
    }
  };

  const src = Object.getOwnPropertyDescriptor(HTMLMediaElement.prototype, 'srcObject');
  Object.defineProperty(HTMLMediaElement.prototype, 'srcObject', {
    ...src,
    set(stream) {
      src.set.call(this, stream);
      if (!(this instanceof HTMLVideoElement) || !stream || !stream.getVideoTracks().some((tr) => remote.has(tr))) return;
      this.requestVideoFrameCallback((now, meta) => {
        if (t.frame !== null) return;
        t.frame = meta.presentationTime || now;
        t.frameCallback = now;
      });
    },
  });
}

async function launch() {
  const env = { ...process.env, XDG_CONFIG_HOME: join(tmp, 'config'), PULSE_RUNTIME_PATH: join(tmp, 'pulse'), HOME: tmp };
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    env,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // 30 fps like meshcall's test pattern (the fake camera's default is 20).
      '--use-fake-device-for-media-stream=fps=30', '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns',
      '--autoplay-policy=no-user-gesture-required'],
  });
}

async function tab(browser, name, path) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  await context.grantPermissions(['camera', 'microphone']);
  await context.addInitScript(marks);
  const page = await context.newPage();
  page.on('pageerror', (e) => log(`${name} page error:`, e.message));
  await page.goto(`${BASE}${path}`, { waitUntil: 'load' });
  await page.fill('#name', name);
  return { context, page };
}

async function oneTry(browser, n) {
  const open = [];
  const t0 = Date.now();
  const phase = (what) => log(`try ${n}: ${what} at ${Date.now() - t0} ms`);
  try {
    const a = await tab(browser, 'A', '/');
    open.push(a.context);
    phase('A loaded');
    await a.page.click('#join');
    await a.page.waitForSelector('#call:not([hidden])', { timeout: 10000 });
    const room = await a.page.evaluate(() => window.meshcall.state.signaling.join.room);
    if (!room) throw new Error('tab A got no room code');
    const b = await tab(browser, 'B', `/r/${room}`);
    open.push(b.context);
    phase('B loaded');
    await b.page.click('#join');
    await b.page.waitForFunction(() => window.__joinTime.frame !== null, null, { timeout: 10000, polling: 50 });
    const t = await b.page.evaluate(() => window.__joinTime);
    const ms = (from) => (from === null ? null : Math.round(t.frame - from));
    // What was measured: the codec B decoded and the frame rate of A's camera.
    const codec = await b.page.evaluate(async () => {
      const [link] = window.meshcall.state.links.values();
      const stats = await link.pc.getStats();
      let mime = null;
      stats.forEach((x) => {
        if (x.type === 'inbound-rtp' && x.kind === 'video' && x.codecId) mime = stats.get(x.codecId).mimeType;
      });
      return mime;
    });
    const fps = await a.page.evaluate(() => window.meshcall.state.media.track('video').getSettings().frameRate);
    // Where B's time went, from its start: `joined` received, remote video track,
    // connection (ICE + DTLS) up, first frame.
    const ta = await a.page.evaluate(() => ({ ...window.__joinTime, origin: performance.timeOrigin }));
    const originB = await b.page.evaluate(() => performance.timeOrigin);
    const at = (mark) => (t[mark] === null || t.start === null ? null : Math.round(t[mark] - t.start));
    // Tab A's marks on B's clock (both tabs' timeOrigin are on the machine's wall clock).
    const atA = (mark) => (ta[mark] === null || t.start === null ? null
      : Math.round(ta.origin + ta[mark] - originB - t.start));
    const phases = { sent: at('sent'), joined: at('joined'), offer_sent: at('offerOut'),
      a_offer_in: atA('offerIn'), a_answer_sent: atA('answerOut'), answer_in: at('answerIn'),
      track: at('track'), connected: at('connected'), frame: at('frame') };
    return { try: n, join_ms: ms(t.start), click_ms: ms(t.click), sent_ms: ms(t.sent), codec, fps, phases };
  } catch (e) {
    return { try: n, error: String(e.message || e).split('\n')[0] };
  } finally {
    for (const c of open) await c.close().catch(() => {});
    phase('closed');
  }
}

const browser = await launch();
let closing = false;
const finish = async (code) => {
  if (closing) return;
  closing = true;
  await browser.close().catch(() => {});
  rmSync(tmp, { recursive: true, force: true });
  process.exit(code);
};
process.on('SIGTERM', () => finish(143));
process.on('SIGINT', () => finish(130));
console.log('ready');
for await (const line of createInterface({ input: process.stdin })) {
  const [cmd, arg] = line.trim().split(/\s+/);
  if (cmd === 'try') {
    console.log(JSON.stringify(await oneTry(browser, Number(arg))));
  } else if (cmd === 'quit') {
    break;
  }
}
await finish(0);
