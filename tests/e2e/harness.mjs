// Shared helpers of the end-to-end tests: start the real server, launch
// Debian's headless Chromium through playwright-core, open player pages, wait
// for conditions and save screenshots. Traffic goes to 127.0.0.1 only.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const OUT_DIR = path.join(REPO, 'test-output', 'e2e');
export const WAIT_MS = 20_000;
export const DESKTOP = { width: 1280, height: 860 };
export const PHONE = { width: 360, height: 780 };

mkdirSync(OUT_DIR, { recursive: true });

/**
 * Starts the real Rendezvous server on an ephemeral port of 127.0.0.1 and
 * resolves once it printed `listening on http://127.0.0.1:PORT`.
 * @param {string} label names the log file written to test-output/e2e/
 */
export async function startServer(label, extraArgs = []) {
  const bin = process.env.RENDEZVOUS_BIN || path.join(REPO, 'target', 'debug', 'rendezvous');
  if (!existsSync(bin)) {
    throw new Error(`server binary not found at ${bin}: run \`cargo build\` or set RENDEZVOUS_BIN`);
  }
  const args = ['--listen', '127.0.0.1:0', '--web-dir', path.join(REPO, 'web'), ...extraArgs];
  const child = spawn(bin, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' },
  });
  let log = '';
  const append = (chunk) => {
    log += chunk;
    if (log.length > 2_000_000) log = log.slice(-1_000_000);
  };
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', append);
  child.stdout.setEncoding('utf8');

  const url = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      reject(new Error(`server did not print its address within ${WAIT_MS} ms\nstdout: ${out}\nstderr: ${log}`));
    }, WAIT_MS);
    child.stdout.on('data', (chunk) => {
      append(chunk);
      out += chunk;
      const match = out.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`server exited early (code ${code}, signal ${signal})\nstdout: ${out}\nstderr: ${log}`));
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });

  return {
    url,
    child,
    log: () => log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      writeFileSync(path.join(OUT_DIR, `${label}-server.log`), log);
    },
  };
}

/** Launches Debian's headless Chromium (never a downloaded browser). */
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-features=WebRtcHideLocalIpsWithMdns'],
  });
}

/**
 * Opens a page in its own browser context (its own storage: a separate
 * "person"), collecting uncaught page errors so tests can assert there were none.
 */
export async function openPage(browser, url, { viewport = DESKTOP } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const errors = [];
  page.on('pageerror', (err) => errors.push(String(err && err.stack || err)));
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
  });
  await page.goto(url);
  return { context, page, errors };
}

/** Saves a full-page screenshot as test-output/e2e/<name>.png. */
export async function shot(page, name) {
  await page.screenshot({ path: path.join(OUT_DIR, `${name}.png`), fullPage: true });
}

/** Waits until an attribute of the first element matching `selector` equals `value`. */
export async function waitAttr(page, selector, attr, value) {
  await page.waitForFunction(
    ([s, a, v]) => document.querySelector(s)?.getAttribute(a) === v,
    [selector, attr, String(value)],
    { timeout: WAIT_MS },
  ).catch(async (err) => {
    const actual = await page.evaluate(([s, a]) => document.querySelector(s)?.getAttribute(a), [selector, attr]);
    throw new Error(`${selector}[${attr}] never became ${JSON.stringify(String(value))} (last: ${JSON.stringify(actual)}): ${err.message}`);
  });
}

/** Waits until `count` elements match `selector`. */
export async function waitCount(page, selector, count) {
  await page.waitForFunction(
    ([s, n]) => document.querySelectorAll(s).length === n,
    [selector, count],
    { timeout: WAIT_MS },
  ).catch(async (err) => {
    const actual = await page.evaluate((s) => document.querySelectorAll(s).length, selector);
    throw new Error(`expected ${count} × ${selector}, last saw ${actual}: ${err.message}`);
  });
}

/** Waits until some element matching `selector` has text containing `text`. */
export async function waitText(page, selector, text) {
  await page.locator(selector, { hasText: text }).first().waitFor({ timeout: WAIT_MS });
}

/**
 * Waits until the dashboard stat `key` (data-value of #stat-<key>) satisfies
 * `op` against `value` ('==', '>=', '>'), and returns the value seen.
 */
export async function waitStat(page, key, op, value) {
  const handle = await page.waitForFunction(
    ([k, o, v]) => {
      const raw = document.getElementById(`stat-${k}`)?.dataset.value;
      if (raw === undefined || raw === '') return false;
      const n = Number(raw);
      const ok = o === '==' ? n === v : o === '>=' ? n >= v : n > v;
      return ok ? { n } : false; // an object: 0 is a value, not a failure
    },
    [key, op, value],
    { timeout: WAIT_MS },
  ).catch(async (err) => {
    const actual = await page.evaluate((k) => document.getElementById(`stat-${k}`)?.dataset.value, key);
    throw new Error(`stat ${key} never became ${op} ${value} (last: ${actual}): ${err.message}`);
  });
  return (await handle.jsonValue()).n;
}

/** In the demo page: enter a name and choose the number of players. */
export async function enterLobby(page, name, players = 2) {
  await page.fill('#name', name);
  await page.selectOption('#players-select', String(players));
}

/** Waits until the demo page shows an open DataChannel to every other room member. */
export async function waitPeersOpen(page, peers) {
  await waitCount(page, '#peer-state li[data-pc-state="connected"][data-dc-state="open"]', peers);
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Starts Debian's redis-server without persistence; resolves once it accepts connections. */
export async function startRedis() {
  const bin = '/usr/bin/redis-server';
  if (!existsSync(bin)) throw new Error('redis-server is missing: scripts/test installs it');
  const port = await freePort();
  const child = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  });
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => { s.write('PING\r\n'); });
      s.once('data', (d) => { s.destroy(); resolve(String(d).startsWith('+PONG')); });
      s.once('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > deadline) throw new Error('redis-server did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `redis://127.0.0.1:${port}/`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}
