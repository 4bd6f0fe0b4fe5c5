// Browser test driver, run by tests/browser.rs inside a private network namespace:
// starts `meshcall serve`, headless Chromium pages and `meshcall join` members in one
// room, and writes what each of them received as JSON. The Rust test judges the numbers.
//
//   node run.mjs <scenario> <result.json>
// env: MESHCALL_BIN (the binary), ARTIFACTS (folder for screenshots)

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BIN = process.env.MESHCALL_BIN;
const ARTIFACTS = process.env.ARTIFACTS || 'artifacts';
const PORT = 8787;
const ROOM = 'browser-test';
const BASE = `http://127.0.0.1:${PORT}`;
const tmp = mkdtempSync(join(tmpdir(), 'meshcall-browser-'));
const children = [];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error('[driver]', ...a);

async function startServer() {
  const child = spawn(BIN, ['serve', '--bind', `127.0.0.1:${PORT}`], { stdio: ['ignore', 'inherit', 'inherit'] });
  children.push(child);
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${BASE}/healthz`)).ok) return;
    } catch { /* not up yet */ }
    await sleep(100);
  }
  throw new Error('server did not start');
}

/** Starts `meshcall join`; resolves its report when it exits. */
function headless(name, seconds, extra = []) {
  const report = join(tmp, `${name}.json`);
  const child = spawn(BIN, ['join', '--server', `ws://127.0.0.1:${PORT}`, '--room', ROOM, '--name', name,
    '--duration', String(seconds), '--report', report, ...extra], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, MESHCALL_ICE_IP: '127.0.0.1',
      RUST_LOG: process.env.RUST_LOG || 'warn,rtc_interceptor::registry=error,rtc_dtls=error,rtc_ice=error' },
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`meshcall join ${name} exited with ${code}`));
      resolve(JSON.parse(readFileSync(report, 'utf8')));
    });
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
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns',
      '--autoplay-policy=no-user-gesture-required'],
  });
}

/** Opens the room link in a fresh context and joins as `name`. */
async function browserMember(browser, name) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  await context.grantPermissions(['camera', 'microphone']);
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() !== 'debug') log(`${name} console.${m.type()}:`, m.text()); });
  page.on('pageerror', (e) => log(`${name} page error:`, e.message));
  await page.goto(`${BASE}/r/${ROOM}`);
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

const scenarios = {
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
    return { prefilled, refusal, selfBefore, after, chat, status };
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
};

async function main() {
  const [scenario, out] = process.argv.slice(2);
  const run = scenarios[scenario];
  if (!run) throw new Error(`unknown scenario ${scenario}`);
  await startServer();
  const browser = await launch();
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
