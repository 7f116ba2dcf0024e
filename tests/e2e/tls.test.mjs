// HTTPS and wss:// served by the binary itself: a certificate made now
// (openssl), the server started in a scratch folder (no --web-dir: the pages
// compiled into the binary), and two Chromium players who load the demo over
// https://, connect over wss:// and open a DataChannel; the dashboard, also
// over https://, sees them. Chromium runs with --ignore-certificate-errors
// (the certificate is self-signed).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import {
  OUT_DIR, REPO, WAIT_MS, enterLobby, openPage, shot, waitAttr, waitPeersOpen, waitStat,
} from './harness.mjs';

let dir;
let child;
let log = '';
let url;
let browser;

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'rendezvous-e2e-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
    '-nodes', '-keyout', 'key.pem', '-out', 'cert.pem', '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { cwd: dir, stdio: 'ignore' });
  const bin = process.env.RENDEZVOUS_BIN || path.join(REPO, 'target', 'debug', 'rendezvous');
  const env = { ...process.env };
  delete env.RENDEZVOUS_WEB_DIR;
  child = spawn(bin, ['--listen', '127.0.0.1:0', '--tls-cert', 'cert.pem', '--tls-key', 'key.pem'],
    { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => { log += chunk; });
  child.stdout.setEncoding('utf8');
  url = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no address within ${WAIT_MS} ms: ${out} ${log}`)), WAIT_MS);
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const match = out.match(/listening on (https:\/\/127\.0\.0\.1:\d+)/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited early (code ${code}): ${out} ${log}`));
    });
  });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-features=WebRtcHideLocalIpsWithMdns', '--ignore-certificate-errors'],
  });
});

after(async () => {
  await browser?.close().catch(() => {});
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
  writeFileSync(path.join(OUT_DIR, 'tls-server.log'), log);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('the demo over https:// plays peer to peer through wss://', { timeout: 120_000 }, async () => {
  const dash = await openPage(browser, `${url}/dashboard`);
  const ann = await openPage(browser, `${url}/`);
  const bob = await openPage(browser, `${url}/`);
  for (const { page } of [ann, bob]) {
    await enterLobby(page, page === ann.page ? 'Ann' : 'Bob', 2);
    await page.click('#find-match');
  }
  for (const { page } of [ann, bob]) {
    await waitAttr(page, '#room-status', 'data-status', 'active');
    await waitPeersOpen(page, 1);
    const where = await page.evaluate(() => ({
      page: location.protocol,
      socket: window.__rendezvous.client._ws && window.__rendezvous.client._ws.url,
    }));
    assert.equal(where.page, 'https:');
    assert.match(where.socket, /^wss:\/\/127\.0\.0\.1:\d+\/ws\?/);
  }
  await waitStat(dash.page, 'total_players', '==', 2);
  await shot(ann.page, 'tls-ann-playing');
  for (const p of [ann, bob, dash]) assert.deepEqual(p.errors, []);
});
