// Spectating: Ann and Bob find a match (the demo's rooms have 4 spectator
// places); on the dashboard their game is listed in progress with a
// Spectate link (a room without places gets none). Following it opens the
// demo as a spectator: the room's players and status, read-only, with a
// "Spectating" label; chat crosses between players and the spectator
// through the server; room events keep the page current until the game is
// over.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DESKTOP, PHONE, enterLobby, launchBrowser, openPage, shot, startServer,
  waitAttr, waitCount, waitPeersOpen, waitText,
} from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer('spectate');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

const ACTIVE_ROWS = '#active-rooms-table tbody tr[data-room-id]';
const WAITING_ROWS = '#rooms-table tbody tr[data-room-id]';
const lines = (page, log, text) => page.$$eval(`${log} .msg`, (els, t) => els.filter((e) => e.textContent.includes(t)).length, text);

test('a game in progress is watched from the dashboard, with chat both ways', { timeout: 180_000 }, async () => {
  const ann = await openPage(browser, `${server.url}/`, { viewport: DESKTOP });
  const bob = await openPage(browser, `${server.url}/`, { viewport: PHONE });
  await enterLobby(ann.page, 'Ann', 2);
  await ann.page.click('#find-match');
  await waitAttr(ann.page, '#room-status', 'data-status', 'waiting');
  await enterLobby(bob.page, 'Bob', 2);
  await bob.page.click('#find-match');
  for (const { page } of [ann, bob]) await waitAttr(page, '#room-status', 'data-status', 'active');
  await waitPeersOpen(ann.page, 1);
  await waitPeersOpen(bob.page, 1);
  const room = await ann.page.evaluate(() => window.__rendezvous.client.room);
  assert.equal(room.max_spectators, 4, 'Find match made a room with 4 spectator places');
  assert.equal(await bob.page.evaluate(() => window.__rendezvous.client.room.room_id), room.room_id);
  await waitText(ann.page, '#spectators', 'Up to 4 can watch');

  // The dashboard lists the game in progress, with a Spectate link.
  const watcher = await openPage(browser, `${server.url}/dashboard`, { viewport: DESKTOP });
  await waitAttr(watcher.page, '#conn-status', 'data-state', 'online');
  await waitCount(watcher.page, ACTIVE_ROWS, 1);
  await waitAttr(watcher.page, ACTIVE_ROWS, 'data-room-id', room.room_id);
  const row = `${ACTIVE_ROWS}[data-room-id="${room.room_id}"]`;
  assert.equal(await watcher.page.getAttribute(row, 'data-max-spectators'), '4');
  assert.equal(await watcher.page.getAttribute(row, 'data-spectators'), '0');

  // A waiting room without spectator places (made by the dashboard's own
  // connection) is listed without one.
  const bare = await watcher.page.evaluate(async () => (await window.__dashboard.client.createRoom({ maxPlayers: 2 })).room.room_id);
  await waitAttr(watcher.page, WAITING_ROWS, 'data-room-id', bare);
  assert.equal(await watcher.page.locator(`${WAITING_ROWS} a[data-testid="spectate"]`).count(), 0,
    'no Spectate link on a room without spectator places');
  await watcher.page.evaluate(() => window.__dashboard.client.leaveRoom());
  await waitCount(watcher.page, WAITING_ROWS, 0);
  await shot(watcher.page, 's1-dashboard-spectate-link');

  // Spectate: the demo joins the room as a spectator, read-only.
  await watcher.page.click(`${row} a[data-testid="spectate"]`);
  await watcher.page.waitForURL(`**/?spectate=${room.room_id}`);
  await waitAttr(watcher.page, '#room-status', 'data-status', 'active');
  await watcher.page.locator('#spectating').waitFor({ state: 'visible' });
  await waitCount(watcher.page, '#players li', 2);
  assert.deepEqual(await watcher.page.$$eval('#players li .pname', (els) => els.map((e) => e.textContent)), ['Ann', 'Bob']);
  assert.equal(await watcher.page.evaluate(() => window.__rendezvous.client.room.room_id), room.room_id);
  assert.equal(await watcher.page.evaluate(() => window.__rendezvous.client.isSpectator), true);
  assert.equal(await watcher.page.isVisible('#watch'), true, 'the room chat is shown');
  assert.equal(await watcher.page.isVisible('#game'), false, 'no board to play on');
  assert.equal(await watcher.page.isVisible('#start-game'), false);
  assert.equal(await watcher.page.locator('#players .kick').count(), 0);
  assert.equal(await watcher.page.textContent('#leave-room'), 'Stop watching');
  assert.equal(await watcher.page.evaluate(() => window.__rendezvous.mesh), null, 'a spectator opens no peer connection');
  // The players see their spectator; so does the HTTP API.
  for (const { page } of [ann, bob]) {
    await waitText(page, '#spectators', 'Watching (1 / 4)');
  }
  const shown = await (await fetch(`${server.url}/api/rooms/${room.room_id}`)).json();
  assert.deepEqual((shown.spectators ?? []).length, 1, 'GET /api/rooms/{id} shows one spectator');
  await shot(watcher.page, 's2-spectating');

  // Ann chats in the game: Bob gets it peer to peer (once), the spectator
  // through the server.
  await ann.page.fill('#p2p-chat-input', 'good luck Bob');
  await ann.page.click('#p2p-chat-send');
  await waitText(watcher.page, '#room-chat-log .msg', 'good luck Bob');
  assert.equal(await watcher.page.textContent('#room-chat-log .msg .who'), 'Ann');
  await waitText(bob.page, '#p2p-chat-log .msg:not(.mine):not(.system)', 'good luck Bob');
  // The spectator's copy went through the server; Bob had his over the DataChannel already.
  await waitText(watcher.page, '#room-chat-log .msg', 'good luck Bob');

  // The spectator cheers: both players see it, marked as a spectator's.
  await watcher.page.fill('#room-chat-input', 'go Bob!');
  await watcher.page.click('#room-chat-send');
  await waitText(watcher.page, '#room-chat-log .msg.mine', 'go Bob!');
  for (const { page } of [ann, bob]) {
    await waitText(page, '#p2p-chat-log .msg.watcher', 'go Bob!');
    assert.match(await page.textContent('#p2p-chat-log .msg.watcher .who'), /\(watching\)/);
  }
  // Bob saw Ann's line once: a copy the server sent him too would have come
  // before the cheer, which the server relayed after it on the same socket
  // (the watcher cheered after seeing Ann's line). No waiting a while.
  assert.equal(await lines(bob.page, '#p2p-chat-log', 'good luck Bob'), 1, 'Bob sees the line once');
  await shot(ann.page, 's3-ann-sees-spectator-chat');

  // Room events keep the spectator current: Bob leaves, then Ann; the game is over.
  await bob.page.click('#leave-room');
  await waitCount(watcher.page, '#players li', 1);
  assert.deepEqual(await watcher.page.$$eval('#players li .pname', (els) => els.map((e) => e.textContent)), ['Ann']);
  await ann.page.click('#leave-room');
  await watcher.page.locator('#lobby-view').waitFor({ state: 'visible' });
  assert.match(await watcher.page.textContent('#lobby-error'), /over/i);
  assert.equal(new URL(watcher.page.url()).search, '', 'no longer spectating: a reload shows the lobby');
  assert.equal(await watcher.page.evaluate(() => window.__rendezvous.client.room), null);
  await shot(watcher.page, 's4-game-over');

  for (const p of [ann, bob, watcher]) assert.deepEqual(p.errors, []);
  for (const p of [ann, bob, watcher]) await p.context.close();
});

test('a room whose places are taken, or that is gone, cannot be watched, and says so', { timeout: 90_000 }, async () => {
  // A host (a plain client on the server's origin) makes a room with one spectator place.
  const host = await openPage(browser, `${server.url}/dashboard`, { viewport: DESKTOP });
  const roomId = await host.page.evaluate(async () => {
    const { connect } = await import('/rendezvous.js');
    window.host = await connect('/ws', { name: 'Host' });
    return (await window.host.createRoom({ maxPlayers: 2, maxSpectators: 1 })).room.room_id;
  });
  const row = `${WAITING_ROWS}[data-room-id="${roomId}"]`;
  await waitCount(host.page, `${row} a[data-testid="spectate"]`, 1);

  // The first spectator takes the place; the dashboard then says full.
  const first = await openPage(browser, `${server.url}/?spectate=${roomId}`, { viewport: PHONE });
  await first.page.locator('#spectating').waitFor({ state: 'visible' });
  await waitAttr(first.page, '#room-status', 'data-status', 'waiting');
  await waitText(first.page, '#spectators', 'Watching (1 / 1)');
  await waitAttr(host.page, row, 'data-spectators', '1');
  assert.equal(await host.page.locator(`${row} a[data-testid="spectate"]`).count(), 0);
  assert.equal((await host.page.textContent(`${row} td.watch`)).trim(), 'full');

  // A second one is told there is no place left.
  const second = await openPage(browser, `${server.url}/?spectate=${roomId}`, { viewport: PHONE });
  await second.page.locator('#lobby-error').waitFor({ state: 'visible' });
  assert.match(await second.page.textContent('#lobby-error'), /no spectator place/i);
  assert.equal(await second.page.isVisible('#room-view'), false);

  // The first stops watching: the place is free again.
  await first.page.click('#leave-room');
  await first.page.locator('#lobby-view').waitFor({ state: 'visible' });
  await waitCount(host.page, `${row} a[data-testid="spectate"]`, 1);

  // A room that is gone.
  const gone = await openPage(browser, `${server.url}/?spectate=00000000-0000-4000-8000-000000000000`, { viewport: PHONE });
  await gone.page.locator('#lobby-error').waitFor({ state: 'visible' });
  assert.match(await gone.page.textContent('#lobby-error'), /game is over/i);
  assert.equal(await gone.page.isVisible('#room-view'), false);

  for (const p of [host, first, second, gone]) assert.deepEqual(p.errors, []);
  await host.page.evaluate(() => window.host.close());
  for (const p of [host, first, second, gone]) await p.context.close();
});
