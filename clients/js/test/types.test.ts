// Compiled by `tsc -p test/tsconfig.json` (never run): game code written
// against rendezvous.d.ts type-checks, and misuse is a compile error
// (each `@ts-expect-error` fails the build when the line does compile).
import {
  connect,
  Client,
  Mesh,
  RendezvousError,
  PROTOCOL_VERSION,
  type ChatEvent,
  type Feature,
  type Party,
  type PartyMember,
  type PeerState,
  type QueueMatchOptions,
  type RequestType,
  type Requests,
  type Room,
  type ServerEvents,
  type Ticket,
  type Welcome,
} from '../rendezvous.js';

const version: 1 = PROTOCOL_VERSION;

async function game(): Promise<void> {
  const client: Client = await connect('wss://game.example/ws', {
    name: 'ann',
    token: 'jwt',
    reconnect: { initialDelayMs: 200, maxAttempts: 10 },
    requestTimeoutMs: 5000,
    heartbeat: true,
  });
  // @ts-expect-error: reconnect takes a boolean or options
  await connect('ws://x/ws', { reconnect: 'yes' });

  const welcome: Welcome | null = client.welcome;
  const features: Feature[] = welcome?.features ?? [];
  const id: string | null = client.playerId;

  const { room, created } = await client.findMatch({ maxPlayers: 2, mode: 'duel', filters: { map: 'moon' } });
  const size: number = room.max_players;
  const isNew: boolean = created;
  // @ts-expect-error: filters hold strings, numbers and booleans only
  await client.findMatch({ filters: { map: ['moon'] } });
  // @ts-expect-error: the option is camelCase
  await client.findMatch({ max_players: 2 });

  const priv = await client.createRoom({ maxPlayers: 4, private: true, data: { map: 'moon' }, allowedRoles: ['vip'] });
  const code: string | undefined = priv.room.code;
  await client.joinRoom('K7QX2M');
  await client.joinRoom({ roomId: room.room_id });
  await client.joinRoom({ code: 'K7QX2M', as: 'spectator' });
  // @ts-expect-error: a room id or a code
  await client.joinRoom({ as: 'spectator' });
  const listed: Room[] = (await client.listRooms({ status: 'active', limit: 10 })).rooms;
  // @ts-expect-error: finished rooms are not listed
  await client.listRooms({ status: 'finished' });
  await client.startGame();
  await client.finishGame({ winner: id });
  await client.setRoomData({ round: 2 });
  await client.setPlayerData({ ready: true });
  await client.kick('p_x');
  await client.chat('gg');
  // 1.2: ready checks and room messages.
  const readyRoom: Room = (await client.setReady(true)).room;
  const flags: (boolean | undefined)[] = readyRoom.players.map((p) => p.ready);
  await client.createRoom({ maxPlayers: 4, startWhenReady: true });
  await client.findMatch({ maxPlayers: 2, startWhenReady: true });
  await client.sendMessage({ move: 4 });
  await client.sendMessage([1, 2], { to: 'p_bob' });
  const delivered: number = (await client.sendMessageWithReply('hi', { to: 'p_bob' })).delivered;
  client.on('message', (m) => {
    const from: string = m.from;
    const data: unknown = m.data;
  });
  client.on('player_ready', (e) => {
    const ready: boolean = e.ready;
  });
  // @ts-expect-error: ready is a boolean
  await client.setReady('yes');
  // @ts-expect-error: `to` is a player id
  await client.sendMessage(1, { to: 5 });
  const { rtt_ms, server_time } = await client.ping();
  const stats = (await client.subscribeStats(1000)).stats;
  const total: number = stats.total_rooms;
  await client.subscribeStats({ intervalMs: 500 });
  await client.unsubscribeStats();
  await client.subscribeRooms({ mode: 'duel' });
  await client.unsubscribeRooms();
  await client.sendOffer('p_x', 'v=0');
  await client.sendAnswer('p_x', 'v=0');
  await client.sendIceCandidate('p_x', null);
  await client.sendIceCandidate('p_x', { candidate: 'candidate:1 1 udp 1 127.0.0.1 9 typ host', sdpMid: '0' });
  await client.leaveRoom();

  // Generic requests: fields and replies typed by request type.
  const joined = await client.request('join_room', { code: 'K7QX2M' });
  const r: Room = joined.room;
  // @ts-expect-error: kick needs player_id
  await client.request('kick', {});
  // @ts-expect-error: sdp is a string
  await client.request('offer', { to: 'p_x', sdp: 1 });
  await client.request('ice_candidate', { to: 'p_x', candidate: '' });
  // 1.1 requests, behind welcome.features.
  if (features.includes('tickets')) {
    const { ticket } = await client.request('queue_match', {
      mode: 'ranked', max_players: 4, min_players: 2, skill: 1500, regions: { eu: 30, us: 110 }, max_rtt_ms: 120,
    });
    const ticketId: string = ticket.ticket_id;
    await client.request('cancel_match');

    const queued: Ticket = await client.queueMatch({
      mode: 'ranked', maxPlayers: 4, minPlayers: 2, skill: 1500, skillWindow: 50, skillWidenPerS: 25,
      skillWindowMax: 400, regions: { eu: 30, us: 110 }, maxRttMs: 120, filters: { map: 'moon' }, backfill: true,
    });
    const mates: string[] = queued.players;
    const since: string = queued.queued_at;
    const options: QueueMatchOptions = { maxPlayers: 2, mode: 'duel' };
    await client.queueMatch(options);
    await client.queueMatch();
    const cancelled: {} = await client.cancelMatch();
    // @ts-expect-error: the option is camelCase
    await client.queueMatch({ max_players: 2 });
    // @ts-expect-error: an RTT is a number of milliseconds
    await client.queueMatch({ regions: { eu: '30ms' } });
    // @ts-expect-error: queueMatch resolves with the ticket, not the reply
    (await client.queueMatch()).ticket;
    try {
      await client.cancelMatch();
    } catch (err) {
      const nothingQueued: boolean = err instanceof RendezvousError && err.code === 'not_queued';
    }
    const matched = await client.waitFor('game_start', { filter: (m) => m.ticket_id === queued.ticket_id });
    const expired = await client.waitFor('ticket_expired', { filter: (m) => m.ticket_id === queued.ticket_id });
    const expiredId: string = expired.ticket_id;
    client.on('stats', ({ stats }) => {
      const waiting: number | undefined = stats.tickets_queued;
    });
  }
  if (features.includes('parties')) {
    const { party } = await client.request('create_party', { max_size: 3 });
    const leader: string = party.leader;
    await client.request('join_party', { code: party.code });
    await client.request('leave_party');

    const mine: Party = await client.createParty({ maxSize: 2 });
    await client.createParty();
    const link = `https://game.example/?party=${mine.code}`;
    const friends: Party = await client.joinParty('k7qx2m');
    const first: PartyMember = friends.members[0];
    const online: boolean = first.connected;
    const tracked: Party | null = client.party;
    const leads: boolean = client.isPartyLeader;
    // @ts-expect-error: the option is camelCase
    await client.createParty({ max_size: 2 });
    // @ts-expect-error: createParty resolves with the party, not the reply
    (await client.createParty()).party;
    // @ts-expect-error: a party code is a string
    await client.joinParty(123456);
    client.on('party', (current, cause) => {
      const size: number | undefined = current?.members.length;
      const why: 'party_updated' | undefined = cause?.type;
    });
    client.on('room_joined', ({ room }) => room.room_id);
    client.on('ticket_cancelled', ({ ticket_id }) => ticket_id);
    // The leader's findMatch seats the party; its rooms may take spectators.
    await client.findMatch({ maxPlayers: 2, maxSpectators: 4 });
    const left: {} = await client.leaveParty();
    try {
      await client.joinParty('NOPE12');
    } catch (err) {
      const gone: boolean = err instanceof RendezvousError
        && (err.code === 'party_not_found' || err.code === 'party_full' || err.code === 'already_in_party');
    }
  }
  if (features.includes('spectators')) {
    const { room: watched } = await client.spectate('K7QX2M');
    const watchers: number = watched.spectators?.length ?? 0;
    const places: number | undefined = watched.max_spectators;
    const watching: boolean = client.isSpectator;
    client.on('spectator_joined', ({ player }) => player.name);
    client.on('spectator_left', ({ player_id, reason }) => {
      const why: 'left' | 'kicked' | 'timeout' | 'closed' = reason;
    });
  }
  // A request a newer server knows: untyped, but allowed.
  const extra: { [field: string]: unknown } = await client.request('some_future_request', { x: 1 });

  // Events: payloads typed by event name.
  client.on('chat', (m) => {
    const text: string = m.text;
    // @ts-expect-error: chat events have no `sdp`
    m.sdp;
  });
  client.on('player_left', ({ reason }) => {
    const why: 'left' | 'kicked' | 'timeout' | 'closed' = reason;
  });
  client.on('game_start', ({ room, ticket_id, allocation }) => {
    const players = room.players.map((p) => p.player_id);
    const t: string | undefined = ticket_id;
  });
  client.on('ice_candidate', (m) => {
    const end: boolean = m.candidate === '';
  });
  client.on('room', (current, cause) => {
    const rid: string | undefined = current?.room_id;
    const t: string | undefined = cause?.type;
  });
  client.on('close', ({ code, willReconnect }) => {});
  client.on('reconnecting', ({ attempt, delayMs }) => {});
  client.on('error', (e) => {
    const c: string = e.code;
  });
  client.on('party_updated', ({ party }) => party.members.length);
  client.on('ticket_expired', ({ ticket_id }) => ticket_id);
  client.on('*', (m) => m.type);
  client.on('outgoing', (m) => m.rid);
  client.on('some_future_event', (m) => m.type);
  // @ts-expect-error: a chat handler does not get a room
  client.on('chat', (m: Room) => {});
  const off = client.once('stats', ({ stats }) => stats.connections);
  off();
  const history: ChatEvent[] = (await client.waitFor('chat_history', { timeoutMs: 1000 })).messages;
  const start = await client.waitFor('game_start', { filter: (m) => m.room.players.length === 2 });

  // Errors.
  try {
    await client.joinRoom('NOPE12');
  } catch (err) {
    if (err instanceof RendezvousError && err.code === 'room_full') {
      const req: string | undefined = err.request;
    }
  }

  // Mesh.
  const mesh: Mesh = client.mesh({
    onPeerOpen: (peerId, peer: PeerState) => mesh.send(peerId, { hello: client.playerId }),
    onPeerMessage: (peerId, data) => console.log(peerId, data),
    onPeerClose: (peerId, reason) => {},
    rtcConfig: { iceTransportPolicy: 'relay' },
    offerTimeoutMs: 0,
  });
  mesh.on('peer_state', (peerId, state) => state.channelState);
  mesh.on('signal_error', (peerId, err, stage) => {});
  const sent: number = mesh.broadcast(new Uint8Array([1, 2]));
  const ids: string[] = mesh.peerIds;
  const states: PeerState[] = mesh.states();
  mesh.close();
  client.close();
}

// Every request and event of the protocol has a declaration (a type missing
// from these lists, or listed but not declared, is a compile error).
type Exactly<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const requests = [
  'find_match', 'create_room', 'join_room', 'leave_room', 'list_rooms', 'start_game', 'finish_game',
  'set_room_data', 'set_player_data', 'kick', 'offer', 'answer', 'ice_candidate', 'chat', 'ping',
  'subscribe_stats', 'unsubscribe_stats', 'subscribe_rooms', 'unsubscribe_rooms',
  'queue_match', 'cancel_match', 'create_party', 'join_party', 'leave_party',
  'set_ready', 'send',
] as const;
const allRequests: Exactly<(typeof requests)[number], RequestType> = true;
const events = [
  'welcome', 'player_joined', 'player_left', 'player_disconnected', 'player_reconnected', 'host_changed',
  'room_status', 'game_start', 'room_data', 'player_data', 'kicked', 'offer', 'answer', 'ice_candidate',
  'chat', 'chat_history', 'announcement', 'stats', 'room_listed', 'room_updated', 'room_delisted',
  'server_shutdown', 'ticket_expired', 'ticket_queued', 'ticket_cancelled', 'party_updated', 'room_joined',
  'spectator_joined', 'spectator_left', 'player_ready', 'message',
] as const;
const allEvents: Exactly<(typeof events)[number], keyof ServerEvents> = true;
// Each event's `type` field is its own name.
const tagged: { [E in keyof ServerEvents]: ServerEvents[E]['type'] extends E ? true : false } = {} as any;
const allTagged: Exactly<(typeof tagged)[keyof ServerEvents], true> = true;

export { game, version, allRequests, allEvents, allTagged };
