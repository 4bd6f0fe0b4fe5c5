// Browser test driver, run by tests/browser.rs inside a private network namespace:
// starts `meshcall serve`, headless Chromium pages and `meshcall join` members in one
// room, and writes what each of them received as JSON. The Rust test judges the numbers.
//
//   node run.mjs <scenario> <result.json>
// env: MESHCALL_BIN (the binary), ARTIFACTS (folder for screenshots)

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync, openSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BIN = process.env.MESHCALL_BIN;
const ARTIFACTS = process.env.ARTIFACTS || 'artifacts';
const PORT = 8787;
const ROOM = 'browser-test';
const BASE = `http://127.0.0.1:${PORT}`;
const TURN_PORT = 3478;
const TURN_SECRET = 'browser-test-secret';
const JANUS_PORT = 8188;
const tmp = mkdtempSync(join(tmpdir(), 'meshcall-browser-'));
const children = [];
let server = null;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error('[driver]', ...a);

async function startServer(args = []) {
  const child = spawn(BIN, ['serve', '--bind', `127.0.0.1:${PORT}`, ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
  children.push(child);
  server = child;
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${BASE}/healthz`)).ok) return;
    } catch { /* not up yet */ }
    await sleep(100);
  }
  throw new Error('server did not start');
}

/** Stops the server and waits until it has exited, so its port is closed. */
async function stopServer() {
  const child = server;
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.on('exit', r));
  child.kill('SIGTERM');
  await exited;
}

/** Waits until the server counts `n` room members. */
async function waitMembers(n) {
  for (let i = 0; i < 100; i++) {
    const text = await (await fetch(`${BASE}/metrics`)).text();
    if (new RegExp(`^meshcall_members ${n}$`, 'm').test(text)) return;
    await sleep(100);
  }
  throw new Error(`the server never had ${n} members`);
}

/**
 * The text of `selector` once it matches `pattern`, or whatever it says after `ms`
 * (the Rust test judges it, so a wrong message fails there with the text in view).
 */
async function textWhen(page, selector, pattern, ms = 10000) {
  try {
    await page.waitForFunction(([sel, src]) => new RegExp(src, 'i').test(document.querySelector(sel).textContent),
      [selector, pattern.source], { timeout: ms });
  } catch { /* judged by the caller */ }
  return page.textContent(selector);
}

/**
 * Waits until `page` is connected to every member it knows, with video decoded from each.
 * Polls with evaluate, which awaits the stats (waitForFunction takes a promise as truthy).
 */
async function waitMedia(page, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const ready = await page.evaluate(async () => {
      const { state } = window.meshcall;
      if (state.links.size === 0) return false;
      for (const link of state.links.values()) {
        if (link.pc.connectionState !== 'connected') return false;
        let frames = 0;
        (await link.pc.getStats()).forEach((x) => {
          if (x.type === 'inbound-rtp' && x.kind === 'video') frames += x.framesDecoded || 0;
        });
        if (frames === 0) return false;
      }
      return true;
    });
    if (ready) return;
    if (Date.now() > deadline) throw new Error('no media within the time');
    await sleep(250);
  }
}

/**
 * Starts `meshcall join`; resolves its report when it exits. With `engineLog` its log (the
 * engine at info) goes to a file whose lines come back as the report's `log`.
 */
function headless(name, seconds, extra = [], { engineLog = false } = {}) {
  const report = join(tmp, `${name}.json`);
  const logFile = join(tmp, `${name}.log`);
  const quiet = 'warn,rtc_interceptor::registry=error,rtc_dtls=error,rtc_ice=error';
  const child = spawn(BIN, ['join', '--server', `ws://127.0.0.1:${PORT}`, '--room', ROOM, '--name', name,
    '--duration', String(seconds), '--report', report, ...extra], {
    stdio: ['ignore', 'ignore', engineLog ? openSync(logFile, 'w') : 'inherit'],
    env: { ...process.env, MESHCALL_ICE_IP: '127.0.0.1',
      RUST_LOG: engineLog ? `${quiet},meshcall::engine=info` : (process.env.RUST_LOG || quiet) },
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.on('exit', (code) => {
      const log = engineLog ? readFileSync(logFile, 'utf8') : '';
      if (code !== 0) {
        if (log) log.split('\n').slice(-30).forEach((l) => log && console.error(`[${name}] ${l}`));
        return reject(new Error(`meshcall join ${name} exited with ${code}`));
      }
      const r = JSON.parse(readFileSync(report, 'utf8'));
      if (engineLog) r.log = log.split('\n').filter((l) => /SFU|mesh link/.test(l)).map((l) => l.replace(/\x1b\[[0-9;]*m/g, ''));
      resolve(r);
    });
  });
}

/** Resolves once something listens on 127.0.0.1:`port`. */
async function waitPort(port, what) {
  for (let i = 0; i < 150; i++) {
    const up = await new Promise((r) => {
      const s = connect(port, '127.0.0.1', () => { s.end(); r(true); });
      s.on('error', () => r(false));
    });
    if (up) return;
    await sleep(100);
  }
  throw new Error(`${what} did not listen on ${port}`);
}

/** Starts Janus (`scripts/janus`, which makes its ICE work in this lo-only namespace). */
async function startJanus() {
  const script = new URL('../../scripts/janus', import.meta.url).pathname;
  const out = openSync(join(tmp, 'janus.log'), 'w');
  const child = spawn(script, ['--port', String(JANUS_PORT)], { stdio: ['ignore', out, out], env: { ...process.env, TMPDIR: tmp } });
  children.push(child);
  await waitPort(JANUS_PORT, 'Janus');
}

/**
 * Starts Chromium with fake devices. With `askPermission` the fake permission prompt is
 * left out, so only what a context grants is allowed and getUserMedia for anything else
 * fails with NotAllowedError, as when a user blocks the camera.
 */
async function launch({ askPermission = false } = {}) {
  const env = { ...process.env, XDG_CONFIG_HOME: join(tmp, 'config'), PULSE_RUNTIME_PATH: join(tmp, 'pulse'), HOME: tmp };
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    env,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--use-fake-device-for-media-stream',
      ...(askPermission ? [] : ['--use-fake-ui-for-media-stream']),
      '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns',
      '--autoplay-policy=no-user-gesture-required'],
  });
}

/** Opens the room link in a fresh context and joins as `name`, allowed `permissions`. */
async function browserMember(browser, name, permissions = ['camera', 'microphone'], query = '') {
  const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  await context.grantPermissions(permissions);
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() !== 'debug') log(`${name} console.${m.type()}:`, m.text()); });
  page.on('pageerror', (e) => log(`${name} page error:`, e.message));
  await page.goto(`${BASE}/r/${ROOM}${query}`);
  await page.fill('#name', name);
  await page.click('#join');
  await page.waitForSelector('#call:not([hidden])', { timeout: 10000 });
  return page;
}

/** What one page receives from each member, keyed by the member's name. */
async function received(page) {
  return page.evaluate(async () => {
    const { state } = window.meshcall;
    const out = {};
    for (const [id, link] of state.links) {
      const report = await link.pc.getStats();
      const s = { connection: link.pc.connectionState, framesDecoded: 0, audioSamples: 0 };
      // The selected pair's candidate types (`relay`: through the TURN server).
      report.forEach((x) => {
        if (x.type !== 'transport' || !x.selectedCandidatePairId) return;
        const pair = report.get(x.selectedCandidatePairId);
        const local = pair && report.get(pair.localCandidateId);
        const remote = pair && report.get(pair.remoteCandidateId);
        s.localCandidate = local && local.candidateType;
        s.remoteCandidate = remote && remote.candidateType;
      });
      report.forEach((x) => {
        if (x.type !== 'inbound-rtp') return;
        const codec = x.codecId && report.get(x.codecId);
        if (x.kind === 'video') {
          s.framesDecoded = x.framesDecoded || 0;
          s.videoCodec = codec && codec.mimeType;
          s.videoPayloadType = codec && codec.payloadType;
        } else {
          s.audioSamples = x.totalSamplesReceived || 0;
          s.audioPackets = x.packetsReceived || 0;
          s.audioCodec = codec && codec.mimeType;
        }
      });
      out[(state.peers.get(id) || { name: id }).name] = s;
    }
    return out;
  });
}

async function screenshot(page, file) {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, file) });
}

/**
 * Page `page` joined with neither device; grants both, turns the camera and then the mic
 * on, and reports how the page's connections settled and what the headless member got.
 */
async function cameraLater(page, report) {
  const notice = await textWhen(page, '#notice', /camera/);
  await waitMedia(page).catch((e) => log('no media yet:', e.message));
  await page.context().grantPermissions(['camera', 'microphone']);
  const t0 = Date.now();
  await page.click('#toggle-cam');
  const camera = await textWhen(page, '#toggle-cam', /camera off/, 5000);
  const cameraOnAfterMs = Date.now() - t0;
  // The mic right after: a second renegotiation, perhaps while the first is under way.
  await page.click('#toggle-mic');
  const mic = await textWhen(page, '#toggle-mic', /^mute$/, 5000);
  const noticeAfter = await page.textContent('#notice');
  // The renegotiation must finish on the page too, not only start sending.
  const settled = () => [...window.meshcall.state.links.values()].map((l) => ({
    signaling: l.pc.signalingState,
    video: l.pc.getTransceivers().filter((t) => t.receiver.track.kind === 'video').map((t) => t.currentDirection),
    audio: l.pc.getTransceivers().filter((t) => t.receiver.track.kind === 'audio').map((t) => t.currentDirection),
  }));
  for (let i = 0; i < 25; i++) {
    const links = await page.evaluate(settled);
    if (links.every((l) => l.signaling === 'stable' && l.video.includes('sendrecv') && l.audio.includes('sendrecv'))) break;
    await sleep(200);
  }
  const negotiated = await page.evaluate(settled);
  const headlessReport = await report;
  return { notice, camera, cameraOnAfterMs, mic, noticeAfter, negotiated, headless: { Headless: headlessReport } };
}

/** Presses Share on `page` and returns what the browser gave it to share. */
async function startShare(page) {
  await page.click('#share');
  const button = await textWhen(page, '#share', /stop sharing/, 5000);
  const shared = await page.evaluate(() => {
    const t = window.meshcall.state.media.screen;
    return t && { label: t.label, contentHint: t.contentHint, ...t.getSettings() };
  });
  return { button, shared, sharing: await page.textContent('#sharing') };
}

/**
 * Per member (by name): the screen m-section's receiver stats on `page`, found as the
 * second video transceiver by m-line order (the page's own slots.js), plus the camera's.
 */
async function screenReceived(page) {
  return page.evaluate(async () => {
    const { videoTransceivers } = await import('/assets/slots.js');
    const { state } = window.meshcall;
    const inbound = async (t) => {
      const out = { framesDecoded: 0 };
      if (!t) return out;
      (await t.receiver.getStats()).forEach((x) => {
        if (x.type !== 'inbound-rtp') return;
        out.framesDecoded = x.framesDecoded || 0;
        out.frameWidth = x.frameWidth;
        out.frameHeight = x.frameHeight;
      });
      return out;
    };
    const out = {};
    for (const [id, link] of state.links) {
      const [camera, screen] = videoTransceivers(link.pc);
      out[(state.peers.get(id) || { name: id }).name] = {
        camera: await inbound(camera), screen: await inbound(screen), screenMid: screen ? screen.mid : null,
      };
    }
    return out;
  });
}

/** Waits until `page` decodes more than `above` frames of `from`'s share and shows its tile. */
async function waitShare(page, from, above = 0, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = (await screenReceived(page))[from];
    const tile = await page.$('.tile.share');
    if (got && tile && got.screen.framesDecoded > above + 20) return got;
    if (Date.now() > deadline) {
      log(`no share from ${from} within the time:`, JSON.stringify(got));
      return got;
    }
    await sleep(250);
  }
}

/** What the user sees of the call view: the spotlight layout and every tile's place. */
async function layout(page) {
  return page.evaluate(() => {
    const box = (el) => {
      const r = el.getBoundingClientRect();
      return { x: Math.round(r.x), y: Math.round(r.y), w: Math.round(r.width), h: Math.round(r.height) };
    };
    const tiles = document.getElementById('tiles');
    const share = [...tiles.querySelectorAll('.tile.share')].map((t) => {
      const video = t.querySelector('video');
      return {
        label: t.querySelector('.label').textContent, box: box(t), actual: t.classList.contains('actual'),
        objectFit: getComputedStyle(video).objectFit, videoBox: box(video),
        videoSize: [video.videoWidth, video.videoHeight], first: tiles.firstElementChild === t,
      };
    });
    const cameras = [...tiles.querySelectorAll('.tile:not(.share)')].map((t) => ({
      label: t.querySelector('.label').textContent, box: box(t),
    }));
    return { spotlight: tiles.classList.contains('spotlight'), share, cameras };
  });
}

/** Waits until `page` shows no share tile, then reports the layout. */
async function waitNoShare(page, ms = 8000) {
  await page.waitForFunction(() => !document.querySelector('.tile.share'), null, { timeout: ms })
    .catch(() => log('the share tile stayed'));
  return layout(page);
}

/** Per member: how many video m-sections `page`'s descriptions hold, and the slots' state. */
async function negotiated(page) {
  return page.evaluate(async () => {
    const { videoTransceivers } = await import('/assets/slots.js');
    const { state } = window.meshcall;
    const count = (d) => (d ? d.sdp.split(/\r?\n/).filter((l) => l.startsWith('m=video')).length : null);
    const out = {};
    for (const [id, link] of state.links) {
      const { pc } = link;
      out[(state.peers.get(id) || { name: id }).name] = {
        signaling: pc.signalingState,
        localVideo: count(pc.currentLocalDescription),
        remoteVideo: count(pc.currentRemoteDescription),
        directions: videoTransceivers(pc).map((t) => t.currentDirection),
        screenSending: !!(videoTransceivers(pc)[1] && videoTransceivers(pc)[1].sender.track),
      };
    }
    return out;
  });
}

/** Waits until every connection of `page` is stable with `n` video m-sections both ways. */
async function waitNegotiated(page, n, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const links = await negotiated(page);
    const done = Object.values(links).every((l) => l.signaling === 'stable' && l.localVideo === n && l.remoteVideo === n);
    if (done || Date.now() > deadline) return links;
    await sleep(200);
  }
}

/** Whether `page`'s move onto Janus is over: publishing, no mesh connection left. */
async function waitOnSfu(page, ms = 20000) {
  try {
    await page.waitForFunction(() => {
      const { state } = window.meshcall;
      return state.sfu && !state.sfu.moving && state.sfu.feed !== null && state.links.size === 0;
    }, null, { timeout: ms, polling: 100 });
    return true;
  } catch {
    return false;
  }
}

/**
 * What `page` receives through Janus from each member (by name), as `received` reports a
 * mesh connection, plus which members Janus lists in the room (display = peer id).
 */
async function receivedSfu(page) {
  return page.evaluate(async () => {
    const { state } = window.meshcall;
    const out = { peers: {}, onSfu: !!state.sfu, meshLinks: state.links.size };
    if (!state.sfu) return out;
    const { room } = state.sfu;
    out.subscriber = room.sub && room.sub.pc.connectionState;
    out.publisher = room.pub && room.pub.pc.connectionState;
    // What our publisher connection sends: the codec Janus accepted.
    const sent = await room.pub.pc.getStats();
    sent.forEach((x) => {
      if (x.type !== 'outbound-rtp' || x.kind !== 'video') return;
      const codec = x.codecId && sent.get(x.codecId);
      out.sentFrames = x.framesEncoded || 0;
      out.sentCodec = codec && codec.mimeType;
      out.sentFmtp = codec && codec.sdpFmtpLine;
    });
    for (const [id, peer] of state.peers) {
      const r = state.sfu.receivers(id);
      const s = { framesDecoded: 0, audioSamples: 0, audioPackets: 0 };
      for (const [slot, receiver] of Object.entries(r)) {
        const report = await receiver.getStats();
        report.forEach((x) => {
          if (x.type !== 'inbound-rtp') return;
          const codec = x.codecId && report.get(x.codecId);
          if (slot === 'camera') {
            s.framesDecoded = x.framesDecoded || 0;
            s.videoCodec = codec && codec.mimeType;
          } else if (slot === 'audio') {
            s.audioSamples = x.totalSamplesReceived || 0;
            s.audioPackets = x.packetsReceived || 0;
            s.audioCodec = codec && codec.mimeType;
          }
        });
      }
      // The tile shows the track Janus delivers.
      const tile = document.querySelector(`.tile:not(.share)[data-peer="${id}"] video`);
      const shown = tile && tile.srcObject && tile.srcObject.getVideoTracks()[0];
      s.tileShowsSfu = !!(shown && r.camera && shown === r.camera.track);
      s.tileVideoSize = tile ? [tile.videoWidth, tile.videoHeight] : null;
      out.peers[peer.name] = s;
    }
    // Janus' own list of the room's participants, asked on our publisher handle.
    const list = await room.message(room.pub.handle, { request: 'listparticipants', room: room.sfu.room })
      .catch((e) => ({ data: { error: e.message } }));
    out.janusParticipants = (list.data.participants || []).map((p) => {
      const peer = state.peers.get(p.display);
      return { name: p.display === state.self ? 'self' : (peer ? peer.name : p.display), publisher: p.publisher };
    });
    return out;
  });
}

/**
 * Starts sampling, every 100 ms, every video frame `page` decodes from each member by
 * either path (its mesh connection's camera receiver and its camera through Janus);
 * `gapReport` then gives per member the longest time without a new frame since the first.
 */
async function startGapSampler(page) {
  await page.evaluate(async () => {
    const { videoTransceivers } = await import('/assets/slots.js');
    const { state } = window.meshcall;
    const seen = new Map(); // receiver -> frames decoded so far
    const gaps = {};        // peer id -> { first, last, max, samples }
    window.gapSampler = { gaps, stop: false };
    const receiversOf = (id) => {
      const out = [];
      const link = state.links.get(id);
      if (link) {
        const [camera] = videoTransceivers(link.pc);
        if (camera) out.push(camera.receiver);
      }
      if (state.sfu) {
        const r = state.sfu.receivers(id);
        if (r.camera) out.push(r.camera);
      }
      return out;
    };
    const tick = async () => {
      const now = performance.now();
      for (const id of state.peers.keys()) {
        let grew = false;
        for (const receiver of receiversOf(id)) {
          let frames = 0;
          try {
            (await receiver.getStats()).forEach((x) => {
              if (x.type === 'inbound-rtp') frames = x.framesDecoded || 0;
            });
          } catch { continue; }
          if (frames > (seen.get(receiver) || 0)) grew = true;
          seen.set(receiver, Math.max(frames, seen.get(receiver) || 0));
        }
        const g = gaps[id] || (gaps[id] = { first: null, last: null, max: 0, samples: 0 });
        g.samples += 1;
        if (grew) {
          if (g.last !== null) g.max = Math.max(g.max, now - g.last);
          if (g.first === null) g.first = now;
          g.last = now;
        }
      }
      if (!window.gapSampler.stop) setTimeout(tick, 100);
    };
    tick();
  });
}

/** Stops the sampler: per member name, the longest gap (ms, up to now) and frames seen. */
async function gapReport(page) {
  return page.evaluate(() => {
    const { state } = window.meshcall;
    window.gapSampler.stop = true;
    const now = performance.now();
    const out = {};
    for (const [id, g] of Object.entries(window.gapSampler.gaps)) {
      const peer = state.peers.get(id);
      const trailing = g.last === null ? null : now - g.last;
      out[peer ? peer.name : id] = {
        maxGapMs: g.last === null ? null : Math.round(Math.max(g.max, trailing)),
        sampledMs: g.first === null ? 0 : Math.round(now - g.first),
        samples: g.samples,
      };
    }
    return out;
  });
}

/** `from`'s screen share as `page` receives it through Janus, and the share tile. */
async function sfuScreen(page, from) {
  return page.evaluate(async (name) => {
    const { state } = window.meshcall;
    const id = [...state.peers.values()].find((p) => p.name === name)?.id;
    const r = id && state.sfu ? state.sfu.receivers(id) : {};
    const out = { framesDecoded: 0, cameraFrames: 0 };
    for (const [slot, receiver] of Object.entries(r)) {
      (await receiver.getStats()).forEach((x) => {
        if (x.type !== 'inbound-rtp' || x.kind !== 'video') return;
        if (slot === 'screen') {
          out.framesDecoded = x.framesDecoded || 0;
          out.frameWidth = x.frameWidth;
          out.frameHeight = x.frameHeight;
        } else out.cameraFrames = x.framesDecoded || 0;
      });
    }
    const tile = document.querySelector('.tile.share');
    out.tile = tile && tile.querySelector('.label').textContent;
    return out;
  }, from);
}

/** Waits until `page` decodes over `above` + 20 frames of `from`'s share through Janus. */
async function waitSfuShare(page, from, above = 0, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await sfuScreen(page, from);
    if ((got.framesDecoded > above + 20 && got.tile) || Date.now() > deadline) return got;
    await sleep(250);
  }
}

const scenarios = {
  // The room is on Janus already (`--sfu-above 1`: Bob's join moved it) when the page
  // joins: `joined.sfu`, so it makes no mesh connection at all and gets media from Janus.
  async 'sfu-page-joins-janus-room'(browser) {
    const ann = headless('Ann', 20, [], { engineLog: true });
    await waitMembers(1);
    const bob = headless('Bob', 19, [], { engineLog: true });
    await waitMembers(2);
    await sleep(3000);
    const page = await browserMember(browser, 'Web');
    // The most mesh connections the page ever had, sampled until it is on Janus.
    await page.evaluate(() => {
      window.maxLinks = 0;
      const t = setInterval(() => {
        window.maxLinks = Math.max(window.maxLinks, window.meshcall.state.links.size);
      }, 20);
      setTimeout(() => clearInterval(t), 10000);
    });
    const moved = await waitOnSfu(page);
    await sleep(8000);
    const maxLinks = await page.evaluate(() => window.maxLinks);
    const got = await receivedSfu(page);
    return { moved, maxLinks, sfu: got, headless: { Ann: await ann, Bob: await bob } };
  },

  // Janus is up for the server but members are sent an address where nothing listens
  // (`--sfu-public`): the page's move fails, it says `sfu-failed`, the server cancels the
  // move (Bob, whose join caused it, is refused), and the page stays on the mesh with Ann
  // with no gap.
  async 'sfu-unreachable'(browser) {
    const page = await browserMember(browser, 'Web');
    const ann = headless('Ann', 20);
    await waitMedia(page, 15000);
    await startGapSampler(page);
    await page.evaluate(() => {
      // Every message the page sends, to see its sfu-failed.
      const { signaling } = window.meshcall.state;
      const send = signaling.send.bind(signaling);
      window.sent = [];
      signaling.send = (msg) => { window.sent.push(msg.type); send(msg); };
    });
    const bob = headless('Bob', 10).then(() => 'stayed', (e) => `refused: ${e.message}`);
    const bobOutcome = await bob;
    await sleep(6000);
    const gaps = await gapReport(page);
    const after = await page.evaluate(() => {
      const { state } = window.meshcall;
      return { onSfu: !!state.sfu, sent: window.sent, peers: [...state.peers.values()].map((p) => p.name),
        lobbyHidden: document.getElementById('lobby').hidden };
    });
    const browserGot = await received(page);
    return { bobOutcome, gaps, after, browser: { Web: browserGot }, headless: { Ann: await ann } };
  },

  // Screen sharing in a room on Janus: WebA's share is the second video stream of its
  // feed; WebB shows it as WebA's screen, it stops, and it comes back on the same stream.
  async 'sfu-share-pages'(browser) {
    const a = await browserMember(browser, 'WebA');
    const b = await browserMember(browser, 'WebB');
    await waitMedia(b, 15000);
    const ann = headless('Ann', 26, [], { engineLog: true });
    const moved = { WebA: await waitOnSfu(a), WebB: await waitOnSfu(b) };
    const sharer = await startShare(a);
    const first = await waitSfuShare(b, 'WebA');
    const spotlight = await layout(b);
    await screenshot(b, 'browser-sfu-share.png');
    await a.click('#share');
    const stoppedLayout = await waitNoShare(b);
    const atStop = await sfuScreen(b, 'WebA');
    await sleep(1500);
    const later = await sfuScreen(b, 'WebA');
    await startShare(a);
    const again = await waitSfuShare(b, 'WebA', later.framesDecoded);
    const publisherVideo = await a.evaluate(() => window.meshcall.state.sfu.room.pub.pc.getTransceivers()
      .filter((t) => t.sender.track === null || t.sender.track.kind === 'video').length);
    const got = { WebA: await receivedSfu(a), WebB: await receivedSfu(b) };
    return { moved, sharer, first, spotlight, stoppedLayout, atStop, later, again, publisherVideo, sfu: got, headless: { Ann: await ann } };
  },

  // Issue 14: two headless members talk over the mesh; the page's join (a third member,
  // `--sfu-above 2`) moves the room onto Janus. Everyone receives everyone through Janus.
  async 'sfu-page-moves'(browser) {
    const ann = headless('Ann', 24, [], { engineLog: true });
    await waitMembers(1);
    const bob = headless('Bob', 23, [], { engineLog: true });
    await waitMembers(2);
    await sleep(2000);
    const t0 = Date.now();
    const page = await browserMember(browser, 'Web');
    const moved = await waitOnSfu(page);
    const movedAfterMs = Date.now() - t0;
    await startGapSampler(page);
    await sleep(8000);
    const gaps = await gapReport(page);
    const got = await receivedSfu(page);
    await screenshot(page, 'browser-sfu.png');
    // Mute works as in a mesh: the page stops sending sound to Janus, video goes on.
    await page.click('#toggle-mic');
    const headlessGot = { Ann: await ann, Bob: await bob };
    return { moved, movedAfterMs, gaps, sfu: got, headless: headlessGot };
  },

  // The page is on the mesh with Ann when Bob's join moves the room: it keeps receiving
  // Ann with no gap over 1 s (frames decoded by either path, sampled every 100 ms).
  async 'sfu-page-on-mesh'(browser) {
    const page = await browserMember(browser, 'Web');
    const ann = headless('Ann', 26, [], { engineLog: true });
    await waitMedia(page, 15000);
    await startGapSampler(page);
    await sleep(2000);
    const meshBefore = await received(page);
    const bob = headless('Bob', 18, [], { engineLog: true });
    const moved = await waitOnSfu(page);
    await sleep(6000);
    const gaps = await gapReport(page);
    const got = await receivedSfu(page);
    const headlessGot = { Ann: await ann, Bob: await bob };
    return { moved, meshBefore, gaps, sfu: got, headless: headlessGot };
  },

  // Screen sharing between pages: WebA shares to WebB, stops, shares again on the same
  // m-section, WebC joins during the share, and the browser's own "Stop sharing" ends it.
  async 'share-browsers'(browser) {
    const a = await browserMember(browser, 'WebA');
    const b = await browserMember(browser, 'WebB');
    await waitMedia(a);
    await waitMedia(b);
    const cameraBefore = (await screenReceived(b)).WebA.camera.framesDecoded;
    const sharer = await startShare(a);
    const first = await waitShare(b, 'WebA');
    const fit = await layout(b);
    await screenshot(b, 'browser-share.png');
    await b.click('.tile.share');
    const actual = await layout(b);
    await b.click('.tile.share');
    const fitAgain = await layout(b);
    // Stop with our own button: the tile goes, frames stop, the m-section stays.
    await a.click('#share');
    const stopped = {
      button: await textWhen(a, '#share', /share screen/, 5000),
      sharing: await a.isHidden('#sharing'),
      layout: await waitNoShare(b),
    };
    await sleep(1500);
    const framesAfterStop = (await screenReceived(b)).WebA.screen.framesDecoded;
    await sleep(1500);
    stopped.framesLater = (await screenReceived(b)).WebA.screen.framesDecoded;
    stopped.framesAtStop = framesAfterStop;
    stopped.negotiated = await negotiated(a);
    // Again: the same m-section carries it (no third one).
    const sharerAgain = await startShare(a);
    const again = await waitShare(b, 'WebA', framesAfterStop);
    const layoutAgain = await layout(b);
    // A member joining during the share gets it on its first connection.
    const c = await browserMember(browser, 'WebC');
    const late = await waitShare(c, 'WebA');
    const lateLayout = await layout(c);
    // The camera kept going all along.
    const cameraAfter = (await screenReceived(b)).WebA.camera.framesDecoded;
    const final = { WebA: await waitNegotiated(a, 2), WebB: await negotiated(b), WebC: await negotiated(c) };
    // The browser's "Stop sharing" bar ends the track from outside: `ended` fires.
    await a.evaluate(() => window.meshcall.state.media.screen.dispatchEvent(new Event('ended')));
    const ended = {
      button: await textWhen(a, '#share', /share screen/, 5000),
      WebB: await waitNoShare(b),
      WebC: await waitNoShare(c),
      peerState: await b.evaluate(() => [...window.meshcall.state.peers.values()].find((p) => p.name === 'WebA').screen),
    };
    return {
      sharer, first, fit, actual, fitAgain, stopped, sharerAgain, again, layoutAgain, late, lateLayout,
      camera: { before: cameraBefore, after: cameraAfter }, final, ended,
    };
  },

  // Both pages press Share at the same moment: their offers adding the screen m-section
  // collide; perfect negotiation must leave one screen m-section carrying both shares.
  async 'share-glare'(browser) {
    const a = await browserMember(browser, 'WebA');
    const b = await browserMember(browser, 'WebB');
    await waitMedia(a);
    await waitMedia(b);
    const ids = await Promise.all([a, b].map((p) => p.evaluate(() => window.meshcall.state.self)));
    await Promise.all([a.click('#share'), b.click('#share')]);
    const gotA = await waitShare(a, 'WebB');
    const gotB = await waitShare(b, 'WebA');
    const final = { WebA: await waitNegotiated(a, 2), WebB: await waitNegotiated(b, 2) };
    // Whether the offers really collided this time (timing decides; reported, not judged).
    const glare = await Promise.all([a, b].map((p) => p.evaluate(() => [...window.meshcall.state.links.values()][0].glare)));
    return { ids, glare, got: { WebA: gotA, WebB: gotB }, final, layout: { WebA: await layout(a), WebB: await layout(b) } };
  },

  // The page shares while in a call with a headless member (webrtc-rs): the page adds the
  // screen m-section and renegotiates; the headless member must take the offer and keep
  // receiving the page's camera. The headless member itself does not share.
  async 'share-headless'(browser) {
    const page = await browserMember(browser, 'Web');
    const report = headless('Headless', 16);
    await waitMedia(page);
    await sleep(1000);
    const sharer = await startShare(page);
    const during = await waitNegotiated(page, 2);
    await sleep(4000);
    await page.click('#share');
    const button = await textWhen(page, '#share', /share screen/, 5000);
    await sleep(1000);
    const after = await negotiated(page);
    const browserGot = await received(page);
    return { sharer, during, after, button, browser: { Web: browserGot }, headless: { Headless: await report } };
  },

  // The app shares to a page: a headless member shares the synthetic 1920x1080 screen
  // from 3 s to 17 s; the page shows it as "Ada's screen" while Ada's camera goes on,
  // and the tile goes when the share stops (the m-section stays).
  async 'share-app-to-page'(browser) {
    const page = await browserMember(browser, 'Web');
    const report = headless('Ada', 24, ['--screen', 'test', '--screen-at', '3', '--screen-stop-at', '17']);
    await waitMedia(page);
    const first = await waitShare(page, 'Ada', 0, 20000);
    const spotlight = await layout(page);
    const before = (await screenReceived(page)).Ada;
    await sleep(3000);
    const later = (await screenReceived(page)).Ada;
    const during = await negotiated(page);
    const stopped = await waitNoShare(page, 12000);
    const after = await negotiated(page);
    const browserGot = await received(page);
    return { first, spotlight, before, later, during, stopped, after, browser: { Web: browserGot }, headless: { Ada: await report } };
  },

  // A page shares to the app: the headless member decodes the page's 1920x1080 fake
  // screen on the second m-section while the page's camera keeps flowing.
  async 'share-page-to-app'(browser) {
    const page = await browserMember(browser, 'Web');
    const report = headless('Headless', 22);
    await waitMedia(page);
    await sleep(1000);
    const sharer = await startShare(page);
    const headlessReport = await report;
    const browserGot = await received(page);
    return { sharer, browser: { Web: browserGot }, headless: { Headless: headlessReport } };
  },

  // A room with a passcode, chat, and a signaling drop the page must resume from.
  async 'lobby-chat-resume'(browser) {
    const report = headless('Host', 14, ['--passcode', 'sesame', '--video', 'none', '--audio', 'none']);
    await sleep(1500);
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on('pageerror', (e) => log('page error:', e.message));
    await page.goto(`${BASE}/r/${ROOM}`);
    const prefilled = await page.inputValue('#room');
    await page.fill('#name', 'Web');
    await page.click('#join');
    await page.waitForSelector('#passcode-row:not([hidden])', { timeout: 10000 });
    const refusal = await page.textContent('#lobby-message');
    await page.fill('#passcode', 'open sesame');
    await page.click('#join');
    const wrongPasscode = await textWhen(page, '#lobby-message', /wrong/);
    await page.fill('#passcode', 'sesame');
    await page.click('#join');
    await page.waitForSelector('#call:not([hidden])', { timeout: 10000 });
    await page.fill('#chat-text', 'hello from the browser');
    await page.click('#chat-form button');
    await page.waitForSelector('#chat-log li', { timeout: 5000 });
    const selfBefore = await page.evaluate(() => window.meshcall.state.self);
    await page.evaluate(() => window.meshcall.state.signaling.ws.close());
    await sleep(3000);
    const after = await page.evaluate(() => {
      const { state } = window.meshcall;
      return { self: state.self, open: state.signaling.ws.readyState === WebSocket.OPEN, peers: [...state.peers.values()].map((p) => p.name) };
    });
    const chat = await page.$$eval('#chat-log li', (lis) => lis.map((li) => li.textContent));
    const status = await page.textContent('#status');
    await page.click('#leave');
    await report;
    return { prefilled, refusal, wrongPasscode, selfBefore, after, chat, status };
  },

  // The server allows one member; the page is refused, then joins another room.
  async 'room-full'(browser) {
    const report = headless('Host', 8, ['--video', 'none', '--audio', 'none']);
    await waitMembers(1);
    const context = await browser.newContext();
    await context.grantPermissions(['camera', 'microphone']);
    const page = await context.newPage();
    await page.goto(`${BASE}/r/${ROOM}`);
    await page.fill('#name', 'Web');
    await page.click('#join');
    const message = await textWhen(page, '#lobby-message', /full/);
    await page.waitForSelector('#join:not([disabled])', { timeout: 5000 }).catch(() => {});
    const lobby = await page.evaluate(() => ({
      joinEnabled: !document.getElementById('join').disabled,
      callHidden: document.getElementById('call').hidden,
      // The refused join must not keep the camera and mic open.
      openTracks: window.meshcall.state.media.stream.getTracks().length,
    }));
    await page.fill('#room', 'browser-test-other');
    await page.click('#join');
    await page.waitForSelector('#call:not([hidden])', { timeout: 10000 });
    const roomLabel = await page.textContent('#room-label');
    await page.click('#leave');
    await report;
    return { message, lobby, roomLabel };
  },

  // The server is gone when the user presses Join; it comes back and the next Join works.
  async 'server-unreachable'(browser) {
    const context = await browser.newContext();
    await context.grantPermissions(['camera', 'microphone']);
    const page = await context.newPage();
    await page.goto(`${BASE}/r/${ROOM}`);
    await page.fill('#name', 'Web');
    await stopServer();
    await page.click('#join');
    const message = await textWhen(page, '#lobby-message', /reach/);
    await page.waitForSelector('#join:not([disabled])', { timeout: 5000 }).catch(() => {});
    const joinEnabled = await page.isEnabled('#join');
    await startServer();
    await page.click('#join');
    await page.waitForSelector('#call:not([hidden])', { timeout: 10000 });
    const roomLabel = await page.textContent('#room-label');
    return { message, joinEnabled, roomLabel };
  },

  // The user allowed the microphone but blocked the camera: the page joins with sound only.
  async 'camera-denied'(browser) {
    const page = await browserMember(browser, 'Web', ['microphone']);
    const report = headless('Headless', 10);
    const notice = await textWhen(page, '#notice', /camera/);
    const buttons = { mic: await page.textContent('#toggle-mic'), camera: await page.textContent('#toggle-cam') };
    // With the camera off our own tile shows initials instead.
    const selfTile = { initials: await page.textContent('.tile.self .initials'), label: await page.textContent('.tile.self .label') };
    await waitMedia(page).catch((e) => log('no media yet:', e.message));
    // Pressing "Camera on" while the camera is still blocked asks again and explains again.
    await page.evaluate(() => {
      const n = document.getElementById('notice');
      n.textContent = '';
      n.hidden = true;
    });
    await page.click('#toggle-cam');
    const noticeAgain = await textWhen(page, '#notice', /camera/);
    const cameraAfterRetry = await page.textContent('#toggle-cam');
    await sleep(4000);
    const browserGot = await received(page);
    await screenshot(page, 'browser-camera-denied.png');
    return {
      notice, noticeAgain, cameraAfterRetry, buttons, selfTile,
      browser: { Web: browserGot }, headless: { Headless: await report },
    };
  },

  // Joined with neither device allowed; the user then allows both and turns the camera and
  // the mic on, which sends on new tracks and renegotiates with the headless member.
  // The headless member made the first offer, so the page sends on m-lines it answered.
  async 'camera-later'(browser) {
    const page = await browserMember(browser, 'Web', []);
    return cameraLater(page, headless('Headless', 13));
  },

  // The same with the page making the first offer: it sends on its own recvonly m-lines.
  async 'camera-later-offerer'(browser) {
    const report = headless('Headless', 14);
    await waitMembers(1);
    return cameraLater(await browserMember(browser, 'Web', []), report);
  },

  // The page loses its socket for longer than the grace period (2 s here), so its resume is
  // refused; it must join afresh and connect to the headless member again.
  async 'resume-refused'(browser) {
    const page = await browserMember(browser, 'Web');
    const report = headless('Headless', 15);
    await waitMedia(page);
    const selfBefore = await page.evaluate(() => window.meshcall.state.self);
    // The outage: drop the socket and let reconnects fail (a path with no WebSocket, which
    // the page's CSP allows) until the server has given our place up; then the next
    // reconnect reaches it again.
    await page.evaluate(() => {
      const { signaling } = window.meshcall.state;
      signaling.realUrl = signaling.url;
      signaling.url = signaling.url.replace(/\/ws$/, '/no-socket-here');
      signaling.ws.close();
    });
    await sleep(3000);
    const during = await page.textContent('#status');
    await page.evaluate(() => {
      const { signaling } = window.meshcall.state;
      signaling.url = signaling.realUrl;
    });
    await page.waitForFunction((before) => {
      const { state } = window.meshcall;
      return state.self !== before && state.links.size > 0;
    }, selfBefore, { timeout: 10000 }).catch(() => {});
    const selfAfter = await page.evaluate(() => window.meshcall.state.self);
    await sleep(6000);
    const browserGot = await received(page);
    const status = await page.textContent('#status');
    const tiles = await page.$$eval('#tiles .tile', (ts) => ts.length);
    return { selfBefore, selfAfter, during, status, tiles, browser: { Web: browserGot }, headless: { Headless: await report } };
  },

  // One browser and one headless member; the browser mutes after 10 s.
  async 'browser-and-headless'(browser) {
    const page = await browserMember(browser, 'Web');
    const report = headless('Headless', 14);
    await sleep(10000);
    const browserGot = await received(page);
    await screenshot(page, 'browser-call.png');
    await page.click('#toggle-mic');
    const headlessReport = await report;
    return { browser: { Web: browserGot }, headless: { Headless: headlessReport } };
  },

  // The headless member is there first, so the browser makes the offer.
  async 'browser-offers'(browser) {
    // Long enough to still be there when the stats are read, on a loaded machine too.
    const report = headless('Headless', 16);
    await sleep(1500);
    const page = await browserMember(browser, 'Web');
    await sleep(9000);
    const browserGot = await received(page);
    return { browser: { Web: browserGot }, headless: { Headless: await report } };
  },

  // A page with `?relay` and `meshcall join --relay-only` on a coturn started here in the
  // namespace (the server hands out its credentials): media both ways, relay only.
  async 'relay-only'(browser) {
    const report = headless('Headless', 16, ['--relay-only']);
    await sleep(1500);
    const page = await browserMember(browser, 'Web', undefined, '?relay');
    await waitMedia(page).catch((e) => log('no media yet:', e.message));
    await sleep(8000);
    const browserGot = await received(page);
    return { browser: { Web: browserGot }, headless: { Headless: await report } };
  },

  // Two browsers and one headless member, joining browser, headless, browser.
  async 'two-browsers'(browser) {
    const a = await browserMember(browser, 'WebA');
    const report = headless('Headless', 16);
    await sleep(1500);
    const b = await browserMember(browser, 'WebB');
    await sleep(12000);
    const got = { WebA: await received(a), WebB: await received(b) };
    await screenshot(b, 'browser-call-three.png');
    return { browser: got, headless: { Headless: await report } };
  },

  // The server restarts (so it knows no one): page and headless member both have their
  // resumes refused, join afresh, and must find each other again.
  async 'server-restart'(browser) {
    const page = await browserMember(browser, 'Web');
    const report = headless('Headless', 16);
    await waitMedia(page);
    // The new room may hand out the same ids again, so a fresh join shows as a new link.
    await page.evaluate(() => { window.linkBefore = [...window.meshcall.state.links.values()][0]; });
    await stopServer();
    await sleep(1000);
    await startServer();
    await page.waitForFunction(() => {
      const link = [...window.meshcall.state.links.values()][0];
      return link && link !== window.linkBefore;
    }, null, { timeout: 10000 }).catch(() => {});
    const rebuilt = await page.evaluate(() => {
      const link = [...window.meshcall.state.links.values()][0];
      return !!link && link !== window.linkBefore && window.linkBefore.pc.connectionState === 'closed';
    });
    const selfAfter = await page.evaluate(() => window.meshcall.state.self);
    await waitMedia(page).catch((e) => log('no media after the restart:', e.message));
    await sleep(4000);
    const browserGot = await received(page);
    const status = await page.textContent('#status');
    const tiles = await page.$$eval('#tiles .tile', (ts) => ts.length);
    return { rebuilt, selfAfter, status, tiles, browser: { Web: browserGot }, headless: { Headless: await report } };
  },
};

/** Server flags a scenario needs. */
const SFU_ARGS = ['--sfu', `ws://127.0.0.1:${JANUS_PORT}`, '--sfu-above', '2'];
const SERVER_ARGS = {
  'sfu-page-moves': SFU_ARGS,
  'sfu-page-on-mesh': SFU_ARGS,
  'sfu-share-pages': SFU_ARGS,
  'sfu-page-joins-janus-room': ['--sfu', `ws://127.0.0.1:${JANUS_PORT}`, '--sfu-above', '1'],
  // Port 9 (discard): nothing listens there in the namespace.
  'sfu-unreachable': [...SFU_ARGS, '--sfu-public', 'ws://127.0.0.1:9'],
  'room-full': ['--max-room-size', '1'],
  'resume-refused': ['--grace', '2'],
  'relay-only': ['--turn-url', `turn:127.0.0.1:${TURN_PORT}`, '--turn-secret', TURN_SECRET],
};

/** Starts coturn on 127.0.0.1 (`use-auth-secret`), for the scenarios that relay. */
async function startTurn() {
  const child = spawn('turnserver', ['-n', '--listening-ip=127.0.0.1', '--relay-ip=127.0.0.1',
    `--listening-port=${TURN_PORT}`, '--use-auth-secret', `--static-auth-secret=${TURN_SECRET}`,
    '--realm=meshcall', '--no-tls', '--no-dtls', '--allow-loopback-peers', '--no-cli',
    `--userdb=${join(tmp, 'turndb')}`, `--pidfile=${join(tmp, 'turn.pid')}`, '--log-file=stdout',
    '--min-port=49160', '--max-port=49200'], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  await sleep(800);
}

/** Scenarios whose browser asks for permission instead of granting everything. */
const ASKS_PERMISSION = new Set(['camera-denied', 'camera-later', 'camera-later-offerer']);

async function main() {
  const [scenario, out] = process.argv.slice(2);
  const run = scenarios[scenario];
  if (!run) throw new Error(`unknown scenario ${scenario}`);
  if (scenario === 'relay-only') await startTurn();
  if (scenario.startsWith('sfu-')) await startJanus();
  await startServer(SERVER_ARGS[scenario]);
  const browser = await launch({ askPermission: ASKS_PERMISSION.has(scenario) });
  try {
    const result = await run(browser);
    writeFileSync(out, JSON.stringify(result, null, 2));
  } finally {
    await browser.close();
  }
}

main()
  .catch((e) => { log(e.stack || String(e)); process.exitCode = 1; })
  .finally(() => { for (const c of children) if (c.exitCode === null) c.kill('SIGTERM'); });
