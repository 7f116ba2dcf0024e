/**
 * Rendezvous browser client: lobby, matchmaking and WebRTC signaling over the
 * Rendezvous wire protocol v1 (one JSON object per WebSocket text frame).
 *
 * Plain ES module, no dependencies, no build step.
 *
 * @example
 * import { connect } from '/rendezvous.js';
 * const client = await connect('ws://localhost:8080/ws', { name: 'ann' });
 * client.on('game_start', ({ room }) => {
 *   const mesh = client.mesh({
 *     onPeerOpen: (peerId) => mesh.send(peerId, { hello: client.playerId }),
 *     onPeerMessage: (peerId, data) => console.log(peerId, data),
 *   });
 * });
 * const { room, created } = await client.findMatch({ maxPlayers: 2 });
 *
 * @module rendezvous
 */

/** Protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;

/** Signal message types relayed between players of a room. */
const SIGNAL_TYPES = new Set(['offer', 'answer', 'ice_candidate']);

/** Most buffered signals kept while no mesh is attached (mirrors the server's resume bound). */
const MAX_BUFFERED_SIGNALS = 256;

/** Request types whose `ok` reply carries the player's party (1.1). */
const PARTY_REPLY_TYPES = new Set(['create_party', 'join_party']);

/** Request types whose `ok` reply carries the player's (new) room. */
const ROOM_REPLY_TYPES = new Set([
  'find_match', 'create_room', 'join_room', 'start_game', 'finish_game',
  'set_room_data', 'set_player_data',
]);

/**
 * Error of a request: either the server's `error` reply (`code` is one of the
 * protocol's error codes) or a client-side failure with code `disconnected`
 * (the socket dropped or was not open), `timeout` or `connect_failed`.
 */
export class RendezvousError extends Error {
  /**
   * @param {string} code machine-readable code; act on this, not on `message`
   * @param {string} [message] human-readable text
   * @param {object} [details] `request` (the request type) and `reply` (the raw error reply)
   */
  constructor(code, message, details = {}) {
    super(message || code);
    this.name = 'RendezvousError';
    /** @type {string} */
    this.code = code;
    /** @type {string|undefined} the request type that failed */
    this.request = details.request;
    /** @type {object|undefined} the raw `error` message from the server */
    this.reply = details.reply;
  }
}

/** Minimal event emitter: `on`, `once`, `off`; handler errors are logged, never thrown into the client. */
class Emitter {
  constructor() {
    /** @private */
    this._handlers = new Map();
  }

  /**
   * Subscribes to an event.
   * @param {string} event
   * @param {Function} handler
   * @returns {() => void} a function that unsubscribes
   */
  on(event, handler) {
    if (typeof handler !== 'function') throw new TypeError('handler must be a function');
    let set = this._handlers.get(event);
    if (!set) this._handlers.set(event, (set = new Set()));
    set.add(handler);
    return () => this.off(event, handler);
  }

  /**
   * Subscribes to the next occurrence of an event only.
   * @param {string} event
   * @param {Function} handler
   * @returns {() => void} a function that unsubscribes
   */
  once(event, handler) {
    const wrapper = (...args) => {
      this.off(event, wrapper);
      handler(...args);
    };
    wrapper.original = handler;
    return this.on(event, wrapper);
  }

  /**
   * Unsubscribes a handler (added with `on` or `once`).
   * @param {string} event
   * @param {Function} handler
   */
  off(event, handler) {
    const set = this._handlers.get(event);
    if (!set) return;
    for (const h of set) {
      if (h === handler || h.original === handler) set.delete(h);
    }
    if (set.size === 0) this._handlers.delete(event);
  }

  /**
   * Resolves with the next occurrence of `event` whose payload passes `filter`.
   * @param {string} event
   * @param {{filter?: (payload: any) => boolean, timeoutMs?: number}} [options]
   * @returns {Promise<any>}
   */
  waitFor(event, { filter, timeoutMs } = {}) {
    return new Promise((resolve, reject) => {
      let timer = null;
      const off = this.on(event, (payload) => {
        if (filter && !filter(payload)) return;
        off();
        if (timer) clearTimeout(timer);
        resolve(payload);
      });
      if (timeoutMs) {
        timer = setTimeout(() => {
          off();
          reject(new RendezvousError('timeout', `no ${event} within ${timeoutMs} ms`));
        }, timeoutMs);
      }
    });
  }

  /** @protected */
  _emit(event, ...args) {
    const set = this._handlers.get(event);
    if (!set) return;
    for (const handler of [...set]) {
      try {
        handler(...args);
      } catch (err) {
        console.error(`rendezvous: error in "${event}" handler`, err);
      }
    }
  }
}

/** Converts top-level camelCase option keys to the protocol's snake_case (values untouched). */
/** The fields of a `send`: `data` (null when undefined) and `to` if given. */
function messageFields(data, options) {
  const fields = { data: data === undefined ? null : data };
  if (options && options.to !== undefined) fields.to = options.to;
  return fields;
}

function toWire(options) {
  const out = {};
  if (!options) return out;
  for (const [key, value] of Object.entries(options)) {
    if (value === undefined) continue;
    out[key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = value;
  }
  return out;
}

/** Builds the WebSocket URL: http(s) becomes ws(s), relative URLs resolve against the page. */
function buildUrl(url, params) {
  const base = typeof location !== 'undefined' ? location.href : undefined;
  const u = new URL(url, base);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  if (u.protocol === 'https:') u.protocol = 'wss:';
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') u.searchParams.set(key, String(value));
  }
  return u.toString();
}

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

/**
 * @typedef {object} ConnectOptions
 * @property {string} [name] display name (1 to 32 characters; the server defaults to "player")
 * @property {string} [token] JWT, when the server runs with auth
 * @property {string} [resumeToken] a `resume_token` kept from an earlier session (e.g. across a page reload)
 * @property {boolean|{initialDelayMs?: number, maxDelayMs?: number, factor?: number, maxAttempts?: number}} [reconnect=true]
 *   automatic reconnection with exponential backoff and jitter; `false` disables it
 * @property {number} [requestTimeoutMs=15000] a request with no reply after this long rejects with code `timeout` (0: never)
 * @property {boolean} [heartbeat=true] send `ping` when idle and drop a socket silent for `heartbeat_timeout_ms`
 * @property {typeof WebSocket} [WebSocket] WebSocket implementation (defaults to the global one)
 */

/**
 * Connects to a Rendezvous server and resolves once the server's `welcome` arrived.
 *
 * Rejects with a {@link RendezvousError} of code `connect_failed` when the
 * first connection closes before `welcome` (refused handshake, server down).
 *
 * @param {string} url WebSocket URL such as `ws://host/ws` (http(s) and relative URLs are accepted)
 * @param {ConnectOptions} [options]
 * @returns {Promise<Client>}
 */
export async function connect(url, options = {}) {
  const client = new Client(url, options);
  await client.open();
  return client;
}

/**
 * A connection to a Rendezvous server. Create it with {@link connect}.
 *
 * Events (`client.on(event, handler)`):
 * - every server event by its `type`, with the message object: `player_joined`,
 *   `player_left`, `player_disconnected`, `player_reconnected`, `host_changed`,
 *   `room_status`, `game_start`, `room_data`, `player_data`, `kicked`, `offer`,
 *   `answer`, `ice_candidate`, `chat`, `chat_history`, `announcement`, `stats`,
 *   `room_listed`, `room_updated`, `room_delisted`, `server_shutdown`, `welcome`,
 *   and of 1.1 `ticket_expired`, `ticket_queued`, `ticket_cancelled`,
 *   `party_updated`, `room_joined` (a party member seated by its leader's
 *   `find_match`), `spectator_joined`, `spectator_left` (a `game_start` that
 *   ends a ticket carries its `ticket_id`);
 * - `error`: an `error` message that answers no pending request (e.g. `rid` null);
 * - `room`: the tracked {@link Client#room} changed (payload: the room or null,
 *   then the message that caused the change, or null for a reply or welcome);
 * - `party`: the tracked {@link Client#party} changed (1.1; payload: the party
 *   or null, then the `party_updated` message, or null for a reply or welcome);
 * - lifecycle: `open` (welcome, on every (re)connection), `close`
 *   (`{code, reason, willReconnect}`), `reconnecting` (`{attempt, delayMs}`),
 *   `resumed` (welcome with `resumed: true`: same player, seat kept),
 *   `session_lost` (a reconnection got a fresh session: new seatless player),
 *   `reconnect_failed` (gave up after `maxAttempts`);
 * - debugging: `*` (every incoming message), `outgoing` (every message sent).
 */
export class Client extends Emitter {
  /**
   * @param {string} url
   * @param {ConnectOptions} [options]
   */
  constructor(url, options = {}) {
    super();
    const reconnect = options.reconnect === false ? null : {
      initialDelayMs: 500, maxDelayMs: 15000, factor: 2, maxAttempts: Infinity,
      ...(typeof options.reconnect === 'object' ? options.reconnect : {}),
    };
    /** @type {string} */
    this.url = url;
    /** @type {string|undefined} the name asked for (the server's is in `welcome.name`) */
    this.name = options.name;
    /** @private */
    this._options = {
      token: options.token,
      reconnect,
      requestTimeoutMs: options.requestTimeoutMs ?? 15000,
      heartbeat: options.heartbeat !== false,
      WebSocket: options.WebSocket || globalThis.WebSocket,
    };
    /** @type {string|null} this player's id (from the latest `welcome`) */
    this.playerId = null;
    /** @type {object|null} the latest `welcome` message */
    this.welcome = null;
    /** @type {RTCIceServer[]} ICE servers for RTCPeerConnection, from `welcome.ice_servers` */
    this.iceServers = [];
    /**
     * The player's current room, kept up to date from replies and events
     * (players in join order, `connected` flags, host, status, data), or null.
     * @type {object|null}
     */
    this.room = null;
    /**
     * The player's party (1.1 `parties`), kept up to date from replies and
     * `party_updated` events, or null. A fresh session (not resumed) has none;
     * a resumed one gets its party from `welcome.party`.
     * @type {object|null}
     */
    this.party = null;
    /** @type {'idle'|'connecting'|'open'|'reconnecting'|'closed'} */
    this.state = 'idle';

    /** @private */ this._resumeToken = options.resumeToken || null;
    /** @private */ this._ws = null;
    /** @private */ this._rid = 0;
    /** @private */ this._pending = new Map();
    /** @private */ this._attempt = 0;
    /** @private */ this._everWelcomed = false;
    /** @private */ this._closedByUser = false;
    /** @private */ this._reconnectTimer = null;
    /** @private */ this._heartbeatTimer = null;
    /** @private */ this._lastRx = 0;
    /** @private */ this._minReconnectDelayMs = 0;
    /** @private */ this._meshes = new Set();
    /** @private */ this._signalBuffer = [];
    /** @private */ this._onOnline = () => {
      if (this.state === 'reconnecting' && this._reconnectTimer) {
        clearTimeout(this._reconnectTimer);
        this._reconnectTimer = null;
        this._attemptReconnect();
      }
    };
    if (typeof addEventListener === 'function') addEventListener('online', this._onOnline);
  }

  /** @returns {boolean} true while a welcomed socket is open */
  get connected() {
    return this.state === 'open';
  }

  /** @returns {string|null} the resume token of the latest `welcome` (store it to resume after a page reload) */
  get resumeToken() {
    return this._resumeToken;
  }

  /**
   * Opens the first connection (called by {@link connect}). Resolves with `welcome`.
   * @returns {Promise<object>}
   */
  open() {
    if (this.state !== 'idle') return Promise.reject(new Error('open() may be called only once'));
    return this._openSocket();
  }

  /**
   * Closes the connection for good (no reconnection). The server holds the
   * seat for its grace period as for any dropped connection: call
   * {@link Client#leaveRoom} first to give it up at once.
   * @param {number} [code=1000]
   * @param {string} [reason]
   */
  close(code = 1000, reason = 'client closed') {
    if (this.state === 'closed') return;
    this._closedByUser = true;
    if (this._reconnectTimer) clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    if (typeof removeEventListener === 'function') removeEventListener('online', this._onOnline);
    for (const mesh of [...this._meshes]) mesh.close();
    const ws = this._ws;
    if (ws) {
      this._detach(ws);
      try { ws.close(code, reason); } catch { /* already closing */ }
      this._handleClose({ code, reason, wasClean: true });
    } else {
      this.state = 'closed';
      this._emit('close', { code, reason, wasClean: true, willReconnect: false });
    }
  }

  /**
   * Sends a message without `rid` and waits for nothing (fire-and-forget,
   * PROTOCOL.md 1.1): resolves at once with `{}`, or rejects with code
   * `disconnected` when the socket is not open. A refusal arrives as an
   * `error` event with `rid: null`.
   *
   * @param {string} type message type, e.g. `"ice_candidate"`
   * @param {object} [fields] message fields, in the protocol's snake_case
   * @returns {Promise<{}>}
   */
  send(type, fields = {}) {
    const ws = this._ws;
    if (this.state !== 'open' || !ws || ws.readyState !== 1) {
      return Promise.reject(new RendezvousError('disconnected', `not connected (${this.state})`, { request: type }));
    }
    try {
      this._send({ ...fields, type });
    } catch (err) {
      return Promise.reject(new RendezvousError('disconnected', `send failed: ${err && err.message}`, { request: type }));
    }
    return Promise.resolve({});
  }

  /**
   * Sends a request and resolves with the result fields of its `ok` reply
   * (the reply without `type` and `rid`). Rejects with a {@link RendezvousError}
   * carrying the server's `code` and `message`, or code `disconnected` when the
   * socket is not open or drops before the reply, or `timeout`.
   *
   * @param {string} type request type, e.g. `"find_match"`
   * @param {object} [fields] request fields, in the protocol's snake_case
   * @param {{timeoutMs?: number}} [options]
   * @returns {Promise<object>}
   */
  request(type, fields = {}, { timeoutMs = this._options.requestTimeoutMs } = {}) {
    const ws = this._ws;
    if (this.state !== 'open' || !ws || ws.readyState !== 1) {
      return Promise.reject(new RendezvousError('disconnected', `not connected (${this.state})`, { request: type }));
    }
    const rid = ++this._rid;
    const message = { ...fields, type, rid };
    return new Promise((resolve, reject) => {
      const entry = { type, resolve, reject, timer: null };
      if (timeoutMs > 0) {
        entry.timer = setTimeout(() => {
          this._pending.delete(rid);
          reject(new RendezvousError('timeout', `no reply to ${type} within ${timeoutMs} ms`, { request: type }));
        }, timeoutMs);
      }
      this._pending.set(rid, entry);
      try {
        this._send(message);
      } catch (err) {
        this._pending.delete(rid);
        if (entry.timer) clearTimeout(entry.timer);
        reject(new RendezvousError('disconnected', `send failed: ${err && err.message}`, { request: type }));
      }
    });
  }

  // ---- Lobby requests ------------------------------------------------------

  /**
   * Matchmaking: joins the oldest public waiting room with the same mode and
   * size (and `data` matching `filters`) or creates one.
   * @param {{maxPlayers?: number, mode?: string, filters?: object}} [options]
   * @returns {Promise<{room: object, created: boolean}>}
   */
  findMatch(options = {}) {
    return this.request('find_match', toWire(options));
  }

  /**
   * Ticket matchmaking (1.1, `welcome.features` has `"tickets"`): queues a
   * ticket; the server forms a room when enough compatible tickets wait, and
   * every player then gets `game_start` with the room and its `ticket_id`.
   * A ticket that forms no room in time ends with a `ticket_expired` event.
   * Rejects with code `already_queued` when this player has a ticket already.
   * @param {{mode?: string, maxPlayers?: number, minPlayers?: number, skill?: number,
   *   skillWindow?: number, skillWidenPerS?: number, skillWindowMax?: number,
   *   regions?: Object<string, number>, maxRttMs?: number, filters?: object,
   *   backfill?: boolean}} [options] `regions` maps a region name to the
   *   round-trip time in ms the client measured to it
   * @returns {Promise<{ticket_id: string, players: string[], queued_at: string}>} the queued ticket
   */
  async queueMatch(options = {}) {
    const { ticket } = await this.request('queue_match', toWire(options));
    return ticket;
  }

  /**
   * Takes this player's ticket out of the queue (1.1 `tickets`); rejects with
   * code `not_queued` when there is none (never queued, matched or expired).
   * @returns {Promise<{}>}
   */
  cancelMatch() {
    return this.request('cancel_match');
  }

  /**
   * Creates a room (the caller is its host).
   * @param {{maxPlayers?: number, mode?: string, private?: boolean, data?: object,
   *   allowedPlayers?: string[], allowedRoles?: string[]}} [options]
   * @returns {Promise<{room: object}>} a private room's `room.code` is its join code
   */
  createRoom(options = {}) {
    return this.request('create_room', toWire(options));
  }

  /**
   * Joins a room by join code (6 characters) or room id.
   * @param {string|{roomId?: string, code?: string}} target
   * @returns {Promise<{room: object}>}
   */
  joinRoom(target) {
    if (typeof target === 'string') {
      const t = target.trim();
      const isCode = /^[A-Za-z0-9]{4,8}$/.test(t);
      return this.request('join_room', isCode ? { code: t.toUpperCase() } : { room_id: t });
    }
    return this.request('join_room', toWire(target));
  }

  /**
   * Joins a room as a spectator (1.1): no seat; the room's events, chat,
   * and signals with its players.
   * @param {string} target room id or join code
   * @returns {Promise<{room: object}>}
   */
  spectate(target) {
    const t = String(target).trim();
    const isCode = /^[A-Za-z0-9]{4,8}$/.test(t);
    return this.request('join_room', isCode ? { code: t.toUpperCase(), as: 'spectator' } : { room_id: t, as: 'spectator' });
  }

  /**
   * Creates a party (1.1 `parties`) led by this player; resolves with the
   * party (share its `code`). Rejects with code `already_in_party`.
   * @param {{maxSize?: number}} [options] 2 to 16 members (default 4)
   * @returns {Promise<object>} the party
   */
  async createParty(options = {}) {
    const { party } = await this.request('create_party', toWire(options));
    return party;
  }

  /**
   * Joins a party by its code (any case); resolves with the party. Rejects
   * with code `party_not_found`, `party_full` or `already_in_party`.
   * @param {string} code
   * @returns {Promise<object>} the party
   */
  async joinParty(code) {
    const { party } = await this.request('join_party', { code: String(code).trim().toUpperCase() });
    return party;
  }

  /**
   * Leaves the party; the next member in join order leads. Rejects with code
   * `not_in_party` (and then forgets the party it tracked).
   * @returns {Promise<{}>}
   */
  async leaveParty() {
    try {
      return await this.request('leave_party');
    } catch (err) {
      if (err && err.code === 'not_in_party') this._setParty(null);
      throw err;
    }
  }

  /** Leaves the current room. @returns {Promise<{}>} */
  leaveRoom() {
    return this.request('leave_room');
  }

  /**
   * Lists public rooms, oldest first.
   * @param {{status?: 'waiting'|'active', mode?: string, limit?: number}} [options]
   * @returns {Promise<{rooms: object[]}>}
   */
  listRooms(options = {}) {
    return this.request('list_rooms', toWire(options));
  }

  /** Host only: starts the game (room becomes `active`, members get `game_start`). @returns {Promise<{room: object}>} */
  startGame() {
    return this.request('start_game');
  }

  /**
   * Host only: finishes the game.
   * @param {object} [result] free-form result object
   * @returns {Promise<{room: object}>}
   */
  finishGame(result) {
    return this.request('finish_game', result === undefined ? {} : { result });
  }

  /** Host only: replaces the room's data. @param {object} data @returns {Promise<{room: object}>} */
  setRoomData(data) {
    return this.request('set_room_data', { data });
  }

  /** Replaces this player's data in the room. @param {object} data @returns {Promise<{room: object}>} */
  setPlayerData(data) {
    return this.request('set_player_data', { data });
  }

  /** Host only: removes a player, who can't rejoin that room. @param {string} playerId @returns {Promise<{}>} */
  kick(playerId) {
    return this.request('kick', { player_id: playerId });
  }

  /** Sends a chat message to the room through the server. @param {string} text @returns {Promise<{}>} */
  chat(text) {
    return this.request('chat', { text });
  }

  /**
   * 1.2 (`welcome.features` has `"ready"`): sets this seated player's ready
   * flag in a waiting room; every member gets `player_ready` when it
   * changes. A room made with `startWhenReady` starts once every seated
   * player is ready.
   * @param {boolean} ready
   * @returns {Promise<{room: object}>}
   */
  setReady(ready) {
    return this.request('set_ready', { ready: !!ready });
  }

  /**
   * 1.2 (`welcome.features` has `"messages"`): relays `data` (any JSON
   * value) through the server to one member (`{to}`) or to every other
   * member of the room, as a `message` event. Fire-and-forget, like
   * `sendIceCandidate`: resolves at once; a refusal arrives as an `error`
   * event with `rid: null`.
   * @param {*} data
   * @param {{to?: string}} [options]
   * @returns {Promise<{}>}
   */
  sendMessage(data, options = {}) {
    return this.send('send', messageFields(data, options));
  }

  /**
   * `sendMessage` with a reply: resolves with `{delivered}` (the number of
   * recipients), or rejects with the refusal (`not_in_room`,
   * `peer_not_found`, `forbidden`, `payload_too_large`, `rate_limited`).
   * @param {*} data
   * @param {{to?: string}} [options]
   * @returns {Promise<{delivered: number}>}
   */
  sendMessageWithReply(data, options = {}) {
    return this.request('send', messageFields(data, options));
  }

  /**
   * Round trip to the server.
   * @returns {Promise<{server_time: string, rtt_ms: number}>}
   */
  async ping() {
    const started = now();
    const reply = await this.request('ping');
    return { ...reply, rtt_ms: Math.round(now() - started) };
  }

  /**
   * Subscribes to `stats` events.
   * @param {number|{intervalMs?: number}} [options] interval in ms (250 to 60000, default 1000)
   * @returns {Promise<{stats: object}>}
   */
  subscribeStats(options = {}) {
    const intervalMs = typeof options === 'number' ? options : options.intervalMs;
    return this.request('subscribe_stats', intervalMs === undefined ? {} : { interval_ms: intervalMs });
  }

  /** @returns {Promise<{}>} */
  unsubscribeStats() {
    return this.request('unsubscribe_stats');
  }

  /**
   * Subscribes to the public waiting-room list: resolves with the rooms now,
   * then `room_listed`, `room_updated`, `room_delisted` events follow.
   * @param {{mode?: string}} [options]
   * @returns {Promise<{rooms: object[]}>}
   */
  subscribeRooms(options = {}) {
    return this.request('subscribe_rooms', toWire(options));
  }

  /** @returns {Promise<{}>} */
  unsubscribeRooms() {
    return this.request('unsubscribe_rooms');
  }

  // ---- Signaling (used by Mesh; usable directly) ---------------------------

  /** @param {string} to player id @param {string} sdp @returns {Promise<{}>} */
  sendOffer(to, sdp) {
    return this.request('offer', { to, sdp });
  }

  /** @param {string} to player id @param {string} sdp @returns {Promise<{}>} */
  sendAnswer(to, sdp) {
    return this.request('answer', { to, sdp });
  }

  /**
   * Sends a trickled ICE candidate fire-and-forget (no `rid`, so no `ok`
   * comes back; a refusal arrives as an `error` event with `rid: null`);
   * `null` (or an empty candidate) sends `candidate: ""`, the
   * end-of-candidates signal.
   * @param {string} to player id
   * @param {RTCIceCandidate|RTCIceCandidateInit|null} candidate
   * @returns {Promise<{}>}
   */
  sendIceCandidate(to, candidate) {
    if (!candidate || !candidate.candidate) return this.send('ice_candidate', { to, candidate: '' });
    return this.send('ice_candidate', {
      to,
      candidate: {
        candidate: candidate.candidate,
        sdpMid: candidate.sdpMid ?? null,
        sdpMLineIndex: candidate.sdpMLineIndex ?? null,
        usernameFragment: candidate.usernameFragment ?? null,
      },
    });
  }

  /**
   * Creates a WebRTC full mesh with the other members of the room: one
   * RTCPeerConnection and one reliable ordered DataChannel per peer. See {@link Mesh}.
   * @param {MeshOptions} [options]
   * @returns {Mesh}
   */
  mesh(options = {}) {
    return new Mesh(this, options);
  }

  /** @returns {object|null} this player's entry in the current room */
  get me() {
    return this.room?.players?.find((p) => p.player_id === this.playerId) || null;
  }

  /** @returns {boolean} whether this player leads its party (1.1) */
  get isPartyLeader() {
    return !!this.party && this.party.leader === this.playerId;
  }

  /** @returns {boolean} whether this player watches its room as a spectator (1.1) */
  get isSpectator() {
    return !!this.room && !!this.room.spectators?.some((p) => p.player_id === this.playerId);
  }

  /** @returns {boolean} whether this player hosts the current room */
  get isHost() {
    return !!this.room && this.room.host === this.playerId;
  }

  // ---- Internals -----------------------------------------------------------

  /** @private */
  _openSocket() {
    this.state = this._everWelcomed ? 'reconnecting' : 'connecting';
    const WS = this._options.WebSocket;
    if (!WS) return Promise.reject(new RendezvousError('connect_failed', 'no WebSocket implementation'));
    const url = buildUrl(this.url, { name: this.name, token: this._options.token, resume: this._resumeToken });
    let ws;
    try {
      ws = new WS(url);
    } catch (err) {
      return Promise.reject(new RendezvousError('connect_failed', String(err && err.message || err)));
    }
    this._ws = ws;
    return new Promise((resolve, reject) => {
      let welcomed = false;
      ws.onmessage = (event) => {
        if (this._ws !== ws) return;
        if (typeof event.data !== 'string') return; // v1 is text only
        let message;
        try {
          message = JSON.parse(event.data);
        } catch {
          console.warn('rendezvous: ignoring a frame that is not JSON');
          return;
        }
        if (!message || typeof message !== 'object') return;
        this._lastRx = now();
        if (!welcomed && message.type === 'welcome') {
          welcomed = true;
          this._onWelcome(message);
          resolve(message);
          return;
        }
        this._onMessage(message);
      };
      ws.onerror = () => { /* a close event follows */ };
      ws.onclose = (event) => {
        if (this._ws !== ws) return;
        this._detach(ws);
        if (!welcomed) {
          reject(new RendezvousError('connect_failed',
            `connection closed before welcome (code ${event.code}${event.reason ? `: ${event.reason}` : ''})`));
        }
        this._handleClose(event);
      };
    });
  }

  /** @private */
  _detach(ws) {
    ws.onmessage = ws.onerror = ws.onclose = ws.onopen = null;
    if (this._ws === ws) this._ws = null;
    this._stopHeartbeat();
  }

  /** @private */
  _onWelcome(welcome) {
    const reconnection = this._everWelcomed;
    this.welcome = welcome;
    this.playerId = welcome.player_id;
    this.iceServers = Array.isArray(welcome.ice_servers) ? welcome.ice_servers : [];
    this._resumeToken = welcome.resume_token || null;
    this._everWelcomed = true;
    this._attempt = 0;
    this.state = 'open';
    this._emit('*', welcome);
    if (welcome.resumed) {
      this._setRoom(welcome.room || null);
      // The server names the party a resumed player is still in.
      if ('party' in welcome || this.party) this._setParty(welcome.party || null);
    } else {
      this._setRoom(null);
      if (this.party) this._setParty(null);
    }
    this._startHeartbeat();
    this._emit('welcome', welcome);
    this._emit('open', welcome);
    if (welcome.resumed) this._emit('resumed', welcome);
    else if (reconnection) this._emit('session_lost', welcome);
  }

  /** @private */
  _onMessage(message) {
    const { type } = message;
    if ((type === 'ok' || type === 'error') && message.rid !== null && message.rid !== undefined
        && this._pending.has(message.rid)) {
      const entry = this._pending.get(message.rid);
      this._pending.delete(message.rid);
      if (entry.timer) clearTimeout(entry.timer);
      this._emit('*', message);
      if (type === 'ok') {
        const { type: _t, rid: _r, ...result } = message;
        if (ROOM_REPLY_TYPES.has(entry.type) && result.room) this._setRoom(result.room);
        if (entry.type === 'leave_room') this._setRoom(null);
        if (PARTY_REPLY_TYPES.has(entry.type) && result.party) this._setParty(result.party);
        if (entry.type === 'leave_party') this._setParty(null);
        entry.resolve(result);
      } else {
        entry.reject(new RendezvousError(message.code || 'internal', message.message || message.code,
          { request: entry.type, reply: message }));
      }
      return;
    }
    this._emit('*', message);
    if (type === 'ok') return; // reply to a request sent without rid, or after a timeout
    if (type === 'error') {
      this._emit('error', message);
      return;
    }
    if (type === 'server_shutdown') {
      this._minReconnectDelayMs = Number(message.reconnect_after_ms) || 0;
    }
    this._trackRoom(message);
    if (SIGNAL_TYPES.has(type) && this._meshes.size === 0 && this.room) {
      this._signalBuffer.push(message);
      if (this._signalBuffer.length > MAX_BUFFERED_SIGNALS) this._signalBuffer.shift();
    }
    this._emit(type, message);
  }

  /** Updates the tracked room from an event. @private */
  _trackRoom(m) {
    const room = this.room;
    const same = room && m.room_id !== undefined && m.room_id === room.room_id;
    const player = (id) => room.players.find((p) => p.player_id === id);
    switch (m.type) {
      case 'game_start':
      case 'room_joined':
        if (m.room) this._setRoom(m.room, m);
        return;
      case 'party_updated':
        if (m.party) this._setParty(m.party, m);
        return;
      case 'kicked':
        if (!room || !m.room_id || m.room_id === room.room_id) this._setRoom(null, m);
        return;
      default:
        break;
    }
    if (!same) return;
    const next = { ...room, players: room.players.map((p) => ({ ...p })) };
    const find = (id) => next.players.find((p) => p.player_id === id);
    switch (m.type) {
      case 'player_joined':
        if (m.player && !player(m.player.player_id)) next.players.push({ ...m.player });
        break;
      case 'player_left':
        if (m.player_id === this.playerId) {
          this._setRoom(null, m);
          return;
        }
        next.players = next.players.filter((p) => p.player_id !== m.player_id);
        break;
      case 'spectator_joined': {
        const watching = (next.spectators || []).map((p) => ({ ...p }));
        if (m.player && !watching.some((p) => p.player_id === m.player.player_id)) watching.push({ ...m.player });
        next.spectators = watching;
        break;
      }
      case 'spectator_left':
        if (m.player_id === this.playerId) {
          this._setRoom(null, m);
          return;
        }
        next.spectators = (next.spectators || []).filter((p) => p.player_id !== m.player_id);
        break;
      case 'player_disconnected':
      case 'player_reconnected': {
        const p = find(m.player_id);
        if (p) p.connected = m.type === 'player_reconnected';
        break;
      }
      case 'host_changed':
        next.host = m.host;
        break;
      case 'room_status':
        next.status = m.status;
        break;
      case 'room_data':
        next.data = m.data;
        break;
      case 'player_data': {
        const p = find(m.player_id);
        if (p) p.data = m.data;
        break;
      }
      default:
        return;
    }
    this._setRoom(next, m);
  }

  /** @private */
  _setRoom(room, cause = null) {
    const changedRoom = (this.room && this.room.room_id) !== (room && room.room_id);
    this.room = room;
    if (!room || changedRoom) this._signalBuffer = [];
    this._emit('room', room, cause);
  }

  /** @private */
  _setParty(party, cause = null) {
    this.party = party;
    this._emit('party', party, cause);
  }

  /** @private */
  _send(message) {
    this._emit('outgoing', message);
    this._ws.send(JSON.stringify(message));
  }

  /** @private */
  _handleClose(event) {
    this._stopHeartbeat();
    for (const [rid, entry] of this._pending) {
      this._pending.delete(rid);
      if (entry.timer) clearTimeout(entry.timer);
      entry.reject(new RendezvousError('disconnected', 'connection lost before the reply', { request: entry.type }));
    }
    const code = event && event.code;
    const reason = (event && event.reason) || '';
    // 4001 "replaced": this identity connected elsewhere; reconnecting would steal the seat back.
    const willReconnect = !this._closedByUser && !!this._options.reconnect && this._everWelcomed && code !== 4001
      && this._attempt < this._options.reconnect.maxAttempts;
    this._emit('close', { code, reason, wasClean: !!(event && event.wasClean), willReconnect });
    if (willReconnect) {
      this._scheduleReconnect();
    } else {
      this.state = 'closed';
      if (!this._closedByUser && this._options.reconnect && this._everWelcomed && code !== 4001) {
        this._emit('reconnect_failed', { attempts: this._attempt });
      }
      for (const mesh of [...this._meshes]) mesh.close();
    }
  }

  /** @private */
  _scheduleReconnect() {
    this.state = 'reconnecting';
    const cfg = this._options.reconnect;
    const attempt = ++this._attempt;
    const ceiling = Math.min(cfg.maxDelayMs, cfg.initialDelayMs * cfg.factor ** (attempt - 1));
    // "Equal jitter": half fixed, half random, so a crowd of clients spreads out.
    let delayMs = ceiling / 2 + Math.random() * (ceiling / 2);
    if (this._minReconnectDelayMs > 0) {
      delayMs = Math.max(delayMs, this._minReconnectDelayMs + Math.random() * 1000);
      this._minReconnectDelayMs = 0;
    }
    delayMs = Math.round(delayMs);
    this._emit('reconnecting', { attempt, delayMs });
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      this._attemptReconnect();
    }, delayMs);
  }

  /** @private */
  _attemptReconnect() {
    if (this._closedByUser) return;
    this._openSocket().catch(() => { /* _handleClose schedules the next attempt */ });
  }

  /** Detects half-open sockets: ping when idle, drop when silent for heartbeat_timeout_ms. @private */
  _startHeartbeat() {
    this._stopHeartbeat();
    if (!this._options.heartbeat || !this.welcome) return;
    const interval = Number(this.welcome.heartbeat_interval_ms) || 15000;
    const timeout = Number(this.welcome.heartbeat_timeout_ms) || interval * 3;
    this._heartbeatTimer = setInterval(() => {
      const silentFor = now() - this._lastRx;
      if (silentFor >= timeout) {
        const ws = this._ws;
        if (ws) {
          this._detach(ws);
          try { ws.close(4000, 'heartbeat timeout'); } catch { /* ignore */ }
          this._handleClose({ code: 4000, reason: 'heartbeat timeout', wasClean: false });
        }
      } else if (silentFor >= interval) {
        this.request('ping', {}, { timeoutMs: 0 }).catch(() => {});
      }
    }, Math.max(1000, Math.min(interval, timeout / 3)));
  }

  /** @private */
  _stopHeartbeat() {
    if (this._heartbeatTimer) clearInterval(this._heartbeatTimer);
    this._heartbeatTimer = null;
  }

  /** @private */
  _attachMesh(mesh) {
    this._meshes.add(mesh);
    const buffered = this._signalBuffer;
    this._signalBuffer = [];
    return buffered;
  }

  /** @private */
  _detachMesh(mesh) {
    this._meshes.delete(mesh);
  }
}

// ---- WebRTC mesh -------------------------------------------------------------

/**
 * @typedef {object} PeerState
 * @property {string} peerId
 * @property {string} name
 * @property {boolean} polite perfect-negotiation role of this side toward the peer
 * @property {boolean} offerer whether this side sends the initial offer (it joined later)
 * @property {RTCPeerConnectionState|'new'} connectionState
 * @property {RTCIceConnectionState|'new'} iceConnectionState
 * @property {RTCSignalingState} signalingState
 * @property {RTCDataChannelState|'none'} channelState
 */

/**
 * @typedef {object} MeshOptions
 * @property {(peerId: string, peer: PeerState) => void} [onPeerOpen] the DataChannel to a peer opened
 * @property {(peerId: string, data: any) => void} [onPeerMessage] a message arrived (parsed JSON when `json`)
 * @property {(peerId: string, reason: string) => void} [onPeerClose] a peer was torn down
 * @property {(peerId: string, state: PeerState) => void} [onPeerState] a peer's connection or channel state changed
 * @property {boolean} [json=true] send values as JSON and parse incoming text as JSON; binary passes through
 * @property {RTCConfiguration} [rtcConfig] extra RTCPeerConnection configuration (iceServers default to the welcome's)
 * @property {string} [label='rendezvous'] DataChannel label
 * @property {number} [offerTimeoutMs=6000] an earlier player with no offer after this long offers itself
 *   (recovers a peer whose side was reloaded); 0 disables
 */

/**
 * Full WebRTC mesh between the members of the client's room.
 *
 * Convention (shared with every Rendezvous client): one RTCPeerConnection per
 * other member; the later joiner (later in `room.players`) sends the offer to
 * every earlier player and earlier players answer; ICE candidates trickle as
 * `ice_candidate` (a null candidate is sent as `candidate: ""`). Glare is
 * resolved by "perfect negotiation" where the polite peer is the later joiner.
 * Each pair shares one reliable, ordered DataChannel created with
 * `negotiated: true, id: 0` on both sides.
 *
 * Peers are created for the room's members when the mesh is created and as
 * members join, and torn down on `player_left`, `kicked`, leaving the room or
 * {@link Mesh#close}. Signals that arrived before the mesh existed are replayed.
 *
 * Events (`mesh.on(...)`): `peer_open`, `peer_message`, `peer_close`,
 * `peer_state`, `signal_error`, with the same arguments as the callbacks.
 */
export class Mesh extends Emitter {
  /**
   * @param {Client} client
   * @param {MeshOptions} [options]
   */
  constructor(client, options = {}) {
    super();
    if (typeof RTCPeerConnection === 'undefined') throw new Error('WebRTC (RTCPeerConnection) is not available');
    /** @type {Client} */
    this.client = client;
    /** @private */
    this._options = { json: true, label: 'rendezvous', offerTimeoutMs: 6000, ...options };
    /** @type {Map<string, Peer>} peers by player id */
    this.peers = new Map();
    /** @type {boolean} */
    this.closed = false;
    for (const [event, key] of [['peer_open', 'onPeerOpen'], ['peer_message', 'onPeerMessage'],
      ['peer_close', 'onPeerClose'], ['peer_state', 'onPeerState']]) {
      if (typeof options[key] === 'function') this.on(event, options[key]);
    }
    /** @private */
    this._unsubscribe = [
      client.on('room', (room, cause) => this._sync(cause)),
      client.on('offer', (m) => this._onSignal(m)),
      client.on('answer', (m) => this._onSignal(m)),
      client.on('ice_candidate', (m) => this._onSignal(m)),
      client.on('session_lost', () => this._closeAll('session_lost')),
      // Signals sent while our socket was down are lost: renegotiate every peer not yet connected.
      client.on('resumed', () => {
        for (const peer of [...this.peers.values()]) {
          if (!peer.channel || peer.channel.readyState !== 'open') this._resetPeer(peer);
        }
      }),
    ];
    const buffered = client._attachMesh(this);
    this._sync();
    for (const message of buffered) this._onSignal(message);
  }

  /** @returns {string[]} ids of the peers (other room members) */
  get peerIds() {
    return [...this.peers.keys()];
  }

  /**
   * @param {string} peerId
   * @returns {PeerState|null}
   */
  state(peerId) {
    const peer = this.peers.get(peerId);
    return peer ? peer.snapshot() : null;
  }

  /** @returns {PeerState[]} the state of every peer, in room join order */
  states() {
    return [...this.peers.values()].map((p) => p.snapshot());
  }

  /**
   * Sends to one peer over its DataChannel.
   * @param {string} peerId
   * @param {any} data a value (JSON-encoded when `json`), or a string / ArrayBuffer / typed array / Blob
   * @returns {boolean} false when that peer's channel is not open
   */
  send(peerId, data) {
    const peer = this.peers.get(peerId);
    if (!peer || !peer.channel || peer.channel.readyState !== 'open') return false;
    peer.channel.send(this._encode(data));
    return true;
  }

  /**
   * Sends to every peer whose channel is open.
   * @param {any} data
   * @returns {number} how many peers it was sent to
   */
  broadcast(data) {
    const payload = this._encode(data);
    let sent = 0;
    for (const peer of this.peers.values()) {
      if (peer.channel && peer.channel.readyState === 'open') {
        peer.channel.send(payload);
        sent += 1;
      }
    }
    return sent;
  }

  /** Closes every peer connection and stops listening to the client. */
  close() {
    if (this.closed) return;
    this.closed = true;
    for (const off of this._unsubscribe) off();
    this._closeAll('closed');
    this.client._detachMesh(this);
  }

  /** @private */
  _encode(data) {
    const binary = data instanceof ArrayBuffer || ArrayBuffer.isView(data)
      || (typeof Blob !== 'undefined' && data instanceof Blob);
    if (binary) return data;
    if (this._options.json) return JSON.stringify(data === undefined ? null : data);
    return typeof data === 'string' ? data : String(data);
  }

  /** @private */
  _decode(data) {
    if (typeof data !== 'string' || !this._options.json) return data;
    try {
      return JSON.parse(data);
    } catch {
      return data;
    }
  }

  /**
   * Reconciles peers with the client's room.
   * @param {object|null} [cause] the event that changed the room
   * @private
   */
  _sync(cause = null) {
    if (this.closed) return;
    const room = this.client.room;
    const me = this.client.playerId;
    const players = room && Array.isArray(room.players) ? room.players : [];
    const myIndex = players.findIndex((p) => p.player_id === me);
    if (!room || myIndex < 0) {
      this._closeAll(cause && cause.type === 'kicked' ? 'kicked' : (cause && cause.reason) || 'left');
      return;
    }
    const present = new Set(players.map((p) => p.player_id));
    for (const id of [...this.peers.keys()]) {
      if (!present.has(id)) this._closePeer(id, (cause && cause.type === 'player_left' && cause.reason) || 'left');
    }
    players.forEach((p, index) => {
      if (p.player_id === me) return;
      const existing = this.peers.get(p.player_id);
      if (existing) {
        existing.name = p.name;
        return;
      }
      this._createPeer(p, myIndex > index);
    });
  }

  /** @private */
  _createPeer(player, iAmLater) {
    const peer = new Peer(this, player.player_id, player.name, iAmLater);
    this.peers.set(player.player_id, peer);
    peer.start();
    this._emitState(peer);
    return peer;
  }

  /** @private */
  _onSignal(message) {
    if (this.closed) return;
    const from = message.from;
    let peer = this.peers.get(from);
    if (!peer) {
      this._sync();
      peer = this.peers.get(from);
    }
    if (!peer) return; // not a member of our room (stale signal)
    peer.enqueue(() => peer.handleSignal(message));
  }

  /** Replaces a broken peer with a fresh one (e.g. the other side reloaded). @private */
  _resetPeer(peer) {
    if (this.peers.get(peer.id) !== peer) return this.peers.get(peer.id) || null;
    peer.close();
    this.peers.delete(peer.id);
    this._emit('peer_close', peer.id, 'reset');
    const player = this.client.room?.players?.find((p) => p.player_id === peer.id);
    if (!player) return null;
    return this._createPeer(player, peer.offerer);
  }

  /** @private */
  _closePeer(id, reason) {
    const peer = this.peers.get(id);
    if (!peer) return;
    this.peers.delete(id);
    peer.close();
    this._emit('peer_close', id, reason);
  }

  /** @private */
  _closeAll(reason) {
    for (const id of [...this.peers.keys()]) this._closePeer(id, reason);
  }

  /** @private */
  _emitState(peer) {
    if (this.peers.get(peer.id) !== peer) return;
    this._emit('peer_state', peer.id, peer.snapshot());
  }
}

/** The DTLS fingerprint lines of an SDP (they identify the sending RTCPeerConnection). */
function fingerprint(sdp) {
  return (String(sdp).match(/^a=fingerprint:.*$/gm) || []).map((l) => l.trim()).sort().join('|');
}

/** One RTCPeerConnection + DataChannel to another member. Internal to Mesh. */
class Peer {
  constructor(mesh, id, name, iAmLater) {
    this.mesh = mesh;
    this.client = mesh.client;
    this.id = id;
    this.name = name;
    /** this side sends the initial offer: it joined later */
    this.offerer = iAmLater;
    /** perfect negotiation: the later joiner is polite */
    this.polite = iAmLater;
    this.pc = null;
    this.channel = null;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.settingRemoteAnswer = false;
    this.mayOffer = iAmLater; // earlier players wait for the offer (see offerTimeoutMs)
    this.pendingCandidates = [];
    this.queue = Promise.resolve();
    this.closed = false;
    this.offerTimer = null;
    this.failTimer = null;
    this.sentEndOfCandidates = false;
  }

  start() {
    const opts = this.mesh._options;
    const config = { iceServers: this.client.iceServers, ...(opts.rtcConfig || {}) };
    const pc = new RTCPeerConnection(config);
    this.pc = pc;
    pc.onnegotiationneeded = () => {
      if (!this.mayOffer) return;
      this.enqueue(() => this.makeOffer());
    };
    pc.onicecandidate = ({ candidate }) => {
      if (this.closed) return;
      if (!candidate || !candidate.candidate) {
        if (this.sentEndOfCandidates) return;
        this.sentEndOfCandidates = true;
      } else {
        this.sentEndOfCandidates = false;
      }
      this.client.sendIceCandidate(this.id, candidate).catch((err) => this.signalError(err, 'ice_candidate'));
    };
    pc.onconnectionstatechange = () => this.onConnectionState();
    pc.oniceconnectionstatechange = () => this.mesh._emitState(this);
    pc.onsignalingstatechange = () => this.mesh._emitState(this);

    const channel = pc.createDataChannel(opts.label, { negotiated: true, id: 0, ordered: true });
    channel.binaryType = 'arraybuffer';
    this.channel = channel;
    channel.onopen = () => {
      if (this.closed) return;
      this.mesh._emitState(this);
      this.mesh._emit('peer_open', this.id, this.snapshot());
    };
    channel.onclose = () => {
      if (!this.closed) this.mesh._emitState(this);
    };
    channel.onerror = () => {
      if (!this.closed) this.mesh._emitState(this);
    };
    channel.onmessage = (event) => {
      if (this.closed) return;
      this.mesh._emit('peer_message', this.id, this.mesh._decode(event.data));
    };

    if (!this.offerer && opts.offerTimeoutMs > 0) {
      this.offerTimer = setTimeout(() => {
        this.offerTimer = null;
        if (this.closed || this.pc.remoteDescription) return;
        // No offer came: the later joiner may have an outdated connection to us. Offer ourselves.
        this.mayOffer = true;
        this.enqueue(() => this.makeOffer());
      }, opts.offerTimeoutMs);
    }
  }

  /** Runs signaling steps one at a time, in order. */
  enqueue(step) {
    this.queue = this.queue.then(() => (this.closed ? undefined : step())).catch((err) => this.signalError(err, 'webrtc'));
    return this.queue;
  }

  async makeOffer() {
    const pc = this.pc;
    if (this.closed || pc.signalingState !== 'stable') return;
    try {
      this.makingOffer = true;
      await pc.setLocalDescription();
      if (this.closed || pc.signalingState !== 'have-local-offer') return;
      await this.client.sendOffer(this.id, pc.localDescription.sdp);
    } finally {
      this.makingOffer = false;
    }
  }

  async handleSignal(message, retried = false) {
    const pc = this.pc;
    if (message.type === 'ice_candidate') {
      await this.addCandidate(message.candidate);
      return;
    }
    const description = { type: message.type, sdp: message.sdp };
    if (typeof description.sdp !== 'string') return;
    if (description.type === 'offer' && !retried && pc.remoteDescription
        && fingerprint(pc.remoteDescription.sdp) !== fingerprint(description.sdp)) {
      // A new DTLS identity: the other side started over (page reload, reset). So do we.
      const fresh = this.mesh._resetPeer(this);
      if (fresh) fresh.enqueue(() => fresh.handleSignal(message, true));
      return;
    }
    const readyForOffer = !this.makingOffer && (pc.signalingState === 'stable' || this.settingRemoteAnswer);
    const offerCollision = description.type === 'offer' && !readyForOffer;
    this.ignoreOffer = !this.polite && offerCollision;
    if (this.ignoreOffer) return;
    if (description.type === 'answer' && pc.signalingState !== 'have-local-offer') return; // stale answer
    try {
      this.settingRemoteAnswer = description.type === 'answer';
      await pc.setRemoteDescription(description); // rolls back our own offer when polite and colliding
    } catch (err) {
      if (description.type === 'offer' && !retried) {
        // Typically the other side restarted (new DTLS fingerprint): start over with a fresh connection.
        const fresh = this.mesh._resetPeer(this);
        if (fresh) fresh.enqueue(() => fresh.handleSignal(message, true));
        return;
      }
      throw err;
    } finally {
      this.settingRemoteAnswer = false;
    }
    if (this.offerTimer) {
      clearTimeout(this.offerTimer);
      this.offerTimer = null;
    }
    this.mayOffer = true; // renegotiation (e.g. ICE restart) is allowed from now on
    await this.flushCandidates();
    if (description.type === 'offer') {
      await pc.setLocalDescription();
      if (this.closed) return;
      await this.client.sendAnswer(this.id, pc.localDescription.sdp);
    }
  }

  async addCandidate(candidate) {
    const pc = this.pc;
    const end = candidate === '' || candidate === null || candidate === undefined
      || (typeof candidate === 'object' && !candidate.candidate);
    const init = end ? { candidate: '' } : {
      candidate: candidate.candidate,
      sdpMid: candidate.sdpMid ?? null,
      sdpMLineIndex: candidate.sdpMLineIndex ?? null,
      usernameFragment: candidate.usernameFragment ?? null,
    };
    if (init.sdpMid === null && init.sdpMLineIndex === null && !end) init.sdpMLineIndex = 0;
    if (!pc.remoteDescription) {
      this.pendingCandidates.push(init);
      return;
    }
    try {
      await pc.addIceCandidate(init);
    } catch (err) {
      if (!this.ignoreOffer && !end) throw err;
    }
  }

  async flushCandidates() {
    const list = this.pendingCandidates;
    this.pendingCandidates = [];
    for (const init of list) {
      try {
        await this.pc.addIceCandidate(init);
      } catch (err) {
        if (init.candidate) this.signalError(err, 'ice_candidate');
      }
    }
  }

  onConnectionState() {
    if (this.closed) return;
    const state = this.pc.connectionState;
    this.mesh._emitState(this);
    if (state === 'failed') {
      if (this.offerer) {
        try { this.pc.restartIce(); } catch { /* old browsers */ }
      }
      if (!this.failTimer) {
        // Still failed after a while: rebuild the connection from scratch.
        this.failTimer = setTimeout(() => {
          this.failTimer = null;
          if (!this.closed && this.pc.connectionState === 'failed') this.mesh._resetPeer(this);
        }, 15000);
      }
    } else if (state === 'connected' && this.failTimer) {
      clearTimeout(this.failTimer);
      this.failTimer = null;
    }
  }

  signalError(err, stage) {
    if (this.closed) return;
    if (err && err.code === 'disconnected') return; // signaling socket dropped; resumed later
    this.mesh._emit('signal_error', this.id, err, stage);
    if (this.mesh._handlers.has('signal_error')) return;
    console.warn(`rendezvous: ${stage} error with ${this.id}:`, err);
  }

  snapshot() {
    const pc = this.pc;
    return {
      peerId: this.id,
      name: this.name,
      polite: this.polite,
      offerer: this.offerer,
      connectionState: pc ? pc.connectionState : 'new',
      iceConnectionState: pc ? pc.iceConnectionState : 'new',
      signalingState: pc ? pc.signalingState : 'closed',
      channelState: this.channel ? this.channel.readyState : 'none',
    };
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    if (this.offerTimer) clearTimeout(this.offerTimer);
    if (this.failTimer) clearTimeout(this.failTimer);
    try { this.channel && this.channel.close(); } catch { /* ignore */ }
    try { this.pc && this.pc.close(); } catch { /* ignore */ }
  }
}
