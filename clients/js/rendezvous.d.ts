// Type declarations of rendezvous.js, written by hand against the wire
// protocol (PROTOCOL.md, version 1 and the 1.1 additions). Requests and
// events of 1.1 are optional server features: check `welcome.features`
// before relying on them. test/ checks these declarations against the
// module's real exports and members.
/// <reference lib="dom" />

// ---- Wire objects ------------------------------------------------------------

/** Any JSON value. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };
/** A JSON object: room and player `data`, `finish_game` results. */
export type JsonObject = { [key: string]: Json };
/** Matchmaking filters: values the room's `data` must equal. */
export type Filters = { [key: string]: string | number | boolean };

/** RFC 3339 timestamp with milliseconds, e.g. `2026-11-21T19:42:01.745Z`. */
export type Timestamp = string;

export type RoomStatus = 'waiting' | 'active' | 'finished';
export type Visibility = 'public' | 'private';
export type LeaveReason = 'left' | 'kicked' | 'timeout' | 'closed';

/** Names in `welcome.features` (1.1): what the server supports beyond v1. */
export type Feature =
  | 'tickets'
  | 'parties'
  | 'spectators'
  | 'backfill'
  | 'webhooks'
  | 'peerjs'
  | 'matchbox'
  /** 1.2: `set_ready`, `start_when_ready`. */
  | 'ready'
  /** 1.2: `send` and `message` events. */
  | 'messages'
  | (string & {});

/** Error codes of the protocol (1.1 ones included), and the client's own. */
export type ErrorCode =
  | 'bad_request'
  | 'unknown_type'
  | 'payload_too_large'
  | 'rate_limited'
  | 'unauthorized'
  | 'forbidden'
  | 'limit_reached'
  | 'room_not_found'
  | 'room_full'
  | 'room_not_waiting'
  | 'room_not_active'
  | 'not_in_room'
  | 'already_in_room'
  | 'not_host'
  | 'not_enough_players'
  | 'peer_not_found'
  | 'player_not_found'
  | 'invalid_sdp'
  | 'invalid_candidate'
  | 'internal'
  | 'not_found'
  // 1.1: tickets and parties
  | 'already_queued'
  | 'not_queued'
  | 'not_party_leader'
  | 'party_not_found'
  | 'party_full'
  | 'already_in_party'
  | 'not_in_party'
  // client side: the socket was not open or dropped, no reply in time,
  // the first connection failed
  | 'disconnected'
  | 'timeout'
  | 'connect_failed'
  | (string & {});

export interface Player {
  player_id: string;
  name: string;
  data: JsonObject;
  joined_at: Timestamp;
  connected: boolean;
  /** 1.2 `ready`: the player's ready flag (false for spectators); absent on older servers. */
  ready?: boolean;
}

export interface Room {
  room_id: string;
  /** Join code of a private room, shown only to its members. */
  code?: string;
  visibility: Visibility;
  mode: string;
  max_players: number;
  status: RoomStatus;
  /** The first player in join order; null in an empty room. */
  host: string | null;
  created_at: Timestamp;
  data: JsonObject;
  /** In join order. */
  players: Player[];
  /** 1.1 `spectators`: players watching without a seat. */
  spectators?: Player[];
  /** 1.1 `spectators`. */
  max_spectators?: number;
  /** 1.1 `backfill`: an active room offered to matchmaking when a seat frees up. */
  backfill?: boolean;
  /** 1.2 `ready`: the room starts once every seated player is ready (shown only when true). */
  start_when_ready?: boolean;
}

export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

export interface Stats {
  total_rooms: number;
  waiting_rooms: number;
  active_rooms: number;
  finished_rooms: number;
  total_players: number;
  connections: number;
  players_waiting: number;
  held_seats?: number;
  matches_started: number;
  signals_relayed: number;
  uptime_s: number;
  /** 1.1 `tickets`. */
  tickets_queued?: number;
  /** 1.1 `parties`. */
  parties?: number;
  /** 1.2 `messages`: accepted `send` requests. */
  messages_relayed?: number;
}

export interface Welcome {
  type: 'welcome';
  protocol: number;
  player_id: string;
  name: string;
  resume_token: string;
  resumed: boolean;
  room: Room | null;
  heartbeat_interval_ms: number;
  heartbeat_timeout_ms: number;
  ice_servers: IceServer[];
  limits: { max_message_bytes: number; max_players: number };
  server_time: Timestamp;
  /** Events dropped while the seat was held (resume buffer overflow); absent when none. */
  missed?: number;
  /** 1.1: server features beyond v1; absent on a v1 server. */
  features?: Feature[];
  /** 1.1 `parties`: the party a resumed player is still in; absent otherwise. */
  party?: Party;
}

/** An ICE candidate on the wire; `""` is the end-of-candidates signal. */
export interface IceCandidate {
  candidate: string;
  sdpMid: string | null;
  sdpMLineIndex: number | null;
  usernameFragment: string | null;
}

/** 1.1 `tickets`. */
export interface Ticket {
  ticket_id: string;
  players: string[];
  queued_at: Timestamp;
}

/** 1.1 `parties`: a member of a party. */
export interface PartyMember {
  player_id: string;
  name: string;
  /** False while the member's connection is down (within the reconnect grace). */
  connected: boolean;
}

/** 1.1 `parties`. */
export interface Party {
  party_id: string;
  /** 6 characters; `join_party` takes it in any case. */
  code: string;
  /** The leader's player id; when it leaves, the next member in join order leads. */
  leader: string;
  /** In join order. */
  members: PartyMember[];
  max_size: number;
}

// ---- Requests ----------------------------------------------------------------

/** Fields (snake_case, as on the wire) and `ok` reply of every request type. */
export interface Requests {
  find_match: {
    fields: {
      max_players?: number;
      mode?: string;
      filters?: Filters;
      backfill?: boolean;
      max_spectators?: number;
      start_when_ready?: boolean;
    };
    reply: { room: Room; created: boolean };
  };
  create_room: {
    fields: {
      max_players?: number;
      mode?: string;
      private?: boolean;
      data?: JsonObject;
      allowed_players?: string[];
      allowed_roles?: string[];
      max_spectators?: number;
      backfill?: boolean;
      start_when_ready?: boolean;
    };
    reply: { room: Room };
  };
  join_room: {
    fields: ({ room_id: string; code?: never } | { code: string; room_id?: never }) & {
      as?: 'player' | 'spectator';
    };
    reply: { room: Room };
  };
  leave_room: { fields: Record<string, never>; reply: {} };
  list_rooms: {
    fields: { status?: 'waiting' | 'active'; mode?: string; limit?: number };
    reply: { rooms: Room[] };
  };
  start_game: { fields: Record<string, never>; reply: { room: Room } };
  finish_game: { fields: { result?: JsonObject }; reply: { room: Room } };
  set_room_data: { fields: { data: JsonObject }; reply: { room: Room } };
  set_player_data: { fields: { data: JsonObject }; reply: { room: Room } };
  kick: { fields: { player_id: string }; reply: {} };
  offer: { fields: { to: string; sdp: string }; reply: {} };
  answer: { fields: { to: string; sdp: string }; reply: {} };
  ice_candidate: { fields: { to: string; candidate: IceCandidate | '' }; reply: {} };
  chat: { fields: { text: string }; reply: {} };
  /** 1.2 `ready`. */
  set_ready: { fields: { ready: boolean }; reply: { room: Room } };
  /** 1.2 `messages`: to one member, or (no `to`) to every other member. */
  send: { fields: { to?: string; data: unknown }; reply: { delivered: number } };
  ping: { fields: Record<string, never>; reply: { server_time: Timestamp } };
  subscribe_stats: { fields: { interval_ms?: number }; reply: { stats: Stats } };
  unsubscribe_stats: { fields: Record<string, never>; reply: {} };
  subscribe_rooms: { fields: { mode?: string }; reply: { rooms: Room[] } };
  unsubscribe_rooms: { fields: Record<string, never>; reply: {} };
  /** 1.1 `tickets`. */
  queue_match: {
    fields: {
      mode?: string;
      max_players?: number;
      min_players?: number;
      skill?: number;
      skill_window?: number;
      skill_widen_per_s?: number;
      skill_window_max?: number;
      /** Region name to the round-trip time in ms the client measured. */
      regions?: { [region: string]: number };
      max_rtt_ms?: number;
      filters?: Filters;
      backfill?: boolean;
    };
    reply: { ticket: Ticket };
  };
  /** 1.1 `tickets`. */
  cancel_match: { fields: Record<string, never>; reply: {} };
  /** 1.1 `parties`. */
  create_party: { fields: { max_size?: number }; reply: { party: Party } };
  /** 1.1 `parties`. */
  join_party: { fields: { code: string }; reply: { party: Party } };
  /** 1.1 `parties`. */
  leave_party: { fields: Record<string, never>; reply: {} };
}

export type RequestType = keyof Requests;

/** A message the client sends (what `outgoing` handlers see). */
export type OutgoingMessage = {
  [T in RequestType]: { type: T; rid: number } & Requests[T]['fields'];
}[RequestType];

// ---- Server events -------------------------------------------------------------

export interface PlayerJoinedEvent { type: 'player_joined'; room_id: string; player: Player }
export interface PlayerLeftEvent { type: 'player_left'; room_id: string; player_id: string; reason: LeaveReason }
export interface PlayerDisconnectedEvent { type: 'player_disconnected'; room_id: string; player_id: string }
export interface PlayerReconnectedEvent { type: 'player_reconnected'; room_id: string; player_id: string }
export interface HostChangedEvent { type: 'host_changed'; room_id: string; host: string }
export interface RoomStatusEvent { type: 'room_status'; room_id: string; status: RoomStatus }
export interface GameStartEvent {
  type: 'game_start';
  room: Room;
  /** 1.1 `tickets`: the ticket that was matched. */
  ticket_id?: string;
  /** 1.1 allocation hook: the allocator's answer, or null when it failed. */
  allocation?: JsonObject | null;
  /** 1.1 allocation hook: why there is no allocation. */
  allocation_error?: string;
}
export interface RoomDataEvent { type: 'room_data'; room_id: string; data: JsonObject }
export interface PlayerDataEvent { type: 'player_data'; room_id: string; player_id: string; data: JsonObject }
export interface KickedEvent { type: 'kicked'; room_id: string }
/** 1.2 `ready`: a seated player's ready flag changed. */
export interface PlayerReadyEvent { type: 'player_ready'; room_id: string; player_id: string; ready: boolean }
/** 1.2 `messages`: game data a member sent with `send`, relayed by the server. */
export interface MessageEvent<T = unknown> { type: 'message'; from: string; data: T }
export interface OfferEvent { type: 'offer'; from: string; sdp: string }
export interface AnswerEvent { type: 'answer'; from: string; sdp: string }
export interface IceCandidateEvent { type: 'ice_candidate'; from: string; candidate: IceCandidate | '' }
export interface ChatEvent { type: 'chat'; room_id: string; from: string; name: string; text: string; ts: Timestamp }
export interface ChatHistoryEvent { type: 'chat_history'; room_id: string; messages: ChatEvent[] }
export interface AnnouncementEvent { type: 'announcement'; text: string; ts: Timestamp }
export interface StatsEvent { type: 'stats'; stats: Stats }
export interface RoomListedEvent { type: 'room_listed'; room: Room }
export interface RoomUpdatedEvent { type: 'room_updated'; room: Room }
export interface RoomDelistedEvent { type: 'room_delisted'; room_id: string }
export interface ServerShutdownEvent { type: 'server_shutdown'; reconnect_after_ms: number }
/** 1.1 `tickets`. */
export interface TicketExpiredEvent { type: 'ticket_expired'; ticket_id: string }
/** 1.1 `parties`: a party member's ticket was queued by the leader. */
export interface TicketQueuedEvent { type: 'ticket_queued'; ticket: Ticket }
/** 1.1 `parties` (our addition): the leader cancelled the party's ticket, or the party changed. */
export interface TicketCancelledEvent { type: 'ticket_cancelled'; ticket_id: string }
/** 1.1 `parties`: sent to every member but the one whose request made the change. */
export interface PartyUpdatedEvent { type: 'party_updated'; party: Party }
/** 1.1 `parties` (our addition): the party leader's `find_match` seated this member in `room`. */
export interface RoomJoinedEvent { type: 'room_joined'; room: Room }
/** 1.1 `spectators`: someone started watching the room. */
export interface SpectatorJoinedEvent { type: 'spectator_joined'; room_id: string; player: Player }
/** 1.1 `spectators`: someone stopped watching (or was kicked, timed out, or the room closed). */
export interface SpectatorLeftEvent { type: 'spectator_left'; room_id: string; player_id: string; reason: LeaveReason }

/** An `error` reply; `rid` is null when it answers no request the server could read. */
export interface ErrorReply {
  type: 'error';
  rid: number | string | null;
  code: ErrorCode;
  message: string;
}
export interface OkReply {
  type: 'ok';
  rid: number | string | null;
  [field: string]: unknown;
}

/** Events pushed by the server, by `type`. */
export interface ServerEvents {
  welcome: Welcome;
  player_joined: PlayerJoinedEvent;
  player_left: PlayerLeftEvent;
  player_disconnected: PlayerDisconnectedEvent;
  player_reconnected: PlayerReconnectedEvent;
  host_changed: HostChangedEvent;
  room_status: RoomStatusEvent;
  game_start: GameStartEvent;
  room_data: RoomDataEvent;
  player_data: PlayerDataEvent;
  kicked: KickedEvent;
  offer: OfferEvent;
  answer: AnswerEvent;
  ice_candidate: IceCandidateEvent;
  chat: ChatEvent;
  chat_history: ChatHistoryEvent;
  announcement: AnnouncementEvent;
  stats: StatsEvent;
  room_listed: RoomListedEvent;
  room_updated: RoomUpdatedEvent;
  room_delisted: RoomDelistedEvent;
  server_shutdown: ServerShutdownEvent;
  ticket_expired: TicketExpiredEvent;
  ticket_queued: TicketQueuedEvent;
  ticket_cancelled: TicketCancelledEvent;
  party_updated: PartyUpdatedEvent;
  room_joined: RoomJoinedEvent;
  spectator_joined: SpectatorJoinedEvent;
  spectator_left: SpectatorLeftEvent;
  player_ready: PlayerReadyEvent;
  message: MessageEvent;
}

export type ServerEvent = ServerEvents[keyof ServerEvents];
/** Every message the server sends. */
export type ServerMessage = ServerEvent | OkReply | ErrorReply;

/** A message of a type this version of the declarations does not know. */
export interface UnknownMessage {
  type: string;
  [field: string]: unknown;
}

export interface CloseInfo {
  code: number;
  reason: string;
  wasClean: boolean;
  willReconnect: boolean;
}

/** Handler arguments of every event of {@link Client}. */
export type ClientEvents = { [E in keyof ServerEvents]: [message: ServerEvents[E]] } & {
  /** An `error` message that answers no pending request. */
  error: [message: ErrorReply];
  /** The tracked room changed: the room (or null) and the event that caused it (null for a reply or welcome). */
  room: [room: Room | null, cause: ServerEvent | null];
  /** 1.1: the tracked party changed: the party (or null) and the `party_updated` that caused it (null for a reply or welcome). */
  party: [party: Party | null, cause: PartyUpdatedEvent | null];
  /** A welcome, on every (re)connection. */
  open: [welcome: Welcome];
  close: [info: CloseInfo];
  reconnecting: [info: { attempt: number; delayMs: number }];
  /** Reconnected with the seat kept. */
  resumed: [welcome: Welcome];
  /** Reconnected as a fresh, seatless player. */
  session_lost: [welcome: Welcome];
  reconnect_failed: [info: { attempts: number }];
  /** Every incoming message. */
  '*': [message: ServerMessage];
  /** Every message sent. */
  outgoing: [message: OutgoingMessage];
};

// ---- Client ----------------------------------------------------------------------

export interface ReconnectOptions {
  /** Default 500. */
  initialDelayMs?: number;
  /** Default 15000. */
  maxDelayMs?: number;
  /** Default 2. */
  factor?: number;
  /** Default Infinity. */
  maxAttempts?: number;
}

export interface ConnectOptions {
  /** Display name, 1 to 32 characters (the server defaults to "player"). */
  name?: string;
  /** JWT, when the server runs with auth. */
  token?: string;
  /** A `resume_token` kept from an earlier session (e.g. across a page reload). */
  resumeToken?: string;
  /** Automatic reconnection with backoff and jitter (default on); false disables it. */
  reconnect?: boolean | ReconnectOptions;
  /** A request with no reply after this long rejects with code `timeout`; 0: never. Default 15000. */
  requestTimeoutMs?: number;
  /** Ping when idle and drop a socket silent for `heartbeat_timeout_ms`. Default true. */
  heartbeat?: boolean;
  /** WebSocket implementation (default: the global one). */
  WebSocket?: { new (url: string | URL, protocols?: string | string[]): WebSocket };
}

export type ClientState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

/** Error of a request: the server's `error` reply, or a client-side failure. */
export class RendezvousError extends Error {
  constructor(code: ErrorCode, message?: string, details?: { request?: string; reply?: ErrorReply });
  readonly name: 'RendezvousError';
  /** Act on this, not on `message`. */
  code: ErrorCode;
  /** The request type that failed. */
  request: string | undefined;
  /** The server's raw `error` message. */
  reply: ErrorReply | undefined;
}

/** A name that is not one of `Known`'s keys (those take their typed overload). */
type Unknown<Name extends string, Known> = Name extends keyof Known ? never : Name;

/** The `on`/`once`/`off`/`waitFor` of Client and Mesh (not exported at run time). */
declare class Emitter<Events extends { [event: string]: unknown[] }> {
  /** Subscribes; returns a function that unsubscribes. */
  on<E extends keyof Events & string>(event: E, handler: (...args: Events[E]) => void): () => void;
  /** A message type these declarations do not know (a newer server's). */
  on<E extends string>(event: Unknown<E, Events>, handler: (message: UnknownMessage) => void): () => void;
  once<E extends keyof Events & string>(event: E, handler: (...args: Events[E]) => void): () => void;
  once<E extends string>(event: Unknown<E, Events>, handler: (message: UnknownMessage) => void): () => void;
  off<E extends keyof Events & string>(event: E, handler: (...args: Events[E]) => void): void;
  off<E extends string>(event: Unknown<E, Events>, handler: (message: UnknownMessage) => void): void;
  /** The next occurrence whose payload passes `filter`; rejects with code `timeout` after `timeoutMs`. */
  waitFor<E extends keyof Events & string>(
    event: E,
    options?: { filter?: (payload: Events[E][0]) => boolean; timeoutMs?: number },
  ): Promise<Events[E][0]>;
}

/** Options of {@link Client#request}. */
export interface RequestOptions {
  /** Default: the client's `requestTimeoutMs`; 0: never. */
  timeoutMs?: number;
}

/** Options of {@link Client#queueMatch}: the `queue_match` fields in camelCase. */
export interface QueueMatchOptions {
  mode?: string;
  /** The room size. */
  maxPlayers?: number;
  /** Default `maxPlayers`; a smaller room forms only after the server's fill delay. */
  minPlayers?: number;
  /** Tickets without `skill` match only tickets without `skill`. */
  skill?: number;
  /** Default 100. */
  skillWindow?: number;
  /** Default 50. */
  skillWidenPerS?: number;
  /** Default 1000. */
  skillWindowMax?: number;
  /** Region name to the round-trip time in ms the client measured. */
  regions?: { [region: string]: number };
  /** Default 150. */
  maxRttMs?: number;
  filters?: Filters;
  /** 1.1 `backfill`: an active room with a free seat may take the ticket. */
  backfill?: boolean;
}

/** A connection to a Rendezvous server; create it with {@link connect}. */
export class Client extends Emitter<ClientEvents> {
  constructor(url: string, options?: ConnectOptions);
  url: string;
  /** The name asked for (the server's is `welcome.name`). */
  name: string | undefined;
  /** This player's id, from the latest welcome. */
  playerId: string | null;
  /** The latest welcome. */
  welcome: Welcome | null;
  /** ICE servers for RTCPeerConnection, from `welcome.ice_servers`. */
  iceServers: RTCIceServer[];
  /** The player's room, kept up to date from replies and events, or null. */
  room: Room | null;
  /** 1.1 `parties`: the player's party, kept up to date from replies and `party_updated`, or null. */
  party: Party | null;
  state: ClientState;
  /** True while a welcomed socket is open. */
  readonly connected: boolean;
  /** The latest welcome's resume token (store it to resume after a page reload). */
  readonly resumeToken: string | null;
  /** This player's entry in the current room. */
  readonly me: Player | null;
  readonly isHost: boolean;
  /** 1.1 `parties`: whether this player leads its party. */
  readonly isPartyLeader: boolean;
  /** 1.1 `spectators`: whether this player watches its room without a seat. */
  readonly isSpectator: boolean;

  /** Opens the first connection (done by {@link connect}); resolves with welcome. */
  open(): Promise<Welcome>;
  /** Closes for good (no reconnection); the server holds the seat for its grace. */
  close(code?: number, reason?: string): void;

  /** Any request by type, resolving with the `ok` reply's fields (without `type` and `rid`). */
  request<T extends RequestType>(
    type: T,
    fields?: Requests[T]['fields'],
    options?: RequestOptions,
  ): Promise<Requests[T]['reply']>;
  /** A request type these declarations do not know (a newer server's). */
  request<T extends string>(
    type: Unknown<T, Requests>,
    fields?: { [field: string]: unknown },
    options?: RequestOptions,
  ): Promise<{ [field: string]: unknown }>;

  /**
   * A party leader's `findMatch` seats the whole party (the others get
   * `room_joined`); another member's is refused with `not_party_leader`.
   */
  findMatch(options?: {
    maxPlayers?: number;
    mode?: string;
    filters?: Filters;
    /** 1.1 `backfill`, for a room it creates. */
    backfill?: boolean;
    /** 1.1 `spectators`: places for spectators in a room it creates. */
    maxSpectators?: number;
    /** 1.2 `ready`: a room it creates starts once every seated player is ready. */
    startWhenReady?: boolean;
  }): Promise<Requests['find_match']['reply']>;
  /**
   * 1.1 `tickets`: queues a ticket and resolves with it; the room comes later
   * as `game_start` (with this `ticket_id`), or `ticket_expired` ends it.
   * Rejects with code `already_queued` or `already_in_room`.
   */
  queueMatch(options?: QueueMatchOptions): Promise<Ticket>;
  /** 1.1 `tickets`: cancels this player's ticket; rejects with code `not_queued` when there is none. */
  cancelMatch(): Promise<{}>;
  createRoom(options?: {
    maxPlayers?: number;
    mode?: string;
    private?: boolean;
    data?: JsonObject;
    allowedPlayers?: string[];
    allowedRoles?: string[];
    /** 1.1 `spectators`. */
    maxSpectators?: number;
    /** 1.1 `backfill`. */
    backfill?: boolean;
    /** 1.2 `ready`: starts once every seated player is ready (at least 2). */
    startWhenReady?: boolean;
  }): Promise<{ room: Room }>;
  /** By join code (4 to 8 letters or digits) or room id; the object form may join as a spectator (1.1). */
  joinRoom(target: string | { roomId: string; as?: 'player' | 'spectator' } | { code: string; as?: 'player' | 'spectator' }): Promise<{ room: Room }>;
  /** 1.1 `spectators`: joins by room id or join code without a seat. */
  spectate(target: string): Promise<{ room: Room }>;
  /** 1.1 `parties`: creates a party led by this player (rejects with `already_in_party`). */
  createParty(options?: { maxSize?: number }): Promise<Party>;
  /** 1.1 `parties`: joins by code (rejects with `party_not_found`, `party_full`, `already_in_party`). */
  joinParty(code: string): Promise<Party>;
  /** 1.1 `parties`: leaves the party (rejects with `not_in_party`). */
  leaveParty(): Promise<{}>;
  leaveRoom(): Promise<{}>;
  listRooms(options?: { status?: 'waiting' | 'active'; mode?: string; limit?: number }): Promise<{ rooms: Room[] }>;
  startGame(): Promise<{ room: Room }>;
  finishGame(result?: JsonObject): Promise<{ room: Room }>;
  setRoomData(data: JsonObject): Promise<{ room: Room }>;
  setPlayerData(data: JsonObject): Promise<{ room: Room }>;
  kick(playerId: string): Promise<{}>;
  chat(text: string): Promise<{}>;
  /** 1.2 `ready`: this seated player's ready flag (rejects with `not_in_room`, `room_not_waiting`, `forbidden`). */
  setReady(ready: boolean): Promise<{ room: Room }>;
  /** 1.2 `messages`: relays `data` to `to`, or to every other member; fire-and-forget (a refusal is an `error` event with `rid: null`). */
  sendMessage(data: unknown, options?: { to?: string }): Promise<{}>;
  /** 1.2 `messages`: `sendMessage` with a reply: the number of recipients. */
  sendMessageWithReply(data: unknown, options?: { to?: string }): Promise<{ delivered: number }>;
  /** Also measures the round trip. */
  ping(): Promise<{ server_time: Timestamp; rtt_ms: number }>;
  /** Interval in ms (250 to 60000, default 1000). */
  subscribeStats(options?: number | { intervalMs?: number }): Promise<{ stats: Stats }>;
  unsubscribeStats(): Promise<{}>;
  subscribeRooms(options?: { mode?: string }): Promise<{ rooms: Room[] }>;
  unsubscribeRooms(): Promise<{}>;
  sendOffer(to: string, sdp: string): Promise<{}>;
  sendAnswer(to: string, sdp: string): Promise<{}>;
  /** null, or an empty candidate, sends the end-of-candidates signal. */
  /** Fire-and-forget: no `rid`, no `ok`; a refusal is an `error` event with `rid: null`. */
  sendIceCandidate(to: string, candidate: RTCIceCandidate | RTCIceCandidateInit | null): Promise<{}>;
  /** Sends a message without `rid` (fire-and-forget); resolves at once. */
  send(type: string, fields?: Record<string, unknown>): Promise<{}>;
  /** A WebRTC full mesh with the other members of the room. */
  mesh(options?: MeshOptions): Mesh;
}

/** Connects and resolves once the server's welcome arrived (rejects with code `connect_failed`). */
export function connect(url: string, options?: ConnectOptions): Promise<Client>;

/** Protocol version this client speaks. */
export const PROTOCOL_VERSION: 1;

// ---- WebRTC mesh -------------------------------------------------------------------

export interface PeerState {
  peerId: string;
  name: string;
  /** Perfect-negotiation role of this side toward the peer. */
  polite: boolean;
  /** This side sends the initial offer (it joined later). */
  offerer: boolean;
  connectionState: RTCPeerConnectionState;
  iceConnectionState: RTCIceConnectionState;
  signalingState: RTCSignalingState | 'closed';
  channelState: RTCDataChannelState | 'none';
}

/** One peer of a mesh (internal; read-only use). */
export interface MeshPeer {
  readonly id: string;
  readonly name: string;
  readonly offerer: boolean;
  readonly polite: boolean;
  readonly pc: RTCPeerConnection | null;
  readonly channel: RTCDataChannel | null;
}

export interface MeshOptions {
  onPeerOpen?: (peerId: string, peer: PeerState) => void;
  /** Parsed JSON when `json`; binary data as ArrayBuffer. */
  onPeerMessage?: (peerId: string, data: any) => void;
  onPeerClose?: (peerId: string, reason: string) => void;
  onPeerState?: (peerId: string, state: PeerState) => void;
  /** Send values as JSON and parse incoming text as JSON. Default true. */
  json?: boolean;
  /** Extra RTCPeerConnection configuration (iceServers default to the welcome's). */
  rtcConfig?: RTCConfiguration;
  /** DataChannel label. Default 'rendezvous'. */
  label?: string;
  /** An earlier player with no offer after this long offers itself; 0 disables. Default 6000. */
  offerTimeoutMs?: number;
}

export type MeshEvents = {
  peer_open: [peerId: string, peer: PeerState];
  peer_message: [peerId: string, data: any];
  peer_close: [peerId: string, reason: string];
  peer_state: [peerId: string, state: PeerState];
  signal_error: [peerId: string, error: unknown, stage: string];
};

/** Full WebRTC mesh between the members of the client's room. */
export class Mesh extends Emitter<MeshEvents> {
  constructor(client: Client, options?: MeshOptions);
  readonly client: Client;
  /** Peers by player id. */
  readonly peers: Map<string, MeshPeer>;
  closed: boolean;
  readonly peerIds: string[];
  state(peerId: string): PeerState | null;
  /** In room join order. */
  states(): PeerState[];
  /** False when that peer's channel is not open. */
  send(peerId: string, data: unknown): boolean;
  /** How many peers it was sent to. */
  broadcast(data: unknown): number;
  close(): void;
}

export {};
