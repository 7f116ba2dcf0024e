// (b) A private room: created in one browser (its 6-character code shown),
// joined by code in another (a phone-sized one), started by the host, then
// played peer to peer; the guest leaves and the host sees it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DESKTOP, PHONE, enterLobby, launchBrowser, openPage, shot, startServer,
  waitAttr, waitCount, waitPeersOpen, waitText,
} from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer('private-room');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

test('a private room is created, joined by code, started by the host and played', { timeout: 180_000 }, async () => {
  const cara = await openPage(browser, `${server.url}/`, { viewport: DESKTOP });
  const dan = await openPage(browser, `${server.url}/`, { viewport: PHONE });

  // Cara creates a private room for up to 4: it waits, and shows its join code.
  await enterLobby(cara.page, 'Cara', 4);
  await cara.page.click('#create-private');
  await waitAttr(cara.page, '#room-status', 'data-status', 'waiting');
  await cara.page.locator('#room-code').waitFor({ state: 'visible' });
  const code = (await cara.page.textContent('#room-code')).trim();
  assert.match(code, /^[A-Z0-9]{6}$/, `the join code has 6 characters (got ${JSON.stringify(code)})`);
  assert.equal(await cara.page.isVisible('#start-game'), true, 'the host sees the start button');
  assert.equal(await cara.page.isDisabled('#start-game'), true, 'a game needs 2 players to start');
  await shot(cara.page, 'b1-cara-private-room');

  // Private rooms are not listed publicly.
  const roomId = await cara.page.evaluate(() => window.__rendezvous.client.room.room_id);
  const listing = await (await fetch(`${server.url}/api/rooms?status=waiting`)).json();
  assert.ok(!listing.rooms.some((r) => r.room_id === roomId), 'the private room is not in GET /api/rooms');

  // A wrong code is refused with a readable error.
  await enterLobby(dan.page, 'Dan', 2);
  const wrong = code.split('').reverse().join('') === code ? 'QQQQQQ' : code.split('').reverse().join('');
  await dan.page.fill('#join-code', wrong);
  await dan.page.click('#join-btn');
  await dan.page.locator('#lobby-error').waitFor({ state: 'visible' });
  assert.match(await dan.page.textContent('#lobby-error'), /no room|not found/i);
  assert.equal(await dan.page.isVisible('#room-view'), false);
  await shot(dan.page, 'b2-dan-wrong-code-phone');

  // The right code (typed in lower case) gets Dan in.
  await dan.page.fill('#join-code', code.toLowerCase());
  await dan.page.click('#join-btn');
  for (const { page } of [cara, dan]) {
    await waitCount(page, '#players li', 2);
    const names = await page.$$eval('#players li .pname', (els) => els.map((e) => e.textContent));
    assert.deepEqual(names, ['Cara', 'Dan']);
    await waitAttr(page, '#room-status', 'data-status', 'waiting');
  }
  assert.equal((await dan.page.textContent('#room-code')).trim(), code, 'members see the code');
  assert.equal(await dan.page.isVisible('#start-game'), false, 'only the host can start');
  await waitAttr(cara.page, '#players li[data-me="false"]', 'data-connected', 'true');
  await shot(cara.page, 'b3-cara-two-players');
  await shot(dan.page, 'b3-dan-joined-phone');

  // The host starts the game: both go active and connect peer to peer.
  await cara.page.locator('#start-game:not([disabled])').waitFor();
  await cara.page.click('#start-game');
  for (const { page } of [cara, dan]) {
    await waitAttr(page, '#room-status', 'data-status', 'active');
    await waitPeersOpen(page, 1);
  }
  await shot(dan.page, 'b4-dan-connected-phone');

  // One move and one chat line each way, over the DataChannel.
  await waitAttr(cara.page, '#turn-indicator', 'data-my-turn', 'true');
  await cara.page.click('#board [data-cell="8"]');
  await waitAttr(dan.page, '#board [data-cell="8"]', 'data-mark', 'X');
  await waitAttr(dan.page, '#turn-indicator', 'data-my-turn', 'true');
  await dan.page.click('#board [data-cell="3"]');
  await waitAttr(cara.page, '#board [data-cell="3"]', 'data-mark', 'O');
  await dan.page.fill('#p2p-chat-input', 'gg from the phone');
  await dan.page.click('#p2p-chat-send');
  await waitText(cara.page, '#p2p-chat-log .msg:not(.mine):not(.system)', 'gg from the phone');
  await shot(cara.page, 'b5-cara-playing');

  // Dan leaves: back in his lobby; Cara sees one player and the peer gone.
  await dan.page.click('#leave-room');
  await dan.page.locator('#lobby-view').waitFor({ state: 'visible' });
  await waitCount(cara.page, '#players li', 1);
  await waitCount(cara.page, '#peer-state li', 0);
  await waitAttr(cara.page, '#turn-indicator', 'data-state', 'opponent-left');
  await shot(cara.page, 'b6-cara-after-dan-left');

  assert.deepEqual(cara.errors, []);
  assert.deepEqual(dan.errors, []);
  await cara.context.close();
  await dan.context.close();
});
