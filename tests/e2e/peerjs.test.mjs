// The real `peerjs` npm client (1.5.x, its browser bundle from node_modules)
// in two headless Chromium pages, pointed at Rendezvous with
// {host, port, path: '/peerjs'} and nothing else changed: one page takes a
// server-assigned id, the other picks its own, they open a DataConnection
// and pass messages both ways; a third page asking for a taken id gets
// PeerJS's 'unavailable-id'. Then the same across two cluster nodes on one
// redis-server. The pages are on the server's own origin, as an app
// using PeerJS would be.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchBrowser, startRedis, startServer, WAIT_MS } from './harness.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PEERJS = readFileSync(path.join(HERE, 'node_modules', 'peerjs', 'dist', 'peerjs.min.js'), 'utf8');

let browser;
const stops = [];

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  for (const stop of stops.reverse()) await stop();
});

/** A page on `serverUrl`'s origin with the PeerJS bundle loaded. */
async function peerPage(serverUrl) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const errors = [];
  page.on('pageerror', (err) => errors.push(String(err)));
  // Any page of the server's origin will do: its small JSON at /peerjs.
  // (page.route would keep Chromium's WebSockets from reaching the server.)
  await page.goto(`${serverUrl}/peerjs`);
  await page.addScriptTag({ content: PEERJS });
  return { page, errors, close: () => context.close() };
}

/** `new Peer(id, {host, port, path: '/peerjs'})`; resolves with the open id or rejects with PeerJS's error type. */
function openPeer(page, id) {
  return page.evaluate((wanted) => new Promise((resolve, reject) => {
    const opts = {
      host: location.hostname, port: Number(location.port), path: '/peerjs', key: 'peerjs',
      config: { iceServers: [] }, debug: 1,
    };
    const peer = wanted ? new Peer(wanted, opts) : new Peer(opts);
    window.peer = peer;
    window.got = [];
    peer.on('connection', (conn) => {
      conn.on('data', (d) => {
        window.got.push(d);
        conn.send(`pong:${d}`);
      });
    });
    peer.on('open', resolve);
    peer.on('error', (e) => reject(new Error(e.type)));
  }), id);
}

/** Connects `page`'s peer to `target` and sends `text`; resolves with the reply. */
function connectAndSend(page, target, text) {
  return page.evaluate(([to, msg]) => new Promise((resolve, reject) => {
    const conn = window.peer.connect(to, { reliable: true });
    conn.on('open', () => conn.send(msg));
    conn.on('data', resolve);
    conn.on('error', (e) => reject(new Error(String(e))));
    window.peer.on('error', (e) => reject(new Error(e.type)));
  }), [target, text]);
}

async function exchange(urlA, urlB, label) {
  const a = await peerPage(urlA);
  const b = await peerPage(urlB);
  try {
    const idA = await openPeer(a.page);
    assert.match(idA, /^[0-9a-f-]{36}$/, 'A got an id from GET /peerjs/peerjs/id');
    const idB = await openPeer(b.page, `bob-${label}`);
    assert.equal(idB, `bob-${label}`);
    const reply = await connectAndSend(b.page, idA, `hello from ${label}`);
    assert.equal(reply, `pong:hello from ${label}`);
    assert.deepEqual(await a.page.evaluate(() => window.got), [`hello from ${label}`]);

    // An id in use: the PeerJS client reports 'unavailable-id'.
    const c = await peerPage(urlA);
    try {
      await assert.rejects(openPeer(c.page, `bob-${label}`), /unavailable-id/);
    } finally {
      await c.close();
    }
    assert.deepEqual([...a.errors, ...b.errors], []);
  } finally {
    await a.close();
    await b.close();
  }
}

test('two PeerJS pages open a DataConnection through one server', { timeout: 120_000 }, async () => {
  const server = await startServer('peerjs-single');
  stops.push(() => server.stop());
  await exchange(server.url, server.url, 'single');
  const stats = await (await fetch(`${server.url}/api/stats`)).json();
  assert.ok(stats.signals_relayed >= 2, `signals_relayed ${stats.signals_relayed}`);
});

test('PeerJS pages on two cluster nodes find each other', { timeout: 120_000 }, async () => {
  const redis = await startRedis();
  stops.push(() => redis.stop());
  const nodeA = await startServer('peerjs-node-a', ['--redis-url', redis.url, '--node-id', 'pj-a']);
  stops.push(() => nodeA.stop());
  const nodeB = await startServer('peerjs-node-b', ['--redis-url', redis.url, '--node-id', 'pj-b']);
  stops.push(() => nodeB.stop());
  await exchange(nodeA.url, nodeB.url, 'cluster');
});
