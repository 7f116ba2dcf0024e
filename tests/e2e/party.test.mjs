// A party ("Play with a friend"): Ann creates one and gets a code and a
// link; Bob opens the link and joins; both pages list both members live
// (a dropped connection shows as such); only the leader may Find match, and
// her Find match seats both in one room where the usual peer-to-peer game
// starts (and cannot while a member is still in a room). Afterwards the
// party outlives the room: Cleo joins by typing the code, Ann leaves and
// Bob leads.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DESKTOP, PHONE, enterLobby, launchBrowser, openPage, shot, startServer,
  waitAttr, waitCount, waitPeersOpen, waitText,
} from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer('party');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

const MEMBERS = '#party-members li';
const names = (page) => page.$$eval(`${MEMBERS} .pname`, (els) => els.map((e) => e.textContent));
const leaders = (page) => page.$$eval(MEMBERS, (els) => els.map((e) => e.dataset.leader));

test('a friend joins by link, the leader finds a match for both, they play together', { timeout: 180_000 }, async () => {
  const ann = await openPage(browser, `${server.url}/`, { viewport: DESKTOP });

  // Ann creates a party: its code and a link to share, herself as leader.
  await enterLobby(ann.page, 'Ann', 2);
  await ann.page.click('#create-party');
  await ann.page.locator('#party-box').waitFor({ state: 'visible' });
  const code = (await ann.page.textContent('#party-code')).trim();
  assert.match(code, /^[A-Z0-9]{6}$/, `a party code has 6 characters (got ${JSON.stringify(code)})`);
  const link = await ann.page.inputValue('#party-link');
  assert.equal(link, `${server.url}/?party=${code}`);
  await waitCount(ann.page, MEMBERS, 1);
  assert.deepEqual(await leaders(ann.page), ['true']);
  assert.equal(await ann.page.isVisible('#party-start'), false, 'no second party from the party box');
  assert.equal(await ann.page.isEnabled('#find-match'), true, 'the leader may find a match');
  await shot(ann.page, 'p1-ann-party');

  // Bob opens the link: the code is filled in; he gives his name and joins.
  const bob = await openPage(browser, link, { viewport: PHONE });
  assert.equal(await bob.page.inputValue('#party-code-input'), code);
  assert.equal(await bob.page.isVisible('#party-invite'), true, 'the page says a friend invited him');
  await enterLobby(bob.page, 'Bob', 2);
  await bob.page.click('#join-party');
  for (const { page } of [ann, bob]) {
    await waitCount(page, MEMBERS, 2);
    assert.deepEqual(await names(page), ['Ann', 'Bob'], 'members in join order');
    assert.deepEqual(await leaders(page), ['true', 'false'], 'Ann leads');
    await waitAttr(page, `${MEMBERS}:nth-child(2)`, 'data-connected', 'true');
    assert.equal(await page.textContent('#party-size'), '2 / 4');
  }
  assert.equal(new URL(bob.page.url()).search, '', 'the used invitation leaves the address bar');
  const partyId = await ann.page.evaluate(() => window.__rendezvous.client.party.party_id);
  assert.equal(await bob.page.evaluate(() => window.__rendezvous.client.party.party_id), partyId);

  // Only the leader starts: Bob's Find match is disabled, with the reason.
  assert.equal(await bob.page.isDisabled('#find-match'), true, 'a member cannot Find match');
  assert.match(await bob.page.textContent('#find-hint'), /party leader starts/i);
  assert.equal(await ann.page.isVisible('#find-hint'), false);
  await shot(bob.page, 'p2-bob-in-party-phone');

  // Bob's connection drops (his client waits before it resumes): Ann sees
  // him disconnected, then back, from party_updated events.
  await bob.page.evaluate(() => {
    const c = window.__rendezvous.client;
    c._options.reconnect.initialDelayMs = 4000;
    c._ws.close();
  });
  await waitAttr(ann.page, `${MEMBERS}:nth-child(2)`, 'data-connected', 'false');
  await shot(ann.page, 'p3-ann-sees-bob-away');
  await waitAttr(ann.page, `${MEMBERS}:nth-child(2)`, 'data-connected', 'true');
  await waitAttr(bob.page, '#conn-status', 'data-state', 'online');
  // The resumed session still knows its party.
  assert.equal(await bob.page.evaluate(() => window.__rendezvous.client.party?.party_id), partyId);
  assert.equal(await bob.page.isDisabled('#find-match'), true);

  // Ann's Find match seats both: Bob never asked, yet lands in her room.
  await ann.page.click('#find-match');
  for (const { page } of [ann, bob]) {
    await waitAttr(page, '#room-status', 'data-status', 'active');
    await waitCount(page, '#players li', 2);
    const seated = await page.$$eval('#players li .pname', (els) => els.map((e) => e.textContent));
    assert.deepEqual(seated, ['Ann', 'Bob'], 'the party sits in party order');
    await waitText(page, '#room-party', 'Your party plays together');
  }
  const annRoom = await ann.page.evaluate(() => window.__rendezvous.client.room.room_id);
  const bobRoom = await bob.page.evaluate(() => window.__rendezvous.client.room.room_id);
  assert.equal(annRoom, bobRoom, 'both are in the same room');
  // The usual game: DataChannel open both ways, Ann (first seated) plays X.
  await waitPeersOpen(ann.page, 1);
  await waitPeersOpen(bob.page, 1);
  await waitAttr(ann.page, '#turn-indicator', 'data-my-turn', 'true');
  await ann.page.click('#board [data-cell="4"]');
  await waitAttr(bob.page, '#board [data-cell="4"]', 'data-mark', 'X');
  await waitAttr(bob.page, '#turn-indicator', 'data-my-turn', 'true');
  await shot(ann.page, 'p4-ann-playing');
  await shot(bob.page, 'p4-bob-playing-phone');

  // Ann leaves the room first: while Bob is still in it, her Find match
  // cannot move the party, and says why.
  await ann.page.click('#leave-room');
  await ann.page.locator('#lobby-view').waitFor({ state: 'visible' });
  await ann.page.click('#find-match');
  await ann.page.locator('#lobby-error').waitFor({ state: 'visible' });
  assert.match(await ann.page.textContent('#lobby-error'), /still in a game/);
  assert.equal(await ann.page.isVisible('#room-view'), false);
  // Bob leaves too; the party stays.
  await bob.page.click('#leave-room');
  for (const { page } of [ann, bob]) {
    await page.locator('#lobby-view').waitFor({ state: 'visible' });
    await page.locator('#party-box').waitFor({ state: 'visible' });
    await waitCount(page, MEMBERS, 2);
  }

  // Cleo types the code (in lower case) instead of opening the link.
  const cleo = await openPage(browser, `${server.url}/`, { viewport: DESKTOP });
  await enterLobby(cleo.page, 'Cleo', 2);
  await cleo.page.fill('#party-code-input', code.toLowerCase());
  await cleo.page.click('#join-party');
  for (const { page } of [ann, bob, cleo]) {
    await waitCount(page, MEMBERS, 3);
    assert.deepEqual(await names(page), ['Ann', 'Bob', 'Cleo']);
  }
  assert.equal(await cleo.page.isDisabled('#find-match'), true);

  // Ann leaves the party: Bob, next in join order, leads and may match.
  await ann.page.click('#leave-party');
  await ann.page.locator('#party-start').waitFor({ state: 'visible' });
  assert.equal(await ann.page.isVisible('#party-box'), false);
  assert.equal(await ann.page.isEnabled('#find-match'), true, 'alone again, Ann matches for herself');
  for (const { page } of [bob, cleo]) {
    await waitCount(page, MEMBERS, 2);
    assert.deepEqual(await names(page), ['Bob', 'Cleo']);
    assert.deepEqual(await leaders(page), ['true', 'false']);
  }
  assert.equal(await bob.page.isEnabled('#find-match'), true, 'the new leader may Find match');
  assert.equal(await cleo.page.isDisabled('#find-match'), true);
  assert.match(await cleo.page.textContent('#party-hint'), /Bob leads/);
  await shot(cleo.page, 'p5-cleo-bob-leads');

  // A wrong code is refused readably.
  await ann.page.fill('#party-code-input', code === 'QQQQQQ' ? 'ZZZZZZ' : 'QQQQQQ');
  await ann.page.click('#join-party');
  await ann.page.locator('#lobby-error').waitFor({ state: 'visible' });
  assert.match(await ann.page.textContent('#lobby-error'), /no party/i);

  await bob.page.click('#leave-party');
  await cleo.page.click('#leave-party');
  await bob.page.locator('#party-start').waitFor({ state: 'visible' });
  await cleo.page.locator('#party-start').waitFor({ state: 'visible' });
  const stats = await (await fetch(`${server.url}/api/stats`)).json();
  assert.equal(stats.parties, 0, 'the last one out ends the party');

  for (const p of [ann, bob, cleo]) assert.deepEqual(p.errors, []);
  for (const p of [ann, bob, cleo]) await p.context.close();
});
