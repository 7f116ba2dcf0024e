// Rendezvous demo: lobby + matchmaking through the server, then tic-tac-toe
// (2 players) or a tap race (3-4 players) and a chat, peer to peer over
// WebRTC DataChannels. No gameplay message goes through the server. A party
// ("Play with a friend") lets a leader's Find match seat friends together;
// `/?party=CODE` joins one. `/?spectate=ROOM_ID` watches a room read-only:
// players, status and the room chat, which players' chat lines also reach
// through the server when the room has spectator places.
import { connect } from './rendezvous.js';

const $ = (selector) => document.querySelector(selector);
const els = {
  conn: $('#conn-status'),
  lobbyView: $('#lobby-view'),
  lobbyForm: $('#lobby-form'),
  name: $('#name'),
  playersSelect: $('#players-select'),
  findMatch: $('#find-match'),
  findHint: $('#find-hint'),
  partyStart: $('#party-start'),
  createParty: $('#create-party'),
  partyJoinForm: $('#party-join-form'),
  partyCodeInput: $('#party-code-input'),
  joinParty: $('#join-party'),
  partyInvite: $('#party-invite'),
  partyBox: $('#party-box'),
  partySize: $('#party-size'),
  partyCode: $('#party-code'),
  partyLink: $('#party-link'),
  copyPartyLink: $('#copy-party-link'),
  partyMembers: $('#party-members'),
  partyHint: $('#party-hint'),
  leaveParty: $('#leave-party'),
  createPrivate: $('#create-private'),
  joinForm: $('#join-form'),
  joinCode: $('#join-code'),
  joinBtn: $('#join-btn'),
  lobbyError: $('#lobby-error'),
  roomView: $('#room-view'),
  roomStatus: $('#room-status'),
  spectating: $('#spectating'),
  spectators: $('#spectators'),
  roomParty: $('#room-party'),
  roomCodeBox: $('#room-code-box'),
  roomCode: $('#room-code'),
  copyCode: $('#copy-code'),
  roomSize: $('#room-size'),
  roomMode: $('#room-mode'),
  players: $('#players'),
  roomHint: $('#room-hint'),
  startGame: $('#start-game'),
  leaveRoom: $('#leave-room'),
  roomError: $('#room-error'),
  peersCard: $('#peers-card'),
  peerState: $('#peer-state'),
  game: $('#game'),
  watch: $('#watch'),
  roomChatLog: $('#room-chat-log'),
  roomChatForm: $('#room-chat-form'),
  roomChatInput: $('#room-chat-input'),
  chatRoute: $('#chat-route'),
  ttt: $('#ttt'),
  tttMark: $('#ttt-mark'),
  turn: $('#turn-indicator'),
  board: $('#board'),
  rematch: $('#rematch'),
  tapRace: $('#tap-race'),
  tap: $('#tap'),
  tapTotal: $('#tap-total'),
  tallies: $('#tallies'),
  chatLog: $('#p2p-chat-log'),
  chatForm: $('#p2p-chat-form'),
  chatInput: $('#p2p-chat-input'),
  toast: $('#toast'),
  allocation: $('#allocation'),
};

const WS_URL = (() => {
  const u = new URL('./ws', location.href);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  u.search = '';
  u.hash = '';
  return u.toString();
})();

const SIGNAL_TYPES = new Set(['offer', 'answer', 'ice_candidate']);
/** Spectator places of the rooms the demo makes (Find match, private room). */
const SPECTATOR_PLACES = 4;
/** Size of the parties "Play with a friend" makes (room for the 4-player game). */
const PARTY_SIZE = 4;

/** @type {import('./rendezvous.js').Client|null} */
let client = null;
/** @type {import('./rendezvous.js').Mesh|null} */
let mesh = null;
/** Current P2P game, or null. */
let game = null;
/** Last known display name of every player seen (for messages about players who left). */
const names = new Map();
/** Peer states by player id, from mesh.onPeerState. */
const peerStates = new Map();

// Debug hook for tests and the curious: the client, the mesh and every signal seen.
const debug = { client: null, mesh: null, signals: [], signalErrors: [] };
window.__rendezvous = debug;

// ---- Small helpers -------------------------------------------------------------

const ERROR_TEXT = {
  room_not_found: 'No room with that code.',
  room_full: 'That room is full.',
  room_not_waiting: 'That game has already started.',
  forbidden: 'You are not allowed in that room.',
  already_in_room: 'You are already in a room.',
  not_enough_players: 'At least 2 players are needed to start.',
  not_host: 'Only the host can do that.',
  rate_limited: 'Slow down a little.',
  connect_failed: 'Cannot reach the server.',
  disconnected: 'Connection to the server lost. Reconnecting…',
  timeout: 'The server did not answer in time.',
  limit_reached: 'The server has too many rooms right now.',
  already_in_party: 'You are already in a party.',
  party_not_found: 'No party with that code.',
  party_full: 'That party is full.',
  not_in_party: 'You are not in a party.',
  not_party_leader: 'The party leader starts the match.',
};

function errorText(err) {
  return ERROR_TEXT[err && err.code] || (err && err.message) || String(err);
}

function show(el, visible) {
  el.hidden = !visible;
}

let toastTimer = null;
function toast(text) {
  els.toast.textContent = text;
  show(els.toast, true);
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => show(els.toast, false), 3500);
}

function showLobbyError(text) {
  els.lobbyError.textContent = text || '';
  show(els.lobbyError, !!text);
}

function showRoomError(text) {
  els.roomError.textContent = text || '';
  show(els.roomError, !!text);
}

function hue(id) {
  let h = 0;
  for (const c of String(id)) h = (h * 31 + c.charCodeAt(0)) % 360;
  return h;
}

function avatar(player) {
  const span = document.createElement('span');
  span.className = 'avatar';
  span.style.setProperty('--hue', hue(player.player_id));
  span.textContent = (player.name || '?').trim().charAt(0).toUpperCase() || '?';
  span.setAttribute('aria-hidden', 'true');
  return span;
}

function nameOf(id) {
  if (client && id === client.playerId) return 'You';
  return names.get(id) || id;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('data-') || key.startsWith('aria-') || key === 'title') node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

let busyNow = false;
async function busy(button, fn) {
  const buttons = [els.findMatch, els.createPrivate, els.joinBtn, els.createParty, els.joinParty];
  buttons.forEach((b) => { b.disabled = true; });
  busyNow = true;
  button.classList.add('loading');
  try {
    await fn();
  } catch (err) {
    showLobbyError(errorText(err));
  } finally {
    busyNow = false;
    buttons.forEach((b) => { b.disabled = false; });
    button.classList.remove('loading');
    renderParty(); // a party member other than the leader keeps Find match disabled
  }
}

// ---- Connection ----------------------------------------------------------------

function setConn(state, text) {
  els.conn.dataset.state = state;
  els.conn.textContent = text || state;
}

/** Returns a connected client using the entered name, connecting (or reconnecting with a new name) if needed. */
async function ensureClient() {
  const name = els.name.value.trim();
  if (!name) {
    els.name.focus();
    throw Object.assign(new Error('Enter your name first.'), { code: 'no_name' });
  }
  localStorage.setItem('rdv.name', name);
  // A new name means a new connection (a new player), except in a party or a
  // room: those belong to this player, so it keeps its name.
  if (client && client.state !== 'closed' && (client.name === name || client.party || client.room)) {
    if (client.connected) return client;
    throw Object.assign(new Error('Reconnecting to the server, try again in a moment.'), { code: 'reconnecting' });
  }
  if (client) client.close();
  client = null;
  return openClient({ name });
}

async function openClient({ name, resumeToken }) {
  setConn('connecting', 'connecting…');
  let c;
  try {
    c = await connect(WS_URL, { name, resumeToken });
  } catch (err) {
    setConn('offline', 'offline');
    throw err;
  }
  client = c;
  debug.client = c;
  wire(c);
  sessionStorage.setItem('rdv.resume', c.resumeToken || '');
  sessionStorage.setItem('rdv.name', name);
  setConn('online', 'online');
  onRoom(c.room, null);
  return c;
}

function wire(c) {
  c.on('*', (m) => {
    if (SIGNAL_TYPES.has(m.type)) recordSignal('in', m);
  });
  c.on('outgoing', (m) => {
    if (SIGNAL_TYPES.has(m.type)) recordSignal('out', m);
  });
  c.on('welcome', (w) => {
    sessionStorage.setItem('rdv.resume', w.resume_token || '');
  });
  c.on('room', (room, cause) => {
    if (c === client) onRoom(room, cause);
  });
  c.on('party', (party, cause) => {
    if (c !== client) return;
    if (cause) partyToasts(cause.party);
    lastParty = party;
    renderParty();
    if (c.room) renderRoom(c.room);
  });
  c.on('room_joined', () => toast('Your party leader found a match'));
  c.on('chat', (m) => onServerChat(m));
  c.on('chat_history', (m) => {
    if (c !== client || !watching()) return;
    els.roomChatLog.replaceChildren();
    for (const line of m.messages || []) onServerChat(line);
  });
  c.on('spectator_joined', (m) => {
    if (m.player && m.player.player_id !== c.playerId) toast(`${m.player.name} is watching`);
  });
  c.on('game_start', (m) => {
    showAllocation(m);
    startP2P();
  });
  c.on('player_joined', (m) => toast(`${m.player.name} joined`));
  c.on('player_left', (m) => {
    const why = { kicked: 'was removed', timeout: 'lost connection', closed: 'left' }[m.reason] || 'left';
    if (m.player_id !== c.playerId) toast(`${nameOf(m.player_id)} ${why}`);
  });
  c.on('player_disconnected', (m) => toast(`${nameOf(m.player_id)} lost connection; seat held`));
  c.on('player_reconnected', (m) => toast(`${nameOf(m.player_id)} is back`));
  c.on('host_changed', (m) => toast(`${nameOf(m.host)} is now the host`));
  c.on('announcement', (m) => toast(`📣 ${m.text}`));
  c.on('server_shutdown', () => toast('Server restarting; reconnecting shortly…'));
  c.on('open', () => setConn('online', 'online'));
  c.on('reconnecting', ({ attempt }) => setConn('reconnecting', `reconnecting (${attempt})…`));
  c.on('resumed', () => toast('Reconnected'));
  c.on('session_lost', () => toast('Reconnected, but the seat was lost'));
  c.on('close', ({ willReconnect, code }) => {
    if (!willReconnect && c === client) setConn('offline', code === 4001 ? 'opened elsewhere' : 'offline');
  });
  c.on('error', (m) => console.warn('rendezvous error', m));
}

function recordSignal(direction, m) {
  const entry = { direction, at: new Date().toISOString(), ...m };
  debug.signals.push(entry);
  if (debug.signals.length > 500) debug.signals.shift();
}

// ---- Room ------------------------------------------------------------------------

/** Whether this page watches its room as a spectator (it has no seat in it). */
function watching() {
  return !!client && !!client.room && !client.room.players.some((p) => p.player_id === client.playerId);
}

function onRoom(room, cause) {
  if (!room) {
    stopP2P();
    stopWatching();
    show(els.roomView, false);
    show(els.lobbyView, true);
    renderParty();
    // Done watching: a reload should show the lobby, not spectate again.
    if (new URLSearchParams(location.search).has('spectate')) history.replaceState(null, '', location.pathname);
    if (cause && cause.type === 'spectator_left') {
      showLobbyError(cause.reason === 'closed' ? 'The game you were watching is over.'
        : cause.reason === 'kicked' ? 'The host removed you from the room.' : '');
    } else if (cause && cause.type === 'kicked') showLobbyError('The host removed you from the room.');
    else if (cause && cause.type === 'player_left' && cause.reason === 'closed') showLobbyError('The room was closed.');
    else if (cause && cause.type === 'player_left' && cause.reason === 'timeout') showLobbyError('Your seat was given up after a disconnection.');
    return;
  }
  showLobbyError('');
  show(els.lobbyView, false);
  show(els.roomView, true);
  renderRoom(room);
  if (watching()) {
    startWatching();
    return;
  }
  stopWatching();
  if (room.status !== 'waiting' && !mesh) startP2P();
  if (mesh) {
    renderPeers();
    renderGame();
  }
}

function renderRoom(room) {
  const me = client.playerId;
  const isHost = room.host === me;
  const spectator = watching();
  for (const p of [...room.players, ...(room.spectators || [])]) names.set(p.player_id, p.name);
  show(els.spectating, spectator);
  els.roomView.dataset.spectating = String(spectator);
  els.leaveRoom.textContent = spectator ? 'Stop watching' : 'Leave';
  const watchers = room.spectators || [];
  els.spectators.dataset.count = String(watchers.length);
  els.spectators.textContent = watchers.length
    ? `Watching (${watchers.length} / ${room.max_spectators}): ${watchers.map((p) => (p.player_id === me ? 'you' : p.name)).join(', ')}`
    : `Up to ${room.max_spectators} can watch.`;
  show(els.spectators, !!room.max_spectators);
  const party = client.party;
  const mates = party ? party.members.filter((m) => room.players.some((p) => p.player_id === m.player_id)) : [];
  els.roomParty.textContent = mates.length > 1 ? `Your party plays together: ${mates.map((m) => nameOf(m.player_id)).join(', ')}` : '';
  show(els.roomParty, mates.length > 1);
  els.chatRoute.textContent = room.max_spectators ? 'peer to peer · spectators read it too' : 'peer to peer';

  els.roomStatus.textContent = room.status;
  els.roomStatus.dataset.status = room.status;
  // The join code matters for private rooms (the protocol gives it to their members only).
  const showCode = !!room.code && room.visibility === 'private';
  if (showCode) els.roomCode.textContent = room.code;
  show(els.roomCodeBox, showCode);
  els.roomSize.textContent = `${room.players.length} / ${room.max_players}`;
  els.roomMode.textContent = room.visibility === 'private' ? 'private room' : 'public match';

  els.players.replaceChildren(...room.players.map((p) => {
    const li = el('li', {
      'data-player-id': p.player_id,
      'data-host': String(p.player_id === room.host),
      'data-connected': String(p.connected !== false),
      'data-me': String(p.player_id === me),
    });
    li.append(avatar(p));
    li.append(el('span', { class: 'pname', text: p.name }));
    if (p.player_id === me) li.append(el('span', { class: 'badge you', text: 'you' }));
    if (p.player_id === room.host) li.append(el('span', { class: 'badge host', text: 'host', 'data-testid': 'host-badge' }));
    li.append(el('span', {
      class: `dot ${p.connected === false ? 'off' : 'on'}`,
      title: p.connected === false ? 'disconnected (seat held)' : 'connected',
      'aria-label': p.connected === false ? 'disconnected' : 'connected',
    }));
    if (isHost && p.player_id !== me && room.status === 'waiting') {
      const kick = el('button', { class: 'btn small ghost kick', text: 'Kick', type: 'button', title: `Remove ${p.name}` });
      kick.addEventListener('click', () => client.kick(p.player_id).catch((err) => showRoomError(errorText(err))));
      li.append(kick);
    }
    return li;
  }));

  const waiting = room.status === 'waiting';
  show(els.startGame, isHost && waiting);
  els.startGame.disabled = room.players.length < 2;
  let hint;
  if (spectator) {
    hint = { waiting: 'You are watching: the game has not started yet.', active: 'You are watching the game.' }[room.status]
      || 'You are watching: this game is over.';
  } else if (waiting) {
    const free = room.max_players - room.players.length;
    if (isHost) {
      hint = room.players.length < 2
        ? `Waiting for players… ${showCode ? 'Share the code above.' : ''}`
        : `Start now, or the game starts by itself when ${free} more join.`;
    } else {
      hint = `Waiting for the host to start, or for ${free} more player${free === 1 ? '' : 's'}.`;
    }
  } else if (room.status === 'active') {
    hint = room.max_spectators ? 'Game on: moves go peer to peer; spectators see the chat.' : 'Game on: moves and chat go peer to peer.';
  } else {
    hint = 'This game is over.';
  }
  els.roomHint.textContent = hint.trim();
}

// ---- Party ("Play with a friend") ---------------------------------------------

/** The party as last rendered, to tell who joined or left when it changes. */
let lastParty = null;

function partyLink(code) {
  return `${location.origin}${location.pathname}?party=${code}`;
}

function partyToasts(next) {
  const before = lastParty;
  if (!before || !next) return;
  const had = new Set(before.members.map((m) => m.player_id));
  const has = new Set(next.members.map((m) => m.player_id));
  for (const m of next.members) if (!had.has(m.player_id)) toast(`${m.name} joined your party`);
  for (const m of before.members) if (!has.has(m.player_id)) toast(`${m.name} left the party`);
  if (before.leader !== next.leader && next.leader === client.playerId) toast('You lead the party now');
}

/** The party box, and Find match: in a party only the leader matches (for everyone). */
function renderParty() {
  const party = client ? client.party : null;
  const me = client ? client.playerId : null;
  const leader = !party || party.leader === me;
  show(els.partyStart, !party);
  show(els.partyBox, !!party);
  if (party) {
    for (const m of party.members) names.set(m.player_id, m.name);
    els.partyBox.dataset.leader = String(party.leader === me);
    els.partyCode.textContent = party.code;
    els.partyLink.value = partyLink(party.code);
    els.partySize.textContent = `${party.members.length} / ${party.max_size}`;
    els.partyMembers.replaceChildren(...party.members.map((m) => {
      const li = el('li', {
        'data-player-id': m.player_id,
        'data-leader': String(m.player_id === party.leader),
        'data-connected': String(m.connected !== false),
        'data-me': String(m.player_id === me),
      });
      li.append(avatar(m), el('span', { class: 'pname', text: m.name }));
      if (m.player_id === me) li.append(el('span', { class: 'badge you', text: 'you' }));
      if (m.player_id === party.leader) li.append(el('span', { class: 'badge host', text: 'leader' }));
      li.append(el('span', {
        class: `dot ${m.connected === false ? 'off' : 'on'}`,
        title: m.connected === false ? 'disconnected' : 'connected',
        'aria-label': m.connected === false ? 'disconnected' : 'connected',
      }));
      return li;
    }));
    let hint;
    if (party.leader !== me) hint = `${nameOf(party.leader)} leads the party and starts the match.`;
    else if (party.members.length < 2) hint = 'Send the link to a friend. Once they are in, Find match seats you together.';
    else hint = 'Pick the game and press Find match: your party plays together.';
    els.partyHint.textContent = hint;
  }
  if (!busyNow) els.findMatch.disabled = !leader;
  els.findHint.textContent = leader ? '' : 'The party leader starts the match.';
  show(els.findHint, !leader);
}

/**
 * Runs a create/join party request. After a page reload the server still
 * counts this player in its old party, which the resumed welcome does not
 * name: then the stale party is left and the request tried again.
 */
async function withFreshParty(c, request) {
  try {
    return await request();
  } catch (err) {
    if (err.code !== 'already_in_party' || c.party) throw err;
    await c.leaveParty().catch(() => {});
    return request();
  }
}

function joinPartyByCode(code) {
  return busy(els.joinParty, async () => {
    showLobbyError('');
    if (!/^[A-Z0-9]{6}$/.test(code)) throw new Error('A party code has 6 letters or digits.');
    const c = await ensureClient();
    if (c.party && c.party.code === code) return;
    await withFreshParty(c, () => c.joinParty(code));
    show(els.partyInvite, false);
    // The invitation is used: a reload should not join again.
    if (new URLSearchParams(location.search).has('party')) history.replaceState(null, '', location.pathname);
  });
}

// ---- Spectating (/?spectate=ROOM_ID) ---------------------------------------------

/** The room id this page watches, while it shows the watch view. */
let watchedRoom = null;

function startWatching() {
  const id = client.room.room_id;
  if (watchedRoom === id) return;
  stopP2P();
  watchedRoom = id;
  els.roomChatLog.replaceChildren();
  show(els.watch, true);
  $('#room-grid').classList.add('playing');
}

function stopWatching() {
  if (watchedRoom === null) return;
  watchedRoom = null;
  show(els.watch, false);
  if (!mesh) $('#room-grid').classList.remove('playing');
}

async function startSpectating(target) {
  showLobbyError('');
  try {
    let c = client;
    if (!c || !c.connected) c = await openClient({ name: els.name.value.trim() || 'spectator' });
    if (c.room && c.room.room_id === target) return; // resumed: already watching it
    if (c.room) {
      toast('Leave this room to watch another one.');
      return;
    }
    await c.spectate(target);
  } catch (err) {
    const text = { room_full: 'No spectator place left in that room.', room_not_found: 'That game is over.' }[err.code];
    showLobbyError(text || errorText(err));
  }
}

/** A `chat` through the server: the room chat when watching; the spectators' lines when playing. */
function onServerChat(m) {
  if (!client || !client.room || m.room_id !== client.room.room_id) return;
  if (watching()) {
    addRoomChat(m);
    return;
  }
  // Players get each other's lines peer to peer; the server's copies are for the spectators.
  if (client.room.players.some((p) => p.player_id === m.from)) return;
  addChat(m.from, m.text, { watcher: m.name });
}

function addRoomChat(m) {
  const mine = m.from === client.playerId;
  const player = client.room.players.some((p) => p.player_id === m.from);
  const line = el('div', { class: `msg${mine ? ' mine' : ''}${player ? '' : ' watcher'}`, 'data-from': m.from });
  line.append(el('span', { class: 'who', text: mine ? 'You' : player ? m.name : `${m.name} (watching)` }));
  line.append(el('span', { class: 'text', text: String(m.text) }));
  els.roomChatLog.append(line);
  els.roomChatLog.scrollTop = els.roomChatLog.scrollHeight;
}

// ---- Peer to peer --------------------------------------------------------------

function startP2P() {
  if (mesh || !client || !client.room || watching()) return;
  const room = client.room;
  const players = room.players.map((p) => p.player_id);
  peerStates.clear();
  els.chatLog.replaceChildren();
  mesh = client.mesh({
    onPeerOpen: (peerId) => {
      systemChat(`${nameOf(peerId)} connected peer to peer`);
      mesh.send(peerId, syncMessage());
      renderPeers();
      renderGame();
    },
    onPeerMessage: onPeerMessage,
    onPeerClose: (peerId, reason) => {
      peerStates.delete(peerId);
      if (reason !== 'closed') systemChat(`${nameOf(peerId)} disconnected (${reason})`);
      renderPeers();
      renderGame();
    },
    onPeerState: (peerId, state) => {
      peerStates.set(peerId, state);
      renderPeers();
      if (game && game.kind === 'ttt') renderGame();
    },
  });
  mesh.on('signal_error', (peerId, err, stage) => {
    debug.signalErrors.push({ peerId, stage, code: err && err.code, message: err && err.message });
    console.warn(`signal ${stage} with ${peerId}:`, err);
  });
  debug.mesh = mesh;

  if (players.length === 2) {
    game = { kind: 'ttt', x: players[0], o: players[1], round: 0, moves: [] };
  } else {
    game = { kind: 'tap', players, counts: new Map(players.map((id) => [id, 0])) };
  }
  show(els.game, true);
  show(els.peersCard, true);
  $('#room-grid').classList.add('playing');
  show(els.ttt, game.kind === 'ttt');
  show(els.tapRace, game.kind === 'tap');
  for (const s of mesh.states()) peerStates.set(s.peerId, s);
  renderPeers();
  renderGame();
}

/**
 * With the server's allocation hook, game_start says where the game runs: a
 * dedicated server (the allocator's answer, shown by its `address`, else as
 * compact JSON) or, when the allocator failed, peer to peer and why.
 * Without the hook game_start has neither field and nothing is shown.
 */
function showAllocation(m) {
  const box = els.allocation;
  if (m.allocation && typeof m.allocation === 'object') {
    const a = m.allocation;
    let where = typeof a.address === 'string' ? a.address : JSON.stringify(a);
    if (where.length > 160) where = `${where.slice(0, 157)}…`;
    box.replaceChildren('Dedicated server: ', el('code', { text: where }));
    box.dataset.state = 'dedicated';
    box.title = JSON.stringify(a);
  } else if ('allocation_error' in m || 'allocation' in m) {
    box.textContent = `No dedicated server (${m.allocation_error || 'no answer'}): peer to peer`;
    box.dataset.state = 'p2p';
    box.title = '';
  } else {
    box.dataset.state = '';
    show(box, false);
    return;
  }
  show(box, true);
}

function stopP2P() {
  if (mesh) mesh.close();
  mesh = null;
  debug.mesh = null;
  game = null;
  peerStates.clear();
  show(els.game, false);
  show(els.allocation, false);
  els.allocation.dataset.state = '';
  show(els.peersCard, false);
  $('#room-grid').classList.remove('playing');
  els.peerState.replaceChildren();
}

function channelOpen(peerId) {
  const s = peerStates.get(peerId) || (mesh && mesh.state(peerId));
  return !!s && s.channelState === 'open';
}

function renderPeers() {
  if (!mesh || !client.room) return;
  const others = client.room.players.filter((p) => p.player_id !== client.playerId);
  els.peerState.replaceChildren(...others.map((p) => {
    const s = peerStates.get(p.player_id) || mesh.state(p.player_id)
      || { connectionState: 'closed', channelState: 'closed', iceConnectionState: 'closed' };
    const level = s.channelState === 'open' && s.connectionState === 'connected' ? 'good'
      : ['failed', 'closed'].includes(s.connectionState) ? 'bad' : 'warn';
    const li = el('li', {
      class: level,
      'data-peer': p.player_id,
      'data-pc-state': s.connectionState,
      'data-dc-state': s.channelState,
      'data-ice-state': s.iceConnectionState,
    });
    li.append(avatar(p));
    li.append(el('span', { class: 'pname', text: p.name }));
    li.append(el('span', { class: 'states' },
      el('span', { class: 'state-item', text: `peer: ${s.connectionState}`, 'data-testid': 'pc-state' }),
      el('span', { class: 'state-item', text: `channel: ${s.channelState}`, 'data-testid': 'dc-state' })));
    return li;
  }));
}

function syncMessage() {
  if (!game) return { t: 'sync' };
  if (game.kind === 'ttt') return { t: 'sync', ttt: { round: game.round, moves: game.moves } };
  return { t: 'sync', tap: game.counts.get(client.playerId) || 0 };
}

function onPeerMessage(peerId, msg) {
  if (!msg || typeof msg !== 'object') return;
  switch (msg.t) {
    case 'chat':
      if (typeof msg.text === 'string' && msg.text.trim()) addChat(peerId, msg.text.slice(0, 500));
      break;
    case 'move':
      if (game && game.kind === 'ttt') remoteMove(peerId, msg);
      break;
    case 'reset':
      if (game && game.kind === 'ttt' && Number.isInteger(msg.round) && msg.round > game.round) {
        game.round = msg.round;
        game.moves = [];
        renderGame();
      }
      break;
    case 'sync':
      if (game && game.kind === 'ttt' && msg.ttt) adoptTtt(msg.ttt);
      if (game && game.kind === 'tap' && Number.isInteger(msg.tap)) setTap(peerId, msg.tap);
      break;
    case 'tap':
      if (game && game.kind === 'tap' && Number.isInteger(msg.count)) setTap(peerId, msg.count);
      break;
    default:
      break;
  }
}

// ---- Tic-tac-toe ---------------------------------------------------------------

const LINES = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 3, 6], [1, 4, 7], [2, 5, 8], [0, 4, 8], [2, 4, 6]];

/** X starts even rounds, O odd rounds; marks alternate from the starter. */
function markAt(round, index) {
  const starter = round % 2 === 0 ? 'X' : 'O';
  return index % 2 === 0 ? starter : (starter === 'X' ? 'O' : 'X');
}

function boardOf(g) {
  const board = Array(9).fill(null);
  g.moves.forEach((cell, i) => { board[cell] = markAt(g.round, i); });
  return board;
}

function outcome(board) {
  for (const line of LINES) {
    const [a, b, c] = line;
    if (board[a] && board[a] === board[b] && board[a] === board[c]) return { winner: board[a], line };
  }
  if (board.every(Boolean)) return { winner: null, line: [] };
  return null;
}

function myMark(g) {
  if (client.playerId === g.x) return 'X';
  if (client.playerId === g.o) return 'O';
  return null;
}

function playerOfMark(g, mark) {
  return mark === 'X' ? g.x : g.o;
}

function validMoves(g, moves) {
  const seen = new Set();
  for (const cell of moves) {
    if (!Number.isInteger(cell) || cell < 0 || cell > 8 || seen.has(cell)) return false;
    seen.add(cell);
  }
  return moves.length <= 9;
}

function playCell(cell) {
  const g = game;
  if (!g || g.kind !== 'ttt') return;
  const board = boardOf(g);
  const mine = myMark(g);
  const opponent = playerOfMark(g, mine === 'X' ? 'O' : 'X');
  if (outcome(board) || board[cell] || markAt(g.round, g.moves.length) !== mine) return;
  if (!channelOpen(opponent)) {
    toast('Not connected to your opponent yet');
    return;
  }
  g.moves.push(cell);
  mesh.send(opponent, { t: 'move', round: g.round, n: g.moves.length - 1, cell });
  renderGame();
}

function remoteMove(peerId, msg) {
  const g = game;
  if (msg.round !== g.round) {
    if (msg.round > g.round) mesh.send(peerId, syncMessage());
    return;
  }
  if (msg.n < g.moves.length) return; // duplicate
  const board = boardOf(g);
  const mark = markAt(g.round, g.moves.length);
  const legal = msg.n === g.moves.length && playerOfMark(g, mark) === peerId && Number.isInteger(msg.cell)
    && msg.cell >= 0 && msg.cell <= 8 && !board[msg.cell] && !outcome(board);
  if (!legal) {
    mesh.send(peerId, syncMessage()); // out of step: offer our view
    return;
  }
  g.moves.push(msg.cell);
  renderGame();
}

function adoptTtt(s) {
  const g = game;
  if (!Number.isInteger(s.round) || !Array.isArray(s.moves) || !validMoves(g, s.moves)) return;
  const newer = s.round > g.round
    || (s.round === g.round && s.moves.length > g.moves.length && g.moves.every((c, i) => s.moves[i] === c));
  if (!newer) return;
  g.round = s.round;
  g.moves = s.moves.slice();
  renderGame();
}

function rematch() {
  const g = game;
  if (!g || g.kind !== 'ttt') return;
  g.round += 1;
  g.moves = [];
  mesh.broadcast({ t: 'reset', round: g.round });
  renderGame();
}

function renderTtt() {
  const g = game;
  const board = boardOf(g);
  const result = outcome(board);
  const mine = myMark(g);
  const turnMark = markAt(g.round, g.moves.length);
  const opponent = playerOfMark(g, mine === 'X' ? 'O' : 'X');
  const opponentHere = !!client.room && client.room.players.some((p) => p.player_id === opponent);
  const connected = channelOpen(opponent);
  const myTurn = !result && connected && turnMark === mine;

  els.tttMark.textContent = `you are ${mine || '—'}`;
  els.board.querySelectorAll('.cell').forEach((cellEl) => {
    const i = Number(cellEl.dataset.cell);
    cellEl.textContent = board[i] || '';
    cellEl.dataset.mark = board[i] || '';
    cellEl.classList.toggle('win', !!result && result.line.includes(i));
    cellEl.disabled = !myTurn || !!board[i];
  });

  let text;
  let state;
  if (!opponentHere) {
    text = `${nameOf(opponent)} left the game`;
    state = 'opponent-left';
  } else if (result && result.winner) {
    const won = result.winner === mine;
    text = won ? 'You win! 🎉' : `${nameOf(playerOfMark(g, result.winner))} wins`;
    state = won ? 'won' : 'lost';
  } else if (result) {
    text = 'Draw';
    state = 'draw';
  } else if (!connected) {
    text = `Connecting to ${nameOf(opponent)}…`;
    state = 'connecting';
  } else if (myTurn) {
    text = `Your turn (${mine})`;
    state = 'my-turn';
  } else {
    text = `${nameOf(opponent)}'s turn (${turnMark})`;
    state = 'their-turn';
  }
  els.turn.textContent = text;
  els.turn.dataset.myTurn = String(myTurn);
  els.turn.dataset.state = state;
  els.turn.dataset.mark = mine || '';
  show(els.rematch, !!result && opponentHere && connected);
}

// ---- Tap race ------------------------------------------------------------------

function setTap(peerId, count) {
  const g = game;
  if (!g.counts.has(peerId)) return;
  if (count > g.counts.get(peerId)) {
    g.counts.set(peerId, count);
    renderGame();
  }
}

function tap() {
  const g = game;
  if (!g || g.kind !== 'tap') return;
  const count = (g.counts.get(client.playerId) || 0) + 1;
  g.counts.set(client.playerId, count);
  mesh.broadcast({ t: 'tap', count });
  renderGame();
}

function renderTap() {
  const g = game;
  const present = new Set((client.room?.players || []).map((p) => p.player_id));
  const total = [...g.counts.values()].reduce((a, b) => a + b, 0);
  const max = Math.max(1, ...g.counts.values());
  els.tapTotal.textContent = String(total);
  els.tallies.replaceChildren(...g.players.map((id) => {
    const count = g.counts.get(id) || 0;
    const li = el('li', { 'data-player-id': id, 'data-count': String(count) });
    if (!present.has(id)) li.classList.add('gone');
    li.append(el('span', { class: 'pname', text: nameOf(id) }));
    const bar = el('span', { class: 'bar' });
    bar.style.setProperty('--w', `${(count / max) * 100}%`);
    bar.style.setProperty('--hue', hue(id));
    li.append(bar, el('strong', { text: String(count) }));
    return li;
  }));
}

function renderGame() {
  if (!game) return;
  if (game.kind === 'ttt') renderTtt();
  else renderTap();
}

// ---- Chat (over the DataChannel) -----------------------------------------------

function addChat(fromId, text, { undelivered = false, watcher = null } = {}) {
  const mine = fromId === client.playerId;
  const cls = `msg${mine ? ' mine' : ''}${undelivered ? ' undelivered' : ''}${watcher ? ' watcher' : ''}`;
  const line = el('div', { class: cls, 'data-from': fromId });
  line.append(el('span', { class: 'who', text: mine ? 'You' : watcher ? `${watcher} (watching)` : nameOf(fromId) }));
  line.append(el('span', { class: 'text', text }));
  els.chatLog.append(line);
  els.chatLog.scrollTop = els.chatLog.scrollHeight;
}

function systemChat(text) {
  els.chatLog.append(el('div', { class: 'msg system', text }));
  els.chatLog.scrollTop = els.chatLog.scrollHeight;
}

// ---- UI wiring -----------------------------------------------------------------

els.lobbyForm.addEventListener('submit', (event) => {
  event.preventDefault();
  busy(els.findMatch, async () => {
    showLobbyError('');
    const c = await ensureClient();
    const maxPlayers = Number(els.playersSelect.value);
    if (c.party && !c.isPartyLeader) throw new Error('The party leader starts the match.');
    if (c.party && c.party.members.length > maxPlayers) {
      throw new Error(`Your party has ${c.party.members.length} players: pick a bigger game.`);
    }
    // A party leader's find_match seats the whole party; the others get room_joined.
    try {
      await c.findMatch({ maxPlayers, maxSpectators: SPECTATOR_PLACES });
    } catch (err) {
      // The leader is in no room, so a member is (the party moves together).
      if (err.code === 'already_in_room' && c.party && !c.room) {
        throw new Error('Someone in your party is still in a game: wait for them to leave it.');
      }
      throw err;
    }
  });
});

els.createParty.addEventListener('click', () => {
  busy(els.createParty, async () => {
    showLobbyError('');
    const c = await ensureClient();
    await withFreshParty(c, () => c.createParty({ maxSize: PARTY_SIZE }));
  });
});

els.partyJoinForm.addEventListener('submit', (event) => {
  event.preventDefault();
  joinPartyByCode(els.partyCodeInput.value.trim().toUpperCase());
});

els.partyCodeInput.addEventListener('input', () => {
  els.partyCodeInput.value = els.partyCodeInput.value.toUpperCase().replace(/[^A-Z0-9]/g, '');
});

els.leaveParty.addEventListener('click', async () => {
  showLobbyError('');
  try {
    await client.leaveParty();
  } catch (err) {
    if (err.code !== 'not_in_party') showLobbyError(errorText(err));
  }
  renderParty();
});

els.copyPartyLink.addEventListener('click', async () => {
  try {
    await navigator.clipboard.writeText(els.partyLink.value);
    toast('Invite link copied');
  } catch {
    els.partyLink.select();
    toast('Copy the link and send it to a friend');
  }
});

els.createPrivate.addEventListener('click', () => {
  busy(els.createPrivate, async () => {
    showLobbyError('');
    const c = await ensureClient();
    await c.createRoom({ maxPlayers: Number(els.playersSelect.value), private: true, maxSpectators: SPECTATOR_PLACES });
  });
});

els.joinForm.addEventListener('submit', (event) => {
  event.preventDefault();
  busy(els.joinBtn, async () => {
    showLobbyError('');
    const code = els.joinCode.value.trim().toUpperCase();
    if (!/^[A-Z0-9]{6}$/.test(code)) throw new Error('A room code has 6 letters or digits.');
    const c = await ensureClient();
    await c.joinRoom({ code });
  });
});

els.joinCode.addEventListener('input', () => {
  els.joinCode.value = els.joinCode.value.toUpperCase().replace(/[^A-Z0-9]/g, '');
});

els.startGame.addEventListener('click', async () => {
  showRoomError('');
  els.startGame.disabled = true;
  try {
    await client.startGame();
  } catch (err) {
    showRoomError(errorText(err));
  } finally {
    if (client.room) renderRoom(client.room);
  }
});

els.leaveRoom.addEventListener('click', async () => {
  showRoomError('');
  try {
    await client.leaveRoom();
  } catch (err) {
    if (err.code === 'not_in_room') onRoom(null, null);
    else showRoomError(errorText(err));
  }
});

els.copyCode.addEventListener('click', async () => {
  const code = els.roomCode.textContent;
  const link = `${location.origin}${location.pathname}?join=${code}`;
  try {
    await navigator.clipboard.writeText(link);
    toast('Invite link copied');
  } catch {
    const range = document.createRange();
    range.selectNodeContents(els.roomCode);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    toast(`Code ${code}: share it with a friend`);
  }
});

els.board.addEventListener('click', (event) => {
  const cell = event.target.closest('.cell');
  if (cell) playCell(Number(cell.dataset.cell));
});

els.rematch.addEventListener('click', rematch);
els.tap.addEventListener('click', tap);

els.chatForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = els.chatInput.value.trim().slice(0, 500);
  if (!text || !mesh) return;
  const sent = mesh.broadcast({ t: 'chat', text, ts: Date.now() });
  // Spectators are not peers: a copy through the server reaches them.
  const spectated = !!client.room?.max_spectators;
  if (spectated) client.chat(text).catch((err) => systemChat(`Spectators did not get that: ${errorText(err)}`));
  addChat(client.playerId, text, { undelivered: sent === 0 && !spectated });
  if (sent === 0) systemChat('Not connected to anyone yet; message not delivered.');
  els.chatInput.value = '';
});

els.roomChatForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = els.roomChatInput.value.trim().slice(0, 500);
  if (!text || !client || !watching()) return;
  // Shown when the server echoes it back, like everyone else's.
  client.chat(text).then(() => { els.roomChatInput.value = ''; }, (err) => toast(errorText(err)));
});

// ---- Start-up ------------------------------------------------------------------

els.name.value = localStorage.getItem('rdv.name') || '';
const params = new URLSearchParams(location.search);
const codeParam = (name) => (params.get(name) || '').toUpperCase().replace(/[^A-Z0-9]/g, '').slice(0, 6);
if (params.get('join')) els.joinCode.value = codeParam('join');
const partyParam = codeParam('party');
const spectateParam = (params.get('spectate') || '').trim();
if (partyParam) {
  els.partyCodeInput.value = partyParam;
  els.partyInvite.textContent = 'A friend invited you: enter your name and press Join party.';
  show(els.partyInvite, true);
}
renderParty();

async function startUp() {
  // After a reload, take the seat back with the resume token of this tab's last session.
  const savedResume = sessionStorage.getItem('rdv.resume');
  const savedName = sessionStorage.getItem('rdv.name');
  if (savedResume && savedName) {
    if (!els.name.value) els.name.value = savedName;
    await openClient({ name: savedName, resumeToken: savedResume }).catch(() => setConn('offline', 'offline'));
  }
  if (spectateParam) await startSpectating(spectateParam);
  else if (partyParam && els.name.value.trim()) await joinPartyByCode(partyParam);
}
startUp();
