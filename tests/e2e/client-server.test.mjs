// clients/js/rendezvous.js (served at /rendezvous.js) against the real server (client.test.mjs scripts the
// server's side by hand, so it can only agree with itself): loaded as a
// module in headless Chromium from the server's own origin, two clients
// match, get real error replies, relay a real browser SDP, survive a dropped
// socket by resuming their seat, and see each other leave; and the 1.1
// tickets: queueMatch forms a room, already_queued, cancelMatch, not_queued,
// tickets_queued in stats, ticket_expired.
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

test('the web client queues tickets on the real server: match, errors, cancel, stats', { timeout: 120_000 }, async () => {
  const { page, context, errors } = await openPage(browser, `${server.url}/rendezvous.js`);
  const result = await page.evaluate(async () => {
    const { connect } = await import('/rendezvous.js');
    const url = `${location.origin}/ws`;
    const caught = async (promise) => promise.then(
      (v) => ({ ok: v }),
      (e) => ({ code: e.code, request: e.request }),
    );
    const queuedNow = async (c) => {
      const { stats } = await c.subscribeStats();
      await c.unsubscribeStats();
      return stats.tickets_queued;
    };
    const ann = await connect(url, { name: 'ann' });
    const bob = await connect(url, { name: 'bob' });
    const cy = await connect(url, { name: 'cy' });
    const out = { annId: ann.playerId, bobId: bob.playerId, cyId: cy.playerId, features: ann.welcome.features };
    const starts = { ann: [], bob: [], cy: [] };
    for (const [who, c] of [['ann', ann], ['bob', bob], ['cy', cy]]) c.on('game_start', (m) => starts[who].push(m));
    const annStart = ann.waitFor('game_start', { timeoutMs: 15_000 });
    const bobStart = bob.waitFor('game_start', { timeoutMs: 15_000 });

    out.annTicket = await ann.queueMatch({ maxPlayers: 2, mode: 'duel' });
    out.again = await caught(ann.queueMatch({ maxPlayers: 2, mode: 'duel' }));
    out.queuedOne = await queuedNow(cy);
    out.bobTicket = await bob.queueMatch({ maxPlayers: 2, mode: 'duel' });
    const [a, b] = await Promise.all([annStart, bobStart]);
    out.starts = {
      ann: { ticket: a.ticket_id, room: a.room.room_id, status: a.room.status, players: a.room.players.map((p) => p.player_id), host: a.room.host },
      bob: { ticket: b.ticket_id, room: b.room.room_id },
      tracked: [ann.room?.room_id, bob.room?.room_id],
    };
    out.inRoom = await caught(ann.queueMatch({ maxPlayers: 2, mode: 'duel' }));

    // Every option reaches the wire in snake_case, and the server takes them.
    const sent = [];
    cy.on('outgoing', (m) => { if (m.type === 'queue_match') sent.push(m); });
    out.cyTicket = await cy.queueMatch({
      mode: 'lonely', maxPlayers: 4, minPlayers: 3, skill: 1200, skillWindow: 10, skillWidenPerS: 5,
      skillWindowMax: 20, regions: { eu: 40, 'us-east': 90 }, maxRttMs: 100, filters: { map: 'moon' }, backfill: true,
    });
    out.wire = sent.map(({ rid, ...m }) => m);
    out.queuedCy = await queuedNow(ann);
    out.cancel = await caught(cy.cancelMatch());
    out.cancelAgain = await caught(cy.cancelMatch());
    out.queuedNone = await queuedNow(ann);
    out.neverQueued = await caught(bob.cancelMatch());
    out.counts = { ann: starts.ann.length, bob: starts.bob.length, cy: starts.cy.length };
    for (const c of [ann, bob, cy]) c.close();
    return out;
  });

  assert.ok(result.features.includes('tickets'), `features: ${result.features}`);
  const ticketShape = (t, player) => {
    assert.match(t.ticket_id, /\S/);
    assert.deepEqual(t.players, [player]);
    assert.ok(!Number.isNaN(Date.parse(t.queued_at)), t.queued_at);
  };
  ticketShape(result.annTicket, result.annId);
  ticketShape(result.bobTicket, result.bobId);
  ticketShape(result.cyTicket, result.cyId);
  assert.notEqual(result.annTicket.ticket_id, result.bobTicket.ticket_id);
  assert.deepEqual(result.again, { code: 'already_queued', request: 'queue_match' });
  assert.equal(result.queuedOne, 1);
  const room = result.starts.ann.room;
  assert.deepEqual(result.starts, {
    ann: { ticket: result.annTicket.ticket_id, room, status: 'active', players: [result.annId, result.bobId], host: result.annId },
    bob: { ticket: result.bobTicket.ticket_id, room },
    tracked: [room, room],
  });
  assert.deepEqual(result.inRoom, { code: 'already_in_room', request: 'queue_match' });
  assert.deepEqual(result.wire, [{
    type: 'queue_match', mode: 'lonely', max_players: 4, min_players: 3, skill: 1200, skill_window: 10,
    skill_widen_per_s: 5, skill_window_max: 20, regions: { eu: 40, 'us-east': 90 }, max_rtt_ms: 100,
    filters: { map: 'moon' }, backfill: true,
  }]);
  assert.equal(result.queuedCy, 1);
  assert.deepEqual(result.cancel, { ok: {} });
  assert.deepEqual(result.cancelAgain, { code: 'not_queued', request: 'cancel_match' });
  assert.equal(result.queuedNone, 0);
  assert.deepEqual(result.neverQueued, { code: 'not_queued', request: 'cancel_match' });
  assert.deepEqual(result.counts, { ann: 1, bob: 1, cy: 0 });
  assert.deepEqual(errors.filter((e) => !e.includes('status of 404')), []);
  await context.close();
});

test('the web client sees its ticket expire (--ticket-ttl-ms)', { timeout: 120_000 }, async () => {
  const short = await startServer('client-server-ticket-ttl', ['--ticket-ttl-ms', '1000']);
  try {
    const { page, context, errors } = await openPage(browser, `${short.url}/rendezvous.js`);
    const result = await page.evaluate(async () => {
      const { connect } = await import('/rendezvous.js');
      const dee = await connect(`${location.origin}/ws`, { name: 'dee' });
      const expired = dee.waitFor('ticket_expired', { timeoutMs: 15_000 });
      const started = Date.now();
      const ticket = await dee.queueMatch({ maxPlayers: 3, mode: 'nobody-else' });
      const event = await expired;
      const waitedMs = Date.now() - started;
      const cancel = await dee.cancelMatch().then((v) => ({ ok: v }), (e) => ({ code: e.code }));
      const again = await dee.queueMatch({ maxPlayers: 3, mode: 'nobody-else' });
      await dee.cancelMatch();
      dee.close();
      return { ticket, event, waitedMs, cancel, requeued: again.ticket_id !== ticket.ticket_id };
    });
    assert.deepEqual(result.event, { type: 'ticket_expired', ticket_id: result.ticket.ticket_id });
    assert.ok(result.waitedMs >= 900, `expired after ${result.waitedMs} ms`);
    assert.deepEqual(result.cancel, { code: 'not_queued' });
    assert.equal(result.requeued, true);
    assert.deepEqual(errors.filter((e) => !e.includes('status of 404')), []);
    await context.close();
  } finally {
    await short.stop();
  }
});
