// A 3-player match: a full mesh (each later joiner offers to every earlier
// one), the shared tap race and a chat broadcast over the DataChannels, and a
// peer torn down when its player leaves.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  enterLobby, launchBrowser, openPage, shot, startServer, waitAttr, waitCount, waitPeersOpen, waitText,
} from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer('mesh3');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

test('three players form a full mesh and share a tap race', { timeout: 180_000 }, async () => {
  const viewport = { width: 900, height: 900 };
  const names = ['Gus', 'Hal', 'Ivy'];
  const players = [];
  for (const name of names) {
    const p = await openPage(browser, `${server.url}/`, { viewport });
    await enterLobby(p.page, name, 3);
    await p.page.click('#find-match');
    await waitCount(p.page, '#players li', players.length + 1);
    players.push(p);
  }
  for (const { page } of players) {
    await waitAttr(page, '#room-status', 'data-status', 'active');
    const listed = await page.$$eval('#players li .pname', (els) => els.map((e) => e.textContent));
    assert.deepEqual(listed, names);
    await waitPeersOpen(page, 2);
    assert.equal(await page.isVisible('#tap-race'), true, 'more than 2 players play the tap race');
    assert.equal(await page.isVisible('#ttt'), false);
  }

  // Offers flow from later to earlier joiners only.
  const ids = [];
  for (const { page } of players) ids.push(await page.evaluate(() => window.__rendezvous.client.playerId));
  for (const [i, { page }] of players.entries()) {
    const offersOut = await page.evaluate(() => window.__rendezvous.signals
      .filter((s) => s.direction === 'out' && s.type === 'offer').map((s) => s.to));
    assert.deepEqual([...new Set(offersOut)].sort(), ids.slice(0, i).sort(), `${names[i]} offered to earlier players only`);
  }

  // Taps: Gus 3, Hal 2, Ivy 1. Every page converges to the same tallies.
  const taps = [3, 2, 1];
  for (const [i, { page }] of players.entries()) {
    for (let k = 0; k < taps[i]; k += 1) await page.click('#tap');
  }
  for (const { page } of players) {
    await page.locator('#tap-total', { hasText: /^6$/ }).waitFor();
    for (const [i, id] of ids.entries()) {
      await waitAttr(page, `#tallies li[data-player-id="${id}"]`, 'data-count', String(taps[i]));
    }
  }
  await shot(players[2].page, 'd1-ivy-tap-race');

  // A chat line from Hal reaches both others.
  await players[1].page.fill('#p2p-chat-input', 'three is a crowd');
  await players[1].page.click('#p2p-chat-send');
  await waitText(players[0].page, '#p2p-chat-log .msg:not(.mine):not(.system)', 'three is a crowd');
  await waitText(players[2].page, '#p2p-chat-log .msg:not(.mine):not(.system)', 'three is a crowd');

  // Ivy leaves: the others drop her peer and keep theirs.
  await players[2].page.click('#leave-room');
  for (const { page } of players.slice(0, 2)) {
    await waitCount(page, '#players li', 2);
    await waitCount(page, '#peer-state li', 1);
    await waitPeersOpen(page, 1);
  }
  await shot(players[0].page, 'd2-gus-after-ivy-left');

  for (const p of players) {
    assert.deepEqual(p.errors, []);
    await p.context.close();
  }
});
