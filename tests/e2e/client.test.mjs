// Unit tests of clients/js/rendezvous.js against a scripted fake WebSocket (no server,
// no browser): request/reply matching by rid, errors, room tracking,
// reconnection with resume, and the rejection of requests in flight.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, RendezvousError, connect } from '../../clients/js/rendezvous.js';
import { FakeSocket, tick, until } from './fake-socket.mjs';

function room(players, extra = {}) {
  return {
    room_id: 'r1', code: null, visibility: 'public', mode: 'default', max_players: 2, status: 'waiting',
    host: players[0], created_at: '2026-01-01T00:00:00Z', data: {},
    players: players.map((id) => ({ player_id: id, name: id, data: {}, joined_at: '2026-01-01T00:00:00Z', connected: true })),
    ...extra,
  };
}

async function connected(options = {}) {
  FakeSocket.all = [];
  const promise = connect('ws://127.0.0.1:9/ws', { name: 'ann', WebSocket: FakeSocket, heartbeat: false, ...options });
  await tick();
  const ws = FakeSocket.all[0];
  ws.accept({ player_id: 'p_ann', name: 'ann', resume_token: 'tok1' });
  const client = await promise;
  return { client, ws };
}

test('connect passes name/token in the URL and resolves after welcome', async () => {
  FakeSocket.all = [];
  const promise = connect('http://127.0.0.1:9/ws', { name: 'Ann Lee', token: 'jwt.x.y', WebSocket: FakeSocket, heartbeat: false });
  await tick();
  const ws = FakeSocket.all[0];
  assert.equal(ws.url.protocol, 'ws:');
  assert.equal(ws.url.searchParams.get('name'), 'Ann Lee');
  assert.equal(ws.url.searchParams.get('token'), 'jwt.x.y');
  assert.equal(ws.url.searchParams.has('resume'), false);
  ws.accept({ player_id: 'p_1', name: 'Ann Lee', resume_token: 't' });
  const client = await promise;
  assert.equal(client.playerId, 'p_1');
  assert.equal(client.welcome.name, 'Ann Lee');
  assert.deepEqual(client.iceServers, [{ urls: ['stun:stun.example.org:3478'] }]);
  assert.equal(client.connected, true);
  client.close();
});

test('connect rejects with connect_failed when the socket closes before welcome', async () => {
  FakeSocket.all = [];
  const promise = connect('ws://127.0.0.1:9/ws', { WebSocket: FakeSocket });
  await tick();
  FakeSocket.all[0].drop(1006);
  await assert.rejects(promise, (err) => err instanceof RendezvousError && err.code === 'connect_failed');
  assert.equal(FakeSocket.all.length, 1, 'no reconnection before a first welcome');
});

test('requests are matched by rid, out of order, and errors carry code and message', async () => {
  const { client, ws } = await connected();
  const find = client.findMatch({ maxPlayers: 3, mode: 'duel', filters: { map: 'x' } });
  const list = client.listRooms({ status: 'active' });
  const [findMsg, listMsg] = ws.sent;
  assert.deepEqual({ ...findMsg, rid: 0 }, { type: 'find_match', rid: 0, max_players: 3, mode: 'duel', filters: { map: 'x' } });
  assert.equal(listMsg.type, 'list_rooms');
  assert.notEqual(findMsg.rid, listMsg.rid);
  ws.push({ type: 'ok', rid: listMsg.rid, rooms: [] });
  ws.push({ type: 'ok', rid: findMsg.rid, room: room(['p_ann']), created: true });
  assert.deepEqual(await list, { rooms: [] });
  const found = await find;
  assert.equal(found.created, true);
  assert.equal(client.room.room_id, 'r1', 'the reply room is tracked');

  const join = client.joinRoom('k7qx2m');
  assert.deepEqual({ ...ws.last(), rid: 0 }, { type: 'join_room', rid: 0, code: 'K7QX2M' });
  ws.push({ type: 'error', rid: ws.last().rid, code: 'already_in_room', message: 'you are in r1' });
  await assert.rejects(join, (err) => err.code === 'already_in_room' && err.message === 'you are in r1'
    && err.request === 'join_room');

  client.joinRoom('7b1c9a52-0000-4000-8000-000000000000').catch(() => {});
  assert.equal(ws.last().room_id, '7b1c9a52-0000-4000-8000-000000000000');

  const errors = [];
  client.on('error', (m) => errors.push(m.code));
  ws.push({ type: 'error', rid: null, code: 'bad_request', message: 'not json' });
  assert.deepEqual(errors, ['bad_request']);
  client.close();
});

test('room state follows events', async () => {
  const { client, ws } = await connected();
  const p = client.createRoom({ maxPlayers: 3, private: true });
  ws.push({ type: 'ok', rid: ws.last().rid, room: room(['p_ann'], { max_players: 3, code: 'K7QX2M' }) });
  await p;
  const seen = [];
  client.on('room', (r, cause) => seen.push(cause && cause.type));
  ws.push({ type: 'player_joined', room_id: 'r1', player: room(['p_bob']).players[0] });
  ws.push({ type: 'player_joined', room_id: 'r1', player: room(['p_cy']).players[0] });
  assert.deepEqual(client.room.players.map((x) => x.player_id), ['p_ann', 'p_bob', 'p_cy']);
  ws.push({ type: 'player_disconnected', room_id: 'r1', player_id: 'p_bob' });
  assert.equal(client.room.players[1].connected, false);
  ws.push({ type: 'player_reconnected', room_id: 'r1', player_id: 'p_bob' });
  assert.equal(client.room.players[1].connected, true);
  ws.push({ type: 'player_left', room_id: 'r1', player_id: 'p_cy', reason: 'left' });
  ws.push({ type: 'room_status', room_id: 'r1', status: 'active' });
  ws.push({ type: 'room_data', room_id: 'r1', data: { map: 'y' } });
  ws.push({ type: 'host_changed', room_id: 'r1', host: 'p_bob' });
  ws.push({ type: 'room_status', room_id: 'other', status: 'finished' }); // not ours: ignored
  assert.equal(client.room.status, 'active');
  assert.deepEqual(client.room.data, { map: 'y' });
  assert.equal(client.room.host, 'p_bob');
  assert.equal(client.isHost, false);
  assert.deepEqual(client.room.players.map((x) => x.player_id), ['p_ann', 'p_bob']);
  ws.push({ type: 'kicked', room_id: 'r1' });
  assert.equal(client.room, null);
  assert.deepEqual(seen, ['player_joined', 'player_joined', 'player_disconnected', 'player_reconnected',
    'player_left', 'room_status', 'room_data', 'host_changed', 'kicked']);
  client.close();
});

test('a dropped socket rejects requests in flight, then reconnects with resume and backoff', async () => {
  const { client, ws } = await connected({ reconnect: { initialDelayMs: 20, maxDelayMs: 40 } });
  const p = client.findMatch();
  ws.push({ type: 'ok', rid: ws.last().rid, room: room(['p_ann', 'p_bob'], { status: 'active' }), created: false });
  await p;
  const events = [];
  for (const e of ['close', 'reconnecting', 'open', 'resumed', 'session_lost']) client.on(e, (x) => events.push([e, x]));
  const inFlight = client.ping();
  ws.drop(1006);
  await assert.rejects(inFlight, (err) => err.code === 'disconnected');
  await assert.rejects(client.leaveRoom(), (err) => err.code === 'disconnected', 'requests while down reject at once');
  assert.equal(client.state, 'reconnecting');
  assert.deepEqual(events[0], ['close', { code: 1006, reason: '', wasClean: false, willReconnect: true }]);
  assert.equal(events[1][0], 'reconnecting');
  assert.ok(events[1][1].delayMs >= 10 && events[1][1].delayMs <= 20, `jittered first delay ${events[1][1].delayMs}`);

  await until(() => FakeSocket.all.length === 2);
  const ws2 = FakeSocket.all[1];
  assert.equal(ws2.url.searchParams.get('resume'), 'tok1');
  assert.equal(ws2.url.searchParams.get('name'), 'ann');
  ws2.drop(1006); // the first attempt fails: back off again, same token
  await until(() => FakeSocket.all.length === 3);
  const ws3 = FakeSocket.all[2];
  assert.equal(ws3.url.searchParams.get('resume'), 'tok1');
  const reconnecting = events.filter(([e]) => e === 'reconnecting').map(([, x]) => x.attempt);
  assert.deepEqual(reconnecting, [1, 2]);

  ws3.accept({ player_id: 'p_ann', name: 'ann', resume_token: 'tok2', resumed: true, room: room(['p_ann', 'p_bob'], { status: 'active' }) });
  // Signals sent while away are delivered after welcome.
  const offers = [];
  client.on('offer', (m) => offers.push(m.from));
  ws3.push({ type: 'offer', from: 'p_bob', sdp: 'v=0' });
  assert.deepEqual(offers, ['p_bob']);
  assert.equal(client.state, 'open');
  assert.equal(client.resumeToken, 'tok2');
  assert.equal(client.room.status, 'active');
  assert.ok(events.some(([e]) => e === 'resumed'));
  assert.ok(events.some(([e]) => e === 'open'));

  // The next drop resumes with the fresh token; a stale one gives a new session.
  ws3.drop(1001);
  await until(() => FakeSocket.all.length === 4);
  assert.equal(FakeSocket.all[3].url.searchParams.get('resume'), 'tok2');
  FakeSocket.all[3].accept({ player_id: 'p_new', name: 'ann', resume_token: 'tok3', resumed: false, room: null });
  assert.equal(client.playerId, 'p_new');
  assert.equal(client.room, null);
  assert.ok(events.some(([e]) => e === 'session_lost'));
  client.close();
  assert.equal(client.state, 'closed');
});

test('server_shutdown delays the reconnection; close code 4001 (replaced) stops it', async () => {
  const { client, ws } = await connected({ reconnect: { initialDelayMs: 10, maxDelayMs: 20 } });
  const delays = [];
  client.on('reconnecting', ({ delayMs }) => delays.push(delayMs));
  ws.push({ type: 'server_shutdown', reconnect_after_ms: 300 });
  ws.drop(1001);
  assert.ok(delays[0] >= 300, `waited at least reconnect_after_ms (${delays[0]})`);
  await until(() => FakeSocket.all.length === 2, 3000);
  FakeSocket.all[1].accept({ player_id: 'p_ann', name: 'ann', resume_token: 'tok2', resumed: true });
  const closes = [];
  client.on('close', (e) => closes.push(e));
  FakeSocket.all[1].drop(4001);
  assert.equal(closes[0].willReconnect, false);
  assert.equal(client.state, 'closed');
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(FakeSocket.all.length, 2, 'no reconnection after being replaced');
});

test('signaling helpers send the protocol shapes, end-of-candidates as ""', async () => {
  const { client, ws } = await connected();
  client.sendOffer('p_bob', 'v=0...').catch(() => {});
  assert.deepEqual({ ...ws.last(), rid: 0 }, { type: 'offer', rid: 0, to: 'p_bob', sdp: 'v=0...' });
  client.sendIceCandidate('p_bob', { candidate: 'candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host', sdpMid: '0', sdpMLineIndex: 0, usernameFragment: 'abcd' }).catch(() => {});
  assert.deepEqual(ws.last().candidate, { candidate: 'candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host', sdpMid: '0', sdpMLineIndex: 0, usernameFragment: 'abcd' });
  assert.equal('rid' in ws.last(), false, 'trickled candidates are fire-and-forget');
  client.sendIceCandidate('p_bob', null).catch(() => {});
  assert.equal(ws.last().candidate, '');
  assert.equal('rid' in ws.last(), false);
  client.subscribeStats({ intervalMs: 1000 }).catch(() => {});
  assert.equal(ws.last().interval_ms, 1000);
  client.kick('p_bob').catch(() => {});
  assert.equal(ws.last().player_id, 'p_bob');
  client.close();
});

test('requests time out with code timeout', async () => {
  const { client } = await connected({ requestTimeoutMs: 30 });
  await assert.rejects(client.ping(), (err) => err.code === 'timeout');
  client.close();
});

test('Client can be constructed and opened explicitly', async () => {
  FakeSocket.all = [];
  const client = new Client('ws://127.0.0.1:9/ws', { WebSocket: FakeSocket, heartbeat: false });
  const opened = client.open();
  await tick();
  FakeSocket.all[0].accept({ player_id: 'p', name: 'player', resume_token: 't' });
  assert.equal((await opened).player_id, 'p');
  await assert.rejects(client.open());
  client.close();
});
