// Reconnection (PROTOCOL.md "Reconnection"): a dropped signaling socket is
// resumed automatically with the same player id and seat while the
// peer-to-peer link carries on; a reloaded page takes its seat back with the
// resume token kept in sessionStorage and reconnects peer to peer.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DESKTOP, PHONE, WAIT_MS, enterLobby, launchBrowser, openPage, shot, startServer,
  waitAttr, waitCount, waitPeersOpen, waitText,
} from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer('resume', ['--reconnect-grace-ms', '15000']);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

/** Two players matched and connected peer to peer. */
async function matchedPair(a, b) {
  const first = await openPage(browser, `${server.url}/`, { viewport: DESKTOP });
  const second = await openPage(browser, `${server.url}/`, { viewport: PHONE });
  await enterLobby(first.page, a, 2);
  await first.page.click('#find-match');
  await waitAttr(first.page, '#room-status', 'data-status', 'waiting');
  await enterLobby(second.page, b, 2);
  await second.page.click('#find-match');
  for (const { page } of [first, second]) {
    await waitAttr(page, '#room-status', 'data-status', 'active');
    await waitPeersOpen(page, 1);
  }
  return [first, second];
}

/** Records the types of the server messages a page's client receives from now on. */
async function recordEvents(page) {
  await page.evaluate(() => {
    window.__events = [];
    window.__rendezvous.client.on('*', (m) => window.__events.push(m.type));
    for (const e of ['close', 'reconnecting', 'resumed', 'session_lost']) {
      window.__rendezvous.client.on(e, () => window.__events.push(`@${e}`));
    }
  });
}

async function waitEvent(page, type) {
  await page.waitForFunction((t) => window.__events.includes(t), type, { timeout: WAIT_MS }).catch(async (err) => {
    const seen = await page.evaluate(() => window.__events);
    throw new Error(`no ${type} event; saw ${JSON.stringify(seen)}: ${err.message}`);
  });
}

test('a dropped signaling socket resumes the same seat; the DataChannel stays up', { timeout: 120_000 }, async () => {
  const [kim, lou] = await matchedPair('Kim', 'Lou');
  const louId = await lou.page.evaluate(() => window.__rendezvous.client.playerId);
  await recordEvents(kim.page);
  await recordEvents(lou.page);

  // Cut Lou's WebSocket (not a leave_room): the client reconnects by itself with resume=<token>.
  await lou.page.evaluate(() => window.__rendezvous.client._ws.close(4000, 'test drop'));
  await waitEvent(lou.page, '@reconnecting');
  await waitEvent(lou.page, '@resumed');
  await waitEvent(kim.page, 'player_disconnected');
  await waitEvent(kim.page, 'player_reconnected');
  await waitAttr(lou.page, '#conn-status', 'data-state', 'online');
  assert.equal(await lou.page.evaluate(() => window.__rendezvous.client.playerId), louId, 'same player id');
  assert.equal(await lou.page.evaluate(() => window.__rendezvous.client.welcome.resumed), true);
  assert.equal(await lou.page.evaluate(() => window.__rendezvous.client.room?.status), 'active');
  await waitAttr(kim.page, `#players li[data-player-id="${louId}"]`, 'data-connected', 'true');
  await waitCount(kim.page, '#players li', 2);

  // Peer to peer never depended on the server: same connection, still open, still chatting.
  await waitPeersOpen(kim.page, 1);
  await waitPeersOpen(lou.page, 1);
  await kim.page.fill('#p2p-chat-input', 'still here?');
  await kim.page.click('#p2p-chat-send');
  await waitText(lou.page, '#p2p-chat-log .msg:not(.mine):not(.system)', 'still here?');
  // The same connection, not a new one negotiated after the drop: no
  // offer or answer went through the server since (open DataChannels and a
  // chat would pass with a fresh RTCPeerConnection too).
  for (const page of [kim.page, lou.page]) {
    const signals = await page.evaluate(() => window.__events.filter((t) => t === 'offer' || t === 'answer'));
    assert.deepEqual(signals, [], 'no renegotiation after a dropped signaling socket');
  }
  // And the server still answers Lou's requests.
  const pong = await lou.page.evaluate(() => window.__rendezvous.client.ping());
  assert.ok(pong.server_time);
  await shot(lou.page, 'e1-lou-after-socket-drop');

  assert.deepEqual(kim.errors, []);
  assert.deepEqual(lou.errors, []);
  await kim.context.close();
  await lou.context.close();
});

test('a reloaded page takes its seat back and reconnects peer to peer', { timeout: 120_000 }, async () => {
  const [max, nia] = await matchedPair('Max', 'Nia');
  const niaId = await nia.page.evaluate(() => window.__rendezvous.client.playerId);
  await recordEvents(max.page);

  // A move before the reload.
  await waitAttr(max.page, '#turn-indicator', 'data-my-turn', 'true');
  await max.page.click('#board [data-cell="4"]');
  await waitAttr(nia.page, '#board [data-cell="4"]', 'data-mark', 'X');

  await nia.page.reload();
  await waitEvent(max.page, 'player_disconnected');
  // Same tab, so the same sessionStorage: the page resumes with its saved token.
  await waitAttr(nia.page, '#room-status', 'data-status', 'active');
  assert.equal(await nia.page.evaluate(() => window.__rendezvous.client.playerId), niaId, 'same player id after reload');
  await waitEvent(max.page, 'player_reconnected');

  // A fresh RTCPeerConnection on Nia's side; Max's side notices and starts over too.
  await waitPeersOpen(nia.page, 1);
  await waitPeersOpen(max.page, 1);
  // Nia's new page learns the game so far from Max over the DataChannel, and plays on.
  await waitAttr(nia.page, '#board [data-cell="4"]', 'data-mark', 'X');
  await waitAttr(nia.page, '#turn-indicator', 'data-my-turn', 'true');
  await nia.page.click('#board [data-cell="0"]');
  await waitAttr(max.page, '#board [data-cell="0"]', 'data-mark', 'O');
  await shot(nia.page, 'e2-nia-after-reload');

  assert.deepEqual(max.errors, []);
  assert.deepEqual(nia.errors, []);
  await max.context.close();
  await nia.context.close();
});
