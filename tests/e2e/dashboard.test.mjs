// (c) The dashboard shows the lobby live: counts go up as players join rooms
// and down as they leave and close their pages; the open-room list follows.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DESKTOP, PHONE, WAIT_MS, enterLobby, launchBrowser, openPage, shot, startServer,
  waitAttr, waitCount, waitPeersOpen, waitStat,
} from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer('dashboard');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

const ROOM_ROWS = '#rooms-table tbody tr[data-room-id]';
const ACTIVE_ROWS = '#active-rooms-table tbody tr[data-room-id]';

test('the dashboard follows players joining and leaving rooms', { timeout: 180_000 }, async () => {
  const dash = await openPage(browser, `${server.url}/dashboard`, { viewport: DESKTOP });
  await waitAttr(dash.page, '#conn-status', 'data-state', 'online');
  // Every stats field of the protocol has its element.
  for (const key of ['total_rooms', 'waiting_rooms', 'active_rooms', 'finished_rooms', 'total_players',
    'connections', 'players_waiting', 'matches_started', 'signals_relayed', 'uptime_s']) {
    assert.equal(await dash.page.locator(`#stat-${key}`).count(), 1, `#stat-${key} exists`);
  }
  await waitStat(dash.page, 'connections', '==', 1); // the dashboard itself
  await waitStat(dash.page, 'total_players', '==', 0);
  await waitStat(dash.page, 'total_rooms', '==', 0);
  // The uptime is the server's and it moves.
  const up = await waitStat(dash.page, 'uptime_s', '>=', 0);
  await waitStat(dash.page, 'uptime_s', '>', up);
  await waitCount(dash.page, ROOM_ROWS, 0);
  await shot(dash.page, 'c1-dashboard-empty');

  // Eve looks for a 2-player match: a waiting room with one player appears.
  const eve = await openPage(browser, `${server.url}/`, { viewport: DESKTOP });
  await enterLobby(eve.page, 'Eve', 2);
  await eve.page.click('#find-match');
  await waitAttr(eve.page, '#room-status', 'data-status', 'waiting');
  await waitStat(dash.page, 'connections', '==', 2);
  await waitStat(dash.page, 'total_players', '==', 1);
  await waitStat(dash.page, 'players_waiting', '==', 1);
  await waitStat(dash.page, 'waiting_rooms', '==', 1);
  await waitStat(dash.page, 'total_rooms', '==', 1);
  await waitCount(dash.page, ROOM_ROWS, 1);
  await waitAttr(dash.page, ROOM_ROWS, 'data-players', '1');
  const eveRoom = await eve.page.evaluate(() => window.__rendezvous.client.room.room_id);
  await waitAttr(dash.page, ROOM_ROWS, 'data-room-id', eveRoom);
  await shot(dash.page, 'c2-dashboard-one-waiting');

  // Finn joins: the room fills, starts, leaves the open list and counts as active.
  const finn = await openPage(browser, `${server.url}/`, { viewport: PHONE });
  await enterLobby(finn.page, 'Finn', 2);
  await finn.page.click('#find-match');
  await waitAttr(finn.page, '#room-status', 'data-status', 'active');
  await waitStat(dash.page, 'total_players', '==', 2);
  await waitStat(dash.page, 'active_rooms', '==', 1);
  await waitStat(dash.page, 'waiting_rooms', '==', 0);
  await waitStat(dash.page, 'players_waiting', '==', 0);
  await waitStat(dash.page, 'matches_started', '==', 1);
  await waitStat(dash.page, 'connections', '==', 3);
  await waitCount(dash.page, ROOM_ROWS, 0);
  await waitCount(dash.page, ACTIVE_ROWS, 1);

  // Their browsers negotiate through the server: relayed signals are counted.
  await waitPeersOpen(eve.page, 1);
  await waitPeersOpen(finn.page, 1);
  const relayed = await waitStat(dash.page, 'signals_relayed', '>=', 2); // at least an offer and an answer
  assert.ok(relayed >= 2);
  // The rate is computed from the relayed count between two samples: while
  // the browsers negotiated, some sample saw signals go through.
  await dash.page.waitForFunction(() => window.__dashboard.samples.some((s) => s.sps > 0), null, { timeout: WAIT_MS });
  await shot(dash.page, 'c3-dashboard-one-active');

  // Both leave: the seats are given up.
  await eve.page.click('#leave-room');
  await waitStat(dash.page, 'total_players', '==', 1);
  await finn.page.click('#leave-room');
  await waitStat(dash.page, 'total_players', '==', 0);
  await waitStat(dash.page, 'players_waiting', '==', 0);
  await waitCount(dash.page, ACTIVE_ROWS, 0);
  const stats = await (await fetch(`${server.url}/api/stats`)).json();
  assert.equal(stats.total_rooms, stats.waiting_rooms + stats.active_rooms + stats.finished_rooms);
  assert.equal(stats.active_rooms, 0, 'an emptied room is no longer active');

  // They close their pages: only the dashboard's own connection remains.
  await eve.context.close();
  await finn.context.close();
  await waitStat(dash.page, 'connections', '==', 1);
  await shot(dash.page, 'c4-dashboard-after-leaving');

  // The chart has been drawing samples; and the page fits a phone.
  const samples = await dash.page.evaluate(() => window.__dashboard.samples.length);
  assert.ok(samples >= 3, `the chart has samples (${samples})`);
  await dash.page.setViewportSize(PHONE);
  await dash.page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
  const overflow = await dash.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no horizontal scrolling at 360px (overflow ${overflow}px)`);
  await shot(dash.page, 'c5-dashboard-phone');

  assert.deepEqual(eve.errors, []);
  assert.deepEqual(finn.errors, []);
  assert.deepEqual(dash.errors, []);
});
