// Unit tests of clients/js/rendezvous.js's 1.1 party and spectator tracking
// against a scripted fake WebSocket (no server, no browser): createParty,
// joinParty and leaveParty and the tracked `client.party`, `room_joined`
// moving `client.room`, spectators followed in `client.room.spectators`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RendezvousError, connect } from '../../clients/js/rendezvous.js';
import { FakeSocket, tick, until } from './fake-socket.mjs';

const player = (id) => ({ player_id: id, name: id, data: {}, joined_at: '2026-01-01T00:00:00.000Z', connected: true });
const member = (id, connected = true) => ({ player_id: id, name: id, connected });
const party = (ids, extra = {}) => ({ party_id: 'pt1', code: 'K7QX2M', leader: ids[0], members: ids.map((id) => member(id)), max_size: 4, ...extra });
const room = (players, extra = {}) => ({
  room_id: 'r1', visibility: 'public', mode: 'default', max_players: 3, status: 'waiting', host: players[0],
  created_at: '2026-01-01T00:00:00.000Z', data: {}, players: players.map(player), ...extra,
});

async function connected(options = {}) {
  FakeSocket.all = [];
  const promise = connect('ws://127.0.0.1:9/ws', { name: 'ann', WebSocket: FakeSocket, heartbeat: false, ...options });
  await tick();
  const ws = FakeSocket.all[0];
  ws.accept({ player_id: 'p_ann', name: 'ann', resume_token: 'tok1' });
  return { client: await promise, ws };
}

test('createParty, party_updated and leaveParty keep client.party', async () => {
  const { client, ws } = await connected();
  const changes = [];
  client.on('party', (p, cause) => changes.push([p && p.members.length, cause && cause.type]));
  assert.equal(client.party, null);

  const created = client.createParty({ maxSize: 3 });
  assert.deepEqual(ws.last(), { type: 'create_party', max_size: 3, rid: ws.last().rid });
  ws.ok({ party: party(['p_ann'], { max_size: 3 }) });
  const p = await created;
  assert.equal(p.code, 'K7QX2M');
  assert.equal(client.party, p);
  assert.equal(client.isPartyLeader, true);

  ws.push({ type: 'party_updated', party: party(['p_ann', 'p_bob']) });
  assert.deepEqual(client.party.members.map((m) => m.player_id), ['p_ann', 'p_bob']);
  // The leader left: the next member leads.
  ws.push({ type: 'party_updated', party: party(['p_bob', 'p_ann']) });
  assert.equal(client.isPartyLeader, false);

  const left = client.leaveParty();
  assert.equal(ws.last().type, 'leave_party');
  ws.ok();
  assert.deepEqual(await left, {});
  assert.equal(client.party, null);
  assert.deepEqual(changes, [[1, null], [2, 'party_updated'], [2, 'party_updated'], [null, null]]);
  client.close();
});

test('joinParty sends the code upper-cased; refusals reject and not_in_party forgets the party', async () => {
  const { client, ws } = await connected();
  const joining = client.joinParty('  k7qx2m ');
  assert.equal(ws.last().type, 'join_party');
  assert.equal(ws.last().code, 'K7QX2M');
  ws.push({ type: 'error', rid: ws.last().rid, code: 'party_full', message: 'party is full' });
  await assert.rejects(joining, (err) => err instanceof RendezvousError && err.code === 'party_full');
  assert.equal(client.party, null);

  const again = client.joinParty('K7QX2M');
  ws.ok({ party: party(['p_bob', 'p_ann']) });
  assert.equal((await again).leader, 'p_bob');
  assert.equal(client.isPartyLeader, false);

  // The server no longer counts us in it (forgotten after a long drop): the client follows.
  const leaving = client.leaveParty();
  ws.push({ type: 'error', rid: ws.last().rid, code: 'not_in_party', message: 'not in a party' });
  await assert.rejects(leaving, (err) => err.code === 'not_in_party');
  assert.equal(client.party, null);
  client.close();
});

test('a resumed session takes its party from welcome; a fresh one has none', async () => {
  const { client, ws } = await connected({ reconnect: { initialDelayMs: 1, maxDelayMs: 1 } });
  const created = client.createParty();
  ws.ok({ party: party(['p_ann']) });
  await created;

  ws.drop();
  await until(() => FakeSocket.all.length === 2);
  // The server names the party a resumed player is still in (welcome.party).
  FakeSocket.all[1].accept({ player_id: 'p_ann', name: 'ann', resume_token: 'tok2', resumed: true,
    party: party(['p_ann']) });
  await until(() => client.connected);
  assert.equal(client.party?.party_id, 'pt1', 'the server kept the party through the grace');

  FakeSocket.all[1].drop();
  await until(() => FakeSocket.all.length === 3);
  FakeSocket.all[2].accept({ player_id: 'p_new', name: 'ann', resume_token: 'tok3', resumed: false });
  await until(() => client.connected);
  assert.equal(client.party, null, 'a new player is in no party');
  client.close();
});

test('room_joined (the leader seated us) sets client.room and later events follow it', async () => {
  const { client, ws } = await connected();
  const seen = [];
  client.on('room', (r, cause) => seen.push([r && r.room_id, cause && cause.type]));
  // Events of the room before room_joined are for a room the client does not know yet.
  ws.push({ type: 'player_joined', room_id: 'r1', player: player('p_bob') });
  assert.equal(client.room, null);
  ws.push({ type: 'room_joined', room: room(['p_lead', 'p_ann', 'p_bob']) });
  assert.equal(client.room.room_id, 'r1');
  assert.deepEqual(client.room.players.map((p) => p.player_id), ['p_lead', 'p_ann', 'p_bob']);
  assert.equal(client.me.player_id, 'p_ann');
  ws.push({ type: 'player_left', room_id: 'r1', player_id: 'p_bob', reason: 'left' });
  assert.deepEqual(client.room.players.map((p) => p.player_id), ['p_lead', 'p_ann']);
  assert.deepEqual(seen, [['r1', 'room_joined'], ['r1', 'player_left']]);
  client.close();
});

test('spectate tracks spectators and ends on its own spectator_left', async () => {
  const { client, ws } = await connected();
  const watching = client.spectate('r1-not-a-code-0000');
  assert.deepEqual({ ...ws.last(), rid: 0 }, { type: 'join_room', room_id: 'r1-not-a-code-0000', as: 'spectator', rid: 0 });
  ws.ok({ room: room(['p_x', 'p_y'], { status: 'active', max_spectators: 2, spectators: [player('p_ann')] }) });
  await watching;
  assert.equal(client.isSpectator, true);
  assert.equal(client.me, null, 'a spectator has no seat');

  ws.push({ type: 'spectator_joined', room_id: 'r1', player: player('p_zed') });
  ws.push({ type: 'spectator_joined', room_id: 'r1', player: player('p_zed') }); // repeated: no duplicate
  assert.deepEqual(client.room.spectators.map((p) => p.player_id), ['p_ann', 'p_zed']);
  ws.push({ type: 'spectator_left', room_id: 'r1', player_id: 'p_zed', reason: 'left' });
  assert.deepEqual(client.room.spectators.map((p) => p.player_id), ['p_ann']);
  ws.push({ type: 'spectator_joined', room_id: 'other', player: player('p_q') }); // another room: ignored
  assert.deepEqual(client.room.spectators.map((p) => p.player_id), ['p_ann']);
  ws.push({ type: 'room_status', room_id: 'r1', status: 'finished' });
  assert.equal(client.room.status, 'finished');

  let cause = null;
  client.on('room', (r, c) => { cause = c; });
  ws.push({ type: 'spectator_left', room_id: 'r1', player_id: 'p_ann', reason: 'closed' });
  assert.equal(client.room, null);
  assert.equal(client.isSpectator, false);
  assert.equal(cause.reason, 'closed');
  client.close();
});
