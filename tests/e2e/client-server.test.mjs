// clients/js/rendezvous.js (served at /rendezvous.js) against the real server (client.test.mjs scripts the
// server's side by hand, so it can only agree with itself): loaded as a
// module in headless Chromium from the server's own origin, two clients
// match, get real error replies, relay a real browser SDP, survive a dropped
// socket by resuming their seat, and see each other leave.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { REPO, launchBrowser, openPage, startServer } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer('client-server', ['--reconnect-grace-ms', '15000']);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

const OFFER = readFileSync(path.join(REPO, 'tests', 'fixtures', 'sdp', 'chromium-offer-datachannel.sdp'), 'utf8');

test('the web client drives the real server: match, errors, signals, resume, leave', { timeout: 120_000 }, async () => {
  // Any page of the server's origin will do; the demo page is not used.
  const { page, context, errors } = await openPage(browser, `${server.url}/rendezvous.js`);
  const result = await page.evaluate(async (offerSdp) => {
    const { connect } = await import('/rendezvous.js');
    const url = `${location.origin}/ws`;
    const seen = { ann: [], bob: [] };
    const until = async (what, predicate, ms = 10_000) => {
      const start = Date.now();
      while (!predicate()) {
        if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(seen)}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    const caught = async (promise) => promise.then(
      (v) => ({ ok: v }),
      (e) => ({ code: e.code, message: e.message, request: e.request }),
    );
    const reconnect = { initialDelayMs: 50, maxDelayMs: 200 };
    const ann = await connect(url, { name: 'ann', reconnect });
    const bob = await connect(url, { name: 'bob', reconnect });
    for (const [who, c] of [['ann', ann], ['bob', bob]]) {
      c.on('*', (m) => seen[who].push(m.type));
      for (const e of ['reconnecting', 'resumed', 'session_lost']) c.on(e, () => seen[who].push(`@${e}`));
    }
    const out = { annId: ann.playerId, bobId: bob.playerId, welcome: ann.welcome };

    const first = await ann.findMatch({ maxPlayers: 2, mode: 'real' });
    const second = await bob.findMatch({ maxPlayers: 2, mode: 'real' });
    out.match = { created: [first.created, second.created], same: first.room.room_id === second.room.room_id };
    await until('ann sees the room start', () => ann.room?.status === 'active');
    out.annRoom = { players: ann.room.players.map((p) => p.player_id), host: ann.room.host };

    // Real error replies, matched to their requests by rid, out of order.
    const [joinErr, pong, list] = await Promise.all([
      caught(bob.joinRoom('ZZZZZZ')),
      bob.ping(),
      ann.listRooms({ status: 'active' }),
    ]);
    out.joinErr = joinErr;
    out.pong = typeof pong.server_time;
    out.listed = list.rooms.map((r) => r.room_id);
    out.roomId = first.room.room_id;
    const outsider = await connect(url, { name: 'cy' });
    out.notFound = await caught(outsider.joinRoom('ZZZZZZ'));
    out.kickErr = await caught(bob.kick(ann.playerId));
    outsider.close();

    // A real browser SDP relayed to the peer, untouched.
    const offers = [];
    bob.on('offer', (m) => offers.push(m));
    await ann.sendOffer(bob.playerId, offerSdp);
    await until('bob gets the offer', () => offers.length === 1);
    out.offer = { from: offers[0].from, same: offers[0].sdp === offerSdp };

    // Bob's socket drops: the client resumes the same seat by itself.
    bob._ws.close(4000, 'test drop');
    await until('bob resumed', () => seen.bob.includes('@resumed'));
    await until('ann sees bob back', () => seen.ann.includes('player_reconnected'));
    out.resumed = { id: bob.playerId, resumed: bob.welcome.resumed, status: bob.room?.status,
      annSaw: seen.ann.filter((t) => t.startsWith('player_')) };

    // Ann leaves: Bob's copy of the room follows.
    await ann.leaveRoom();
    // player_left then host_changed: wait for both.
    await until('bob sees ann leave', () => bob.room?.players.length === 1 && bob.room.host === bob.playerId);
    out.after = { annRoom: ann.room, bobPlayers: bob.room.players.map((p) => p.player_id), host: bob.room.host };
    ann.close();
    bob.close();
    return out;
  }, OFFER);

  assert.match(result.annId, /^p_/);
  assert.notEqual(result.annId, result.bobId);
  assert.equal(result.welcome.protocol, 1);
  assert.deepEqual(result.match, { created: [true, false], same: true });
  assert.deepEqual(result.annRoom, { players: [result.annId, result.bobId], host: result.annId });
  assert.deepEqual(result.joinErr.code, 'already_in_room');
  assert.equal(result.joinErr.request, 'join_room');
  assert.ok(result.joinErr.message.length > 0);
  assert.equal(result.pong, 'string');
  assert.deepEqual(result.listed, [result.roomId]);
  assert.equal(result.notFound.code, 'room_not_found');
  assert.equal(result.kickErr.code, 'not_host');
  assert.deepEqual(result.offer, { from: result.annId, same: true });
  assert.deepEqual(result.resumed, { id: result.bobId, resumed: true, status: 'active',
    annSaw: ['player_joined', 'player_disconnected', 'player_reconnected'] });
  assert.deepEqual(result.after, { annRoom: null, bobPlayers: [result.bobId], host: result.bobId });
  // The bare script page has no <link rel=icon>: Chromium's own
  // /favicon.ico request 404s. Anything else logged is an error.
  assert.deepEqual(errors.filter((e) => !e.includes('status of 404')), []);
  await context.close();
});
