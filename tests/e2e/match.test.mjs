// (a) Two people click "Find match" (2 players), land in the same room, the
// room goes active, their browsers connect peer to peer, and chat and
// tic-tac-toe moves travel over the DataChannel. Also captures the real
// Chromium SDP and candidates seen, as fixtures.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  DESKTOP, OUT_DIR, PHONE, enterLobby, launchBrowser, openPage, shot, startServer,
  waitAttr, waitCount, waitPeersOpen, waitText,
} from './harness.mjs';

let server;
let browser;
/** Filled by the first test: signal errors and signals received by each page. */
const signalReport = { errors: null, received: null };

before(async () => {
  server = await startServer('match');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

test('two players find a match, connect peer to peer, chat and play tic-tac-toe', { timeout: 180_000 }, async () => {
  const ann = await openPage(browser, `${server.url}/`, { viewport: DESKTOP });
  const bob = await openPage(browser, `${server.url}/`, { viewport: PHONE });
  await shot(ann.page, 'a1-lobby-desktop');
  await shot(bob.page, 'a1-lobby-phone');

  // Ann finds a match first: she gets a fresh waiting room of 2 and is its host.
  await enterLobby(ann.page, 'Ann', 2);
  await ann.page.click('#find-match');
  await waitAttr(ann.page, '#room-status', 'data-status', 'waiting');
  await waitCount(ann.page, '#players li', 1);
  await waitAttr(ann.page, '#players li', 'data-host', 'true');
  await shot(ann.page, 'a2-ann-waiting');

  // Bob finds a match: he takes the free seat, the room fills and starts by itself.
  await enterLobby(bob.page, 'Bob', 2);
  await bob.page.click('#find-match');
  for (const { page } of [ann, bob]) {
    await waitAttr(page, '#room-status', 'data-status', 'active');
    await waitCount(page, '#players li', 2);
    const names = await page.$$eval('#players li .pname', (els) => els.map((e) => e.textContent));
    assert.deepEqual(names, ['Ann', 'Bob'], 'players are listed in join order');
    const hosts = await page.$$eval('#players li', (els) => els.map((e) => e.dataset.host));
    assert.deepEqual(hosts, ['true', 'false'], 'the first to join hosts the room');
  }
  const annRoom = await ann.page.evaluate(() => window.__rendezvous.client.room.room_id);
  const bobRoom = await bob.page.evaluate(() => window.__rendezvous.client.room.room_id);
  assert.equal(annRoom, bobRoom, 'both players are in the same room');

  // The browsers connect directly: RTCPeerConnection connected, DataChannel open, on both sides.
  await waitPeersOpen(ann.page, 1);
  await waitPeersOpen(bob.page, 1);
  await shot(ann.page, 'a3-ann-connected');
  await shot(bob.page, 'a3-bob-connected-phone');

  // Chat over the DataChannel, both ways.
  await ann.page.fill('#p2p-chat-input', 'hello from Ann');
  await ann.page.click('#p2p-chat-send');
  await waitText(bob.page, '#p2p-chat-log .msg:not(.mine):not(.system)', 'hello from Ann');
  await bob.page.fill('#p2p-chat-input', 'hi Ann, Bob here');
  await bob.page.click('#p2p-chat-send');
  await waitText(ann.page, '#p2p-chat-log .msg:not(.mine):not(.system)', 'hi Ann, Bob here');

  // Tic-tac-toe: Ann (first in join order) is X and starts.
  await waitAttr(ann.page, '#turn-indicator', 'data-my-turn', 'true');
  await waitAttr(bob.page, '#turn-indicator', 'data-my-turn', 'false');
  assert.equal(await ann.page.getAttribute('#turn-indicator', 'data-mark'), 'X');
  assert.equal(await bob.page.getAttribute('#turn-indicator', 'data-mark'), 'O');
  // Bob cannot play out of turn.
  assert.equal(await bob.page.isDisabled('#board [data-cell="0"]'), true);

  const moves = [[ann, 4, 'X'], [bob, 0, 'O'], [ann, 2, 'X'], [bob, 1, 'O'], [ann, 6, 'X']];
  for (const [player, cell, mark] of moves) {
    const other = player === ann ? bob : ann;
    await waitAttr(player.page, '#turn-indicator', 'data-my-turn', 'true');
    await player.page.click(`#board [data-cell="${cell}"]`);
    await waitAttr(other.page, `#board [data-cell="${cell}"]`, 'data-mark', mark);
    await waitAttr(player.page, `#board [data-cell="${cell}"]`, 'data-mark', mark);
    if (cell === 4) await shot(bob.page, 'a4-bob-sees-first-move-phone');
  }
  // X completes the 2-4-6 diagonal.
  await waitAttr(ann.page, '#turn-indicator', 'data-state', 'won');
  await waitAttr(bob.page, '#turn-indicator', 'data-state', 'lost');
  const annBoard = await ann.page.$$eval('#board .cell', (els) => els.map((e) => e.dataset.mark));
  const bobBoard = await bob.page.$$eval('#board .cell', (els) => els.map((e) => e.dataset.mark));
  assert.deepEqual(annBoard, ['O', 'O', 'X', '', 'X', '', 'X', '', '']);
  assert.deepEqual(bobBoard, annBoard, 'both boards agree');
  await shot(ann.page, 'a5-ann-wins');
  await shot(bob.page, 'a5-bob-loses-phone');

  // Signals: the later joiner (Bob) offered, the earlier (Ann) answered, candidates trickled.
  const annSignals = await ann.page.evaluate(() => window.__rendezvous.signals);
  const bobSignals = await bob.page.evaluate(() => window.__rendezvous.signals);
  const annId = await ann.page.evaluate(() => window.__rendezvous.client.playerId);
  const bobId = await bob.page.evaluate(() => window.__rendezvous.client.playerId);
  const offersToAnn = annSignals.filter((s) => s.direction === 'in' && s.type === 'offer');
  const answersToBob = bobSignals.filter((s) => s.direction === 'in' && s.type === 'answer');
  assert.ok(offersToAnn.length >= 1, 'Ann received an offer');
  assert.ok(offersToAnn.every((s) => s.from === bobId), 'the offer came from Bob, the later joiner');
  assert.ok(answersToBob.length >= 1 && answersToBob.every((s) => s.from === annId), 'Ann answered Bob');
  assert.equal(annSignals.filter((s) => s.direction === 'out' && s.type === 'offer').length, 0,
    'the earlier joiner sent no offer');
  const candidatesIn = [...annSignals, ...bobSignals].filter((s) => s.direction === 'in' && s.type === 'ice_candidate');
  assert.ok(candidatesIn.length >= 1, 'ICE candidates were relayed');

  const userAgent = await ann.page.evaluate(() => navigator.userAgent);
  const fixture = {
    note: 'Real SDP and ICE candidate strings from headless Chromium, captured by tests/e2e/match.test.mjs',
    browser: browser.version(),
    userAgent,
    captured_at: new Date().toISOString(),
    offers: offersToAnn.map((s) => s.sdp),
    answers: answersToBob.map((s) => s.sdp),
    candidates: candidatesIn.map((s) => s.candidate),
    messages: {
      ann: annSignals.map(({ direction, type, from, to, sdp, candidate }) => ({ direction, type, from, to, sdp, candidate })),
      bob: bobSignals.map(({ direction, type, from, to, sdp, candidate }) => ({ direction, type, from, to, sdp, candidate })),
    },
  };
  writeFileSync(path.join(OUT_DIR, 'captured-signals.json'), `${JSON.stringify(fixture, null, 2)}\n`);

  // Kept for the next test: what the server made of the signals.
  signalReport.errors = [
    ...await ann.page.evaluate(() => window.__rendezvous.signalErrors),
    ...await bob.page.evaluate(() => window.__rendezvous.signalErrors),
  ];
  signalReport.received = { Ann: annSignals, Bob: bobSignals };

  assert.deepEqual(ann.errors, [], 'no errors in Ann\'s page');
  assert.deepEqual(bob.errors, [], 'no errors in Bob\'s page');
  await ann.context.close();
  await bob.context.close();
});

test('the server accepted every signal Chromium produced and relayed the end of candidates', () => {
  assert.ok(signalReport.received, 'the match test ran');
  // Real SDP, real candidates, and the end of candidates sent as `candidate: ""` (PROTOCOL.md).
  assert.deepEqual(signalReport.errors, [], 'no signal was refused by the server');
  for (const [who, signals] of Object.entries(signalReport.received)) {
    assert.ok(signals.some((s) => s.direction === 'in' && s.type === 'ice_candidate' && s.candidate === ''),
      `${who} received the end-of-candidates signal (candidate: "")`);
  }
});
