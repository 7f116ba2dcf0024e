// The allocation hook in the demo: the server runs with --allocator-url
// pointing at a tiny allocator started here (node:http on 127.0.0.1:0, which
// checks the request's signature). Two players find a match; both pages show
// the dedicated server the allocator answered. When the allocator refuses,
// both pages say the game goes peer to peer, and it does (DataChannel open).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import {
  DESKTOP, PHONE, enterLobby, launchBrowser, openPage, shot, startServer,
  waitAttr, waitPeersOpen, waitText,
} from './harness.mjs';

const SECRET = 'e2e-allocator-secret';
const ALLOCATION = { address: '127.0.0.1:7777', token: 't-1' };

let server;
let browser;
let allocator;
/** What the allocator answers next: 200 with ALLOCATION, or 500. */
let answerStatus = 200;
/** Every request the allocator got: { event, signatureOk, body }. */
const asked = [];

function verify(header, raw) {
  const parts = Object.fromEntries(String(header || '').split(',').map((p) => p.split('=')));
  if (!parts.t || !parts.v1) return false;
  const want = createHmac('sha256', SECRET).update(`${parts.t}.${raw}`).digest();
  const got = Buffer.from(parts.v1, 'hex');
  return got.length === want.length && timingSafeEqual(got, want);
}

function startAllocator() {
  return new Promise((resolve) => {
    const srv = http.createServer((req, res) => {
      let raw = '';
      req.setEncoding('utf8');
      req.on('data', (chunk) => { raw += chunk; });
      req.on('end', () => {
        let body = null;
        try { body = JSON.parse(raw); } catch { /* recorded as null */ }
        asked.push({
          event: req.headers['rendezvous-event'],
          signatureOk: verify(req.headers['rendezvous-signature'], raw),
          body,
        });
        res.writeHead(answerStatus, { 'content-type': 'application/json' });
        res.end(answerStatus === 200 ? JSON.stringify(ALLOCATION) : '{"error":"no capacity"}');
      });
    });
    srv.listen(0, '127.0.0.1', () => resolve(srv));
  });
}

before(async () => {
  allocator = await startAllocator();
  const url = `http://127.0.0.1:${allocator.address().port}/allocate`;
  server = await startServer('allocation', ['--allocator-url', url, '--webhook-secret', SECRET]);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
  await new Promise((resolve) => (allocator ? allocator.close(resolve) : resolve()));
});

/** Two fresh players find a match of 2; returns both pages, room active. */
async function match(prefix) {
  const ann = await openPage(browser, `${server.url}/`, { viewport: DESKTOP });
  const bob = await openPage(browser, `${server.url}/`, { viewport: PHONE });
  await enterLobby(ann.page, `${prefix}Ann`, 2);
  await ann.page.click('#find-match');
  await waitAttr(ann.page, '#room-status', 'data-status', 'waiting');
  await enterLobby(bob.page, `${prefix}Bob`, 2);
  await bob.page.click('#find-match');
  for (const { page } of [ann, bob]) await waitAttr(page, '#room-status', 'data-status', 'active');
  return [ann, bob];
}

test('the allocator\'s dedicated server shows on both players\' pages', { timeout: 180_000 }, async () => {
  answerStatus = 200;
  const before = asked.length;
  const [ann, bob] = await match('');
  for (const { page } of [ann, bob]) {
    await waitAttr(page, '#allocation', 'data-state', 'dedicated');
    await waitText(page, '#allocation', 'Dedicated server: 127.0.0.1:7777');
    assert.equal(await page.isVisible('#allocation'), true);
  }
  await shot(ann.page, 'allocation-1-ann-dedicated');
  await shot(bob.page, 'allocation-1-bob-dedicated-phone');

  const mine = asked.slice(before);
  assert.equal(mine.length, 1, 'one allocation request for the room');
  assert.equal(mine[0].event, 'match.allocate');
  assert.equal(mine[0].signatureOk, true, 'signed with the shared secret');
  const roomId = await ann.page.evaluate(() => window.__rendezvous.client.room.room_id);
  assert.equal(mine[0].body.data.room.room_id, roomId);
  assert.deepEqual(mine[0].body.data.room.players.map((p) => p.name), ['Ann', 'Bob']);

  // Leaving the room clears the panel.
  await ann.page.click('#leave-room');
  await waitAttr(ann.page, '#allocation', 'data-state', '');
  assert.equal(await ann.page.isVisible('#allocation'), false);
  assert.deepEqual(ann.errors, []);
  assert.deepEqual(bob.errors, []);
  await ann.context.close();
  await bob.context.close();
});

test('an allocator that refuses: the pages say peer to peer, and the game goes peer to peer', { timeout: 180_000 }, async () => {
  answerStatus = 500;
  const [ann, bob] = await match('p2p-');
  for (const { page } of [ann, bob]) {
    await waitAttr(page, '#allocation', 'data-state', 'p2p');
    await waitText(page, '#allocation', 'No dedicated server (');
    await waitText(page, '#allocation', '): peer to peer');
  }
  await waitPeersOpen(ann.page, 1);
  await waitPeersOpen(bob.page, 1);
  await shot(ann.page, 'allocation-2-ann-peer-to-peer');
  assert.equal(asked.at(-1).signatureOk, true);
  assert.deepEqual(ann.errors, []);
  assert.deepEqual(bob.errors, []);
  await ann.context.close();
  await bob.context.close();
});
