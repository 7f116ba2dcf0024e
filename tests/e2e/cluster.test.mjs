// (g) Cluster mode: two server processes share one lobby through a real
// redis-server. Ann's browser talks to node A, Bob's to node B: they find
// the same match, connect peer to peer through signals relayed across the
// nodes, chat over the DataChannel, and a dashboard on node A shows the
// cluster-wide stats.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DESKTOP, enterLobby, launchBrowser, openPage, shot, startRedis, startServer,
  waitAttr, waitCount, waitPeersOpen, waitStat, waitText,
} from './harness.mjs';

let redis;
let nodeA;
let nodeB;
let browser;

before(async () => {
  redis = await startRedis();
  nodeA = await startServer('cluster-node-a', ['--redis-url', redis.url, '--node-id', 'node-a']);
  nodeB = await startServer('cluster-node-b', ['--redis-url', redis.url, '--node-id', 'node-b']);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await nodeA?.stop();
  await nodeB?.stop();
  await redis?.stop();
});

test('players on two nodes find one match and connect peer to peer', { timeout: 180_000 }, async () => {
  assert.notEqual(nodeA.url, nodeB.url);
  const dash = await openPage(browser, `${nodeA.url}/dashboard`, { viewport: DESKTOP });
  const ann = await openPage(browser, `${nodeA.url}/`);
  const bob = await openPage(browser, `${nodeB.url}/`);

  await enterLobby(ann.page, 'Ann', 2);
  await ann.page.click('#find-match');
  await waitAttr(ann.page, '#room-status', 'data-status', 'waiting');
  // The dashboard's own socket and Ann's, both on node A.
  await waitStat(dash.page, 'connections', '==', 2);
  await waitStat(dash.page, 'waiting_rooms', '==', 1);

  await enterLobby(bob.page, 'Bob', 2);
  await bob.page.click('#find-match');
  for (const { page } of [ann, bob]) {
    await waitAttr(page, '#room-status', 'data-status', 'active');
    await waitCount(page, '#players li', 2);
  }
  const annRoom = await ann.page.evaluate(() => window.__rendezvous.client.room.room_id);
  const bobRoom = await bob.page.evaluate(() => window.__rendezvous.client.room.room_id);
  assert.equal(annRoom, bobRoom, 'one room across the two nodes');

  // Offers, answers and ICE candidates crossed Redis: the browsers connect directly.
  await waitPeersOpen(ann.page, 1);
  await waitPeersOpen(bob.page, 1);
  await ann.page.fill('#p2p-chat-input', 'hello across nodes');
  await ann.page.click('#p2p-chat-send');
  await waitText(bob.page, '#p2p-chat-log .msg:not(.mine):not(.system)', 'hello across nodes');

  // Node A's dashboard counts Bob's connection on node B too.
  await waitStat(dash.page, 'connections', '==', 3);
  await waitStat(dash.page, 'active_rooms', '==', 1);
  await waitStat(dash.page, 'total_players', '==', 2);
  await waitStat(dash.page, 'signals_relayed', '>', 0);
  await shot(ann.page, 'g1-cluster-ann-node-a');
  await shot(bob.page, 'g1-cluster-bob-node-b');
  await shot(dash.page, 'g1-cluster-dashboard');

  for (const { errors } of [ann, bob, dash]) {
    assert.deepEqual(errors, [], 'no page errors');
  }
});
