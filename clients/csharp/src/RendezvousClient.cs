using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace Rendezvous
{
    /// <summary>
    /// A connection to a Rendezvous server: lobby, matchmaking, parties, spectators,
    /// WebRTC signaling and room messages over the wire protocol (v1 with the 1.1 and
    /// 1.2 additions). Create it with <see cref="ConnectAsync"/>.
    /// <para>
    /// Requests are methods returning a <see cref="Task"/>, matched to their reply by
    /// <c>rid</c>; a refusal faults the task with a <see cref="RendezvousException"/>.
    /// Server events are C# events, raised inside <see cref="DispatchEvents"/> (the
    /// default, <see cref="Rendezvous.DispatchMode.Queued"/>) or at once on the socket
    /// thread (<see cref="Rendezvous.DispatchMode.Immediate"/>). No method blocks.
    /// </para>
    /// <para>
    /// When the connection drops, the client reconnects with backoff and the latest
    /// resume token: the seat is kept, <see cref="Resumed"/> is raised and the events
    /// missed meanwhile follow in order.
    /// </para>
    /// </summary>
    public sealed class RendezvousClient : IDisposable, IAsyncDisposable
    {
        private static readonly HashSet<string> RoomReplies = new HashSet<string>
        {
            "find_match", "create_room", "join_room", "start_game", "finish_game",
            "set_room_data", "set_player_data", "set_ready",
        };

        private sealed class Pending
        {
            internal string Type;
            internal TaskCompletionSource<JsonObject> Tcs;
            internal Timer Timer;
        }

        private readonly string _url;
        private readonly ClientOptions _options;
        private readonly object _lock = new object();
        private readonly ConcurrentDictionary<long, Pending> _pending = new ConcurrentDictionary<long, Pending>();
        private readonly ConcurrentQueue<Action> _events = new ConcurrentQueue<Action>();
        private readonly Dictionary<string, List<Action<JsonObject>>> _handlers = new Dictionary<string, List<Action<JsonObject>>>();
        private readonly CancellationTokenSource _lifetime = new CancellationTokenSource();
        private readonly Random _random = new Random();
        private Connection _conn;
        private long _nextRid;
        private string _resumeToken;
        private Welcome _welcome;
        private JsonObject _room;
        private JsonObject _party;
        private long _minReconnectDelayMs;
        private volatile bool _closed;

        private RendezvousClient(string url, ClientOptions options)
        {
            _url = url ?? throw new ArgumentNullException(nameof(url));
            _options = options;
            _resumeToken = options.ResumeToken;
        }

        /// <summary>
        /// Connects and completes once the server's <c>welcome</c> arrived. Faults with a
        /// <see cref="RendezvousException"/> of code <c>connect_failed</c> when the socket
        /// cannot be opened (refused handshake, server down) or sends no welcome in time.
        /// </summary>
        /// <param name="url">The WebSocket endpoint, e.g. <c>ws://host:8080/ws</c> (http and https are accepted).</param>
        /// <param name="options">Options; null takes the defaults.</param>
        public static async Task<RendezvousClient> ConnectAsync(string url, ClientOptions options = null)
        {
            var client = new RendezvousClient(url, options ?? new ClientOptions());
            await client.OpenAsync().ConfigureAwait(false);
            return client;
        }

        // ---- State ---------------------------------------------------------------

        /// <summary>This player's id (from the latest <c>welcome</c>).</summary>
        public string PlayerId => _welcome?.PlayerId;

        /// <summary>The latest <c>welcome</c>: ICE servers, features, limits.</summary>
        public Welcome Welcome => _welcome;

        /// <summary>The resume token of the latest <c>welcome</c> (keep it to resume after a restart).</summary>
        public string ResumeToken => _resumeToken;

        /// <summary>True while a welcomed socket is open.</summary>
        public bool IsConnected { get { var c = _conn; return c != null && !c.IsDead; } }

        /// <summary>
        /// The player's room as the client last heard it (updated from replies and events
        /// as they arrive, so it may be ahead of events not yet dispatched), or null.
        /// A snapshot: do not modify it.
        /// </summary>
        public Room Room { get { var r = _room; return r == null ? null : new Room(r); } }

        /// <summary>The player's party (1.1), or null.</summary>
        public Party Party { get { var p = _party; return p == null ? null : new Party(p); } }

        /// <summary>Events waiting for <see cref="DispatchEvents"/>.</summary>
        public int PendingEvents => _events.Count;

        // ---- Events ----------------------------------------------------------------

        /// <summary><c>game_start</c>: the room became active.</summary>
        public event Action<GameStartedEvent> GameStarted;
        /// <summary><c>player_joined</c>: a player took a seat in the room.</summary>
        public event Action<PlayerJoinedEvent> PlayerJoined;
        /// <summary><c>player_left</c>: a player left, was kicked, timed out, or the room closed.</summary>
        public event Action<PlayerLeftEvent> PlayerLeft;
        /// <summary><c>player_disconnected</c>: a member dropped; the seat is held.</summary>
        public event Action<ServerEvent> PlayerDisconnected;
        /// <summary><c>player_reconnected</c>: a dropped member is back.</summary>
        public event Action<ServerEvent> PlayerReconnected;
        /// <summary><c>host_changed</c>.</summary>
        public event Action<HostChangedEvent> HostChanged;
        /// <summary><c>room_status</c>: <c>active</c> or <c>finished</c>.</summary>
        public event Action<RoomStatusEvent> RoomStatusChanged;
        /// <summary><c>room_data</c>.</summary>
        public event Action<DataChangedEvent> RoomDataChanged;
        /// <summary><c>player_data</c>.</summary>
        public event Action<DataChangedEvent> PlayerDataChanged;
        /// <summary><c>kicked</c>: this player was removed from the room.</summary>
        public event Action<ServerEvent> Kicked;
        /// <summary><c>offer</c>, <c>answer</c> and <c>ice_candidate</c> from another member.</summary>
        public event Action<SignalEvent> SignalReceived;
        /// <summary><c>chat</c>.</summary>
        public event Action<ChatEvent> ChatReceived;
        /// <summary><c>chat_history</c>, right after joining a room.</summary>
        public event Action<ChatHistoryEvent> ChatHistory;
        /// <summary><c>ticket_queued</c>: the party leader queued a ticket for this player.</summary>
        public event Action<TicketEvent> TicketQueued;
        /// <summary><c>ticket_expired</c>: no room formed in time.</summary>
        public event Action<TicketEvent> TicketExpired;
        /// <summary><c>party_updated</c>.</summary>
        public event Action<PartyUpdatedEvent> PartyUpdated;
        /// <summary><c>player_ready</c> (1.2).</summary>
        public event Action<PlayerReadyEvent> PlayerReady;
        /// <summary><c>message</c> (1.2): data another member sent with <c>send</c>.</summary>
        public event Action<MessageEvent> MessageReceived;
        /// <summary><c>announcement</c>.</summary>
        public event Action<AnnouncementEvent> Announcement;
        /// <summary><c>server_shutdown</c>: the client will reconnect after the delay it gives.</summary>
        public event Action<ServerShutdownEvent> ServerShutdown;
        /// <summary>A reconnection took the same seat back (<c>welcome</c> with <c>resumed: true</c>); missed events follow.</summary>
        public event Action<Welcome> Resumed;
        /// <summary>A reconnection got a fresh session (the seat was lost): new player id, no room.</summary>
        public event Action<Welcome> SessionLost;
        /// <summary>The connection dropped (see <see cref="DisconnectedEvent.WillReconnect"/>) or was closed.</summary>
        public event Action<DisconnectedEvent> Disconnected;
        /// <summary>
        /// An <c>error</c> that answers no pending request (e.g. a refused fire-and-forget signal,
        /// <c>rid</c> null), a frame that is not a protocol message (code <c>bad_frame</c>), or an
        /// exception thrown by an event handler (code <c>handler_exception</c>).
        /// </summary>
        public event Action<RendezvousException> Error;

        /// <summary>
        /// Subscribes to every server event of a <c>type</c> (including those with a typed
        /// event, and those without: <c>stats</c>, <c>room_listed</c>, <c>spectator_joined</c>...).
        /// Dispatched like the typed events. Dispose the result to unsubscribe.
        /// </summary>
        public IDisposable On(string type, Action<JsonObject> handler)
        {
            if (type == null) throw new ArgumentNullException(nameof(type));
            if (handler == null) throw new ArgumentNullException(nameof(handler));
            lock (_handlers)
            {
                if (!_handlers.TryGetValue(type, out var list)) _handlers[type] = list = new List<Action<JsonObject>>();
                list.Add(handler);
            }
            return new Unsubscriber(() => { lock (_handlers) { if (_handlers.TryGetValue(type, out var l)) l.Remove(handler); } });
        }

        /// <summary>
        /// Raises the queued events, in order, on the calling thread; returns how many.
        /// Call it once per frame (e.g. from a MonoBehaviour's <c>Update</c>). Does nothing
        /// useful in <see cref="Rendezvous.DispatchMode.Immediate"/> mode.
        /// </summary>
        public int DispatchEvents()
        {
            var n = _events.Count;
            var done = 0;
            while (done < n && _events.TryDequeue(out var raise))
            {
                done++;
                Invoke(raise);
            }
            return done;
        }

        // ---- Requests ---------------------------------------------------------------

        /// <summary>
        /// Sends any request and completes with its <c>ok</c> reply (the whole message).
        /// Faults with the server's error code, or <c>disconnected</c> / <c>timeout</c>.
        /// </summary>
        public Task<JsonObject> RequestAsync(string type, JsonObject fields = null)
        {
            var conn = _conn;
            if (conn == null || conn.IsDead)
                return Task.FromException<JsonObject>(new RendezvousException("disconnected", "not connected", type));
            var rid = Interlocked.Increment(ref _nextRid);
            var p = new Pending { Type = type, Tcs = new TaskCompletionSource<JsonObject>(TaskCreationOptions.RunContinuationsAsynchronously) };
            _pending[rid] = p;
            var timeout = _options.RequestTimeout;
            if (timeout > TimeSpan.Zero)
            {
                p.Timer = new Timer(_ =>
                {
                    if (_pending.TryRemove(rid, out var gone))
                        Fail(gone, new RendezvousException("timeout", "no reply to " + type + " within " + (long)timeout.TotalMilliseconds + " ms", type));
                }, null, timeout, Timeout.InfiniteTimeSpan);
            }
            if (!conn.Enqueue(Message(type, rid, fields).ToString(), null) && _pending.TryRemove(rid, out var lost))
                Fail(lost, new RendezvousException("disconnected", "not connected", type));
            return p.Tcs.Task;
        }

        /// <summary>
        /// Sends a message without <c>rid</c> (fire-and-forget: no <c>ok</c> comes back; a refusal
        /// arrives as an <see cref="Error"/> event). Throws <see cref="RendezvousException"/>
        /// (<c>disconnected</c>) when not connected. The task completes once the frame is written.
        /// </summary>
        public Task SendMessageAsync(string type, JsonObject fields = null)
        {
            var conn = _conn;
            var sent = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
            if (conn == null || !conn.Enqueue(Message(type, null, fields).ToString(), sent))
                throw new RendezvousException("disconnected", "not connected", type);
            return sent.Task;
        }

        /// <summary>Matchmaking: joins the oldest fitting public waiting room, or creates one.</summary>
        public async Task<MatchResult> FindMatchAsync(FindMatchOptions options = null)
        {
            var ok = await RequestAsync("find_match", (options ?? new FindMatchOptions()).ToJson()).ConfigureAwait(false);
            return new MatchResult(new Room(ok.GetObject("room")), ok.GetBool("created"));
        }

        /// <summary>Creates a room; this player hosts it. A private room's <see cref="Rendezvous.Room.Code"/> is its join code.</summary>
        public Task<Room> CreateRoomAsync(CreateRoomOptions options = null) =>
            RoomRequest("create_room", (options ?? new CreateRoomOptions()).ToJson());

        /// <summary>Joins a room by its 6-character code or its id.</summary>
        public Task<Room> JoinRoomAsync(string roomIdOrCode) => RoomRequest("join_room", Target(roomIdOrCode, null));

        /// <summary>Joins a room as a spectator (1.1; <c>join_room</c> with <c>"as": "spectator"</c>), by code or id.</summary>
        public Task<Room> SpectateAsync(string roomIdOrCode) => RoomRequest("join_room", Target(roomIdOrCode, "spectator"));

        /// <summary>Leaves the room (gives the seat up at once).</summary>
        public Task LeaveRoomAsync() => RequestAsync("leave_room");

        /// <summary>Host: starts the game (members get <see cref="GameStarted"/>).</summary>
        public Task<Room> StartGameAsync() => RoomRequest("start_game", null);

        /// <summary>Host: finishes the game, with an optional result for everyone.</summary>
        public Task<Room> FinishGameAsync(JsonObject result = null) =>
            RoomRequest("finish_game", result == null ? null : new JsonObject { { "result", result } });

        /// <summary>Host: replaces the room's data.</summary>
        public Task<Room> SetRoomDataAsync(JsonObject data) => RoomRequest("set_room_data", new JsonObject { { "data", data ?? new JsonObject() } });

        /// <summary>Replaces this player's data in the room.</summary>
        public Task<Room> SetPlayerDataAsync(JsonObject data) => RoomRequest("set_player_data", new JsonObject { { "data", data ?? new JsonObject() } });

        /// <summary>Host: removes a player, who cannot come back to this room.</summary>
        public Task KickAsync(string playerId) => RequestAsync("kick", new JsonObject { { "player_id", playerId } });

        /// <summary>Sends a chat line (1 to 500 characters) to the room.</summary>
        public Task ChatAsync(string text) => RequestAsync("chat", new JsonObject { { "text", text } });

        /// <summary>Ticket matchmaking (1.1): queues a ticket; <see cref="GameStarted"/> follows when a room forms.</summary>
        public async Task<Ticket> QueueMatchAsync(QueueMatchOptions options = null)
        {
            var ok = await RequestAsync("queue_match", (options ?? new QueueMatchOptions()).ToJson()).ConfigureAwait(false);
            return new Ticket(ok.GetObject("ticket"));
        }

        /// <summary>Takes this player's ticket out of the queue (<c>not_queued</c> when there is none).</summary>
        public Task CancelMatchAsync() => RequestAsync("cancel_match");

        /// <summary>Creates a party (1.1) of 2 to 16 members led by this player.</summary>
        public Task<Party> CreatePartyAsync(int maxSize = 4) => PartyRequest("create_party", new JsonObject { { "max_size", maxSize } });

        /// <summary>Joins a party by its code.</summary>
        public Task<Party> JoinPartyAsync(string code) => PartyRequest("join_party", new JsonObject { { "code", (code ?? "").Trim().ToUpperInvariant() } });

        /// <summary>Leaves the party.</summary>
        public async Task LeavePartyAsync()
        {
            await RequestAsync("leave_party").ConfigureAwait(false);
        }

        /// <summary>Lists public rooms, oldest first: <paramref name="status"/> <c>waiting</c> (default) or <c>active</c>.</summary>
        public async Task<IReadOnlyList<Room>> ListRoomsAsync(string status = null, string mode = null, int? limit = null)
        {
            var f = new JsonObject();
            Fields.Put(f, "status", status);
            Fields.Put(f, "mode", mode);
            Fields.Put(f, "limit", limit);
            return Rooms(await RequestAsync("list_rooms", f).ConfigureAwait(false));
        }

        /// <summary>Subscribes to the public waiting rooms: returns them now; <c>room_listed</c>, <c>room_updated</c> and <c>room_delisted</c> follow (see <see cref="On"/>).</summary>
        public async Task<IReadOnlyList<Room>> SubscribeRoomsAsync(string mode = null)
        {
            var f = new JsonObject();
            Fields.Put(f, "mode", mode);
            return Rooms(await RequestAsync("subscribe_rooms", f).ConfigureAwait(false));
        }

        /// <summary>Stops the room-list events.</summary>
        public Task UnsubscribeRoomsAsync() => RequestAsync("unsubscribe_rooms");

        /// <summary>Subscribes to <c>stats</c> events every <paramref name="intervalMs"/> (see <see cref="On"/>); returns the stats now.</summary>
        public async Task<JsonObject> SubscribeStatsAsync(int intervalMs = 1000)
        {
            var ok = await RequestAsync("subscribe_stats", new JsonObject { { "interval_ms", intervalMs } }).ConfigureAwait(false);
            return ok.GetObject("stats") ?? new JsonObject();
        }

        /// <summary>Stops the <c>stats</c> events.</summary>
        public Task UnsubscribeStatsAsync() => RequestAsync("unsubscribe_stats");

        /// <summary>Round trip to the server.</summary>
        public async Task<PingResult> PingAsync()
        {
            var watch = Stopwatch.StartNew();
            var ok = await RequestAsync("ping").ConfigureAwait(false);
            return new PingResult(ok.GetString("server_time"), watch.Elapsed);
        }

        /// <summary>1.2 ready check: sets this player's ready flag (members get <see cref="PlayerReady"/>); returns the room.</summary>
        public Task<Room> SetReadyAsync(bool ready) => RoomRequest("set_ready", new JsonObject { { "ready", ready } });

        /// <summary>
        /// 1.2 room message: relays <paramref name="data"/> (any JSON value) to one member
        /// (<paramref name="to"/>) or to every other member, and returns how many received it.
        /// </summary>
        public async Task<int> SendAsync(JsonValue data, string to = null)
        {
            var ok = await RequestAsync("send", SendFields(data, to)).ConfigureAwait(false);
            return (int)ok.GetLong("delivered");
        }

        /// <summary>1.2 room message, fire-and-forget (no <c>rid</c>; a refusal comes as an <see cref="Error"/> event).</summary>
        public void Send(JsonValue data, string to = null) => Observe(SendMessageAsync("send", SendFields(data, to)));

        // ---- Signaling ------------------------------------------------------------

        /// <summary>Sends an SDP offer with a <c>rid</c>: completes on the server's <c>ok</c>, faults on a refusal.</summary>
        public Task OfferAsync(string to, string sdp) => RequestAsync("offer", new JsonObject { { "to", to }, { "sdp", sdp } });

        /// <summary>Sends an SDP answer with a <c>rid</c>.</summary>
        public Task AnswerAsync(string to, string sdp) => RequestAsync("answer", new JsonObject { { "to", to }, { "sdp", sdp } });

        /// <summary>Sends an ICE candidate with a <c>rid</c>.</summary>
        public Task IceCandidateAsync(string to, IceCandidate candidate) =>
            RequestAsync("ice_candidate", new JsonObject { { "to", to }, { "candidate", (candidate ?? new IceCandidate("")).ToJson() } });

        /// <summary>Sends an SDP offer fire-and-forget (1.1): completes once written; a refusal raises <see cref="Error"/>.</summary>
        public Task SendOfferAsync(string to, string sdp) => SendMessageAsync("offer", new JsonObject { { "to", to }, { "sdp", sdp } });

        /// <summary>Sends an SDP answer fire-and-forget.</summary>
        public Task SendAnswerAsync(string to, string sdp) => SendMessageAsync("answer", new JsonObject { { "to", to }, { "sdp", sdp } });

        /// <summary>
        /// Trickles an ICE candidate fire-and-forget (the way to send candidates). A null or
        /// empty <paramref name="candidate"/> sends the end-of-candidates signal.
        /// </summary>
        public void SendIceCandidate(string to, string candidate, string sdpMid = null, int? sdpMLineIndex = null)
        {
            var c = string.IsNullOrEmpty(candidate) ? (JsonValue)"" : new IceCandidate(candidate, sdpMid, sdpMLineIndex).ToJson();
            Observe(SendMessageAsync("ice_candidate", new JsonObject { { "to", to }, { "candidate", c } }));
        }

        // ---- Closing ---------------------------------------------------------------

        /// <summary>
        /// Closes for good (no reconnection) without waiting. The server holds the seat for
        /// its grace period as for any drop: call <see cref="LeaveRoomAsync"/> first to give it up.
        /// </summary>
        public void Close() => Observe(CloseAsync());

        /// <summary>Closes for good, waiting (at most 2 s) for the server's close handshake.</summary>
        public async Task CloseAsync()
        {
            if (_closed) return;
            _closed = true;
            _lifetime.Cancel();
            var conn = _conn;
            if (conn != null && !conn.IsDead)
            {
                try
                {
                    using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2)))
                        await conn.Ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "client closed", cts.Token).ConfigureAwait(false);
                }
                catch (Exception) { /* already broken */ }
                Drop(conn, 1000, "client closed");
            }
            FailAll("the client was closed");
        }

        /// <summary>Same as <see cref="CloseAsync"/>.</summary>
        public ValueTask DisposeAsync() => new ValueTask(CloseAsync());

        /// <summary>Same as <see cref="Close"/>.</summary>
        public void Dispose() => Close();

        // ---- Connection lifecycle ----------------------------------------------

        private async Task OpenAsync()
        {
            var ws = new ClientWebSocket();
            var conn = new Connection(ws, _options.MaxReceiveBytes);
            Welcome welcome;
            try
            {
                using (var cts = CancellationTokenSource.CreateLinkedTokenSource(_lifetime.Token))
                {
                    cts.CancelAfter(_options.ConnectTimeout);
                    await ws.ConnectAsync(BuildUri(), cts.Token).ConfigureAwait(false);
                    var first = await conn.ReceiveAsync(cts.Token).ConfigureAwait(false);
                    var json = first != null && first.IsText ? TryParse(first.Text) : null;
                    if (json == null || json.GetString("type") != "welcome" || json.GetString("player_id") == null)
                        throw new RendezvousException("connect_failed", "the server's first message was not a welcome");
                    welcome = new Welcome(json);
                }
            }
            catch (Exception e)
            {
                conn.MarkDead();
                ws.Dispose();
                if (e is RendezvousException) throw;
                throw new RendezvousException("connect_failed", "could not connect to " + _url + ": " + e.Message, inner: e);
            }
            var reconnection = _welcome != null;
            lock (_lock)
            {
                if (_closed) { conn.MarkDead(); ws.Dispose(); throw new RendezvousException("disconnected", "the client was closed"); }
                _welcome = welcome;
                _resumeToken = welcome.ResumeToken;
                _room = welcome.Resumed ? welcome.Json.GetObject("room") : null;
                _party = welcome.Resumed ? welcome.Json.GetObject("party") : null;
                _conn = conn;
            }
            if (welcome.Resumed) Emit(() => Resumed?.Invoke(welcome));
            else if (reconnection) Emit(() => SessionLost?.Invoke(welcome));
            _ = Task.Run(() => ReceiveLoop(conn));
            _ = Task.Run(() => SendLoop(conn));
            _ = Task.Run(() => HeartbeatLoop(conn, welcome));
        }

        private Uri BuildUri()
        {
            var url = _url;
            if (url.StartsWith("http://", StringComparison.OrdinalIgnoreCase)) url = "ws://" + url.Substring(7);
            else if (url.StartsWith("https://", StringComparison.OrdinalIgnoreCase)) url = "wss://" + url.Substring(8);
            var query = new StringBuilder();
            AddParam(query, url, "name", _options.Name);
            AddParam(query, url, "token", _options.Token);
            AddParam(query, url, "resume", _resumeToken);
            return new Uri(url + query);
        }

        private static void AddParam(StringBuilder query, string url, string key, string value)
        {
            if (string.IsNullOrEmpty(value)) return;
            query.Append(query.Length == 0 && url.IndexOf('?') < 0 ? '?' : '&');
            query.Append(key).Append('=').Append(Uri.EscapeDataString(value));
        }

        private async Task ReceiveLoop(Connection conn)
        {
            try
            {
                while (!conn.IsDead)
                {
                    var msg = await conn.ReceiveAsync(conn.Cts.Token).ConfigureAwait(false);
                    if (msg == null)
                    {
                        Drop(conn, (int?)conn.Ws.CloseStatus, conn.Ws.CloseStatusDescription);
                        return;
                    }
                    Handle(msg);
                }
            }
            catch (Exception e)
            {
                if (e is RendezvousException re) Emit(() => Error?.Invoke(re));
                Drop(conn, null, e.Message);
            }
        }

        private async Task SendLoop(Connection conn)
        {
            var failure = await conn.RunSenderAsync().ConfigureAwait(false);
            if (failure != null) Drop(conn, null, "send failed: " + failure.Message);
        }

        // The server pings, but ClientWebSocket hides pings: when nothing arrived for a
        // heartbeat interval, ask for a reply; after the timeout, the socket is dead.
        private async Task HeartbeatLoop(Connection conn, Welcome welcome)
        {
            var interval = Math.Max(1000, welcome.HeartbeatIntervalMs);
            var timeout = Math.Max(interval, welcome.HeartbeatTimeoutMs);
            var period = TimeSpan.FromMilliseconds(Math.Max(500, Math.Min(interval, timeout / 3)));
            try
            {
                while (!conn.IsDead)
                {
                    await Task.Delay(period, conn.Cts.Token).ConfigureAwait(false);
                    var silent = conn.SilentMs;
                    if (silent >= timeout) { Drop(conn, null, "heartbeat timeout"); return; }
                    if (silent >= interval) conn.Enqueue("{\"type\":\"ping\"}", null);
                }
            }
            catch (OperationCanceledException) { }
        }

        private void Drop(Connection conn, int? code, string reason)
        {
            if (!conn.MarkDead()) return;
            lock (_lock) { if (_conn == conn) _conn = null; }
            try { conn.Ws.Dispose(); } catch (Exception) { }
            FailAll("the connection dropped before the reply");
            // 4001: this identity connected elsewhere; 1008: the server wants this client gone.
            var again = !_closed && _options.Reconnect && code != 4001 && code != 1008;
            Emit(() => Disconnected?.Invoke(new DisconnectedEvent(code, reason, again)));
            if (again) Task.Run(() => ReconnectLoop());
        }

        private async Task ReconnectLoop()
        {
            var min = Math.Max(1.0, _options.ReconnectMinDelay.TotalMilliseconds);
            var max = Math.Max(min, _options.ReconnectMaxDelay.TotalMilliseconds);
            for (var attempt = 1; attempt <= _options.MaxReconnectAttempts && !_closed; attempt++)
            {
                var ceiling = Math.Min(max, min * Math.Pow(2, Math.Min(attempt - 1, 30)));
                double delay;
                lock (_random) delay = ceiling / 2 + _random.NextDouble() * ceiling / 2;
                delay = Math.Max(delay, Interlocked.Exchange(ref _minReconnectDelayMs, 0));
                try
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(delay), _lifetime.Token).ConfigureAwait(false);
                    await OpenAsync().ConfigureAwait(false);
                    return;
                }
                catch (Exception) when (!_closed) { /* next attempt */ }
                catch (Exception) { return; }
            }
            if (!_closed) Emit(() => Disconnected?.Invoke(new DisconnectedEvent(null, "gave up reconnecting", false)));
        }

        // ---- Incoming messages -------------------------------------------------

        private void Handle(Incoming frame)
        {
            var msg = frame.IsText ? TryParse(frame.Text) : null;
            var type = msg?.GetString("type");
            if (type == null)
            {
                var what = !frame.IsText ? "a binary frame" : msg == null ? "a frame that is not a JSON object" : "a message without a type";
                var snippet = frame.Text.Length > 80 ? frame.Text.Substring(0, 80) + "..." : frame.Text;
                var err = new RendezvousException("bad_frame", "ignored " + what + " from the server: " + snippet);
                Emit(() => Error?.Invoke(err));
                return;
            }
            if (type == "ok" || type == "error")
            {
                var rid = msg["rid"];
                if (rid != null && rid.Kind == JsonKind.Number && _pending.TryRemove(rid.AsLong(), out var p))
                {
                    if (type == "ok") Complete(p, msg);
                    else Fail(p, ServerError(msg, p.Type));
                }
                else if (type == "error")
                {
                    var err = ServerError(msg, null);
                    Emit(() => Error?.Invoke(err));
                }
                return; // an unmatched ok answers a request sent without rid
            }
            if (type == "server_shutdown") Interlocked.Exchange(ref _minReconnectDelayMs, msg.GetLong("reconnect_after_ms"));
            Track(msg, type);
            Emit(() => Raise(type, msg));
        }

        private void Raise(string type, JsonObject m)
        {
            switch (type)
            {
                case "game_start": GameStarted?.Invoke(new GameStartedEvent(m)); break;
                case "player_joined": PlayerJoined?.Invoke(new PlayerJoinedEvent(m)); break;
                case "player_left": PlayerLeft?.Invoke(new PlayerLeftEvent(m)); break;
                case "player_disconnected": PlayerDisconnected?.Invoke(new ServerEvent(m)); break;
                case "player_reconnected": PlayerReconnected?.Invoke(new ServerEvent(m)); break;
                case "host_changed": HostChanged?.Invoke(new HostChangedEvent(m)); break;
                case "room_status": RoomStatusChanged?.Invoke(new RoomStatusEvent(m)); break;
                case "room_data": RoomDataChanged?.Invoke(new DataChangedEvent(m)); break;
                case "player_data": PlayerDataChanged?.Invoke(new DataChangedEvent(m)); break;
                case "kicked": Kicked?.Invoke(new ServerEvent(m)); break;
                case "offer":
                case "answer":
                case "ice_candidate": SignalReceived?.Invoke(new SignalEvent(m)); break;
                case "chat": ChatReceived?.Invoke(new ChatEvent(m)); break;
                case "chat_history": ChatHistory?.Invoke(new ChatHistoryEvent(m)); break;
                case "ticket_queued": TicketQueued?.Invoke(new TicketEvent(m)); break;
                case "ticket_expired": TicketExpired?.Invoke(new TicketEvent(m)); break;
                case "party_updated": PartyUpdated?.Invoke(new PartyUpdatedEvent(m)); break;
                case "player_ready": PlayerReady?.Invoke(new PlayerReadyEvent(m)); break;
                case "message": MessageReceived?.Invoke(new MessageEvent(m)); break;
                case "announcement": Announcement?.Invoke(new AnnouncementEvent(m)); break;
                case "server_shutdown": ServerShutdown?.Invoke(new ServerShutdownEvent(m)); break;
            }
            Action<JsonObject>[] handlers;
            lock (_handlers)
            {
                if (!_handlers.TryGetValue(type, out var list) || list.Count == 0) return;
                handlers = list.ToArray();
            }
            foreach (var h in handlers) Invoke(() => h(m));
        }

        // Keeps Room and Party current, in the order messages arrive.
        private void Track(JsonObject m, string type)
        {
            lock (_lock)
            {
                if (type == "party_updated") { _party = m.GetObject("party") ?? _party; return; }
                if (type == "game_start" || type == "room_joined") { _room = m.GetObject("room") ?? _room; return; }
                var room = _room;
                if (room == null || m.GetString("room_id") != room.GetString("room_id")) return;
                var me = PlayerId;
                var id = m.GetString("player_id");
                var next = room.Clone();
                switch (type)
                {
                    case "kicked": _room = null; return;
                    case "player_left":
                    case "spectator_left":
                        if (id == me) { _room = null; return; }
                        Edit(next, type == "player_left" ? "players" : "spectators", p => p.GetString("player_id") == id ? null : p);
                        break;
                    case "player_joined":
                    case "spectator_joined":
                        var player = m.GetObject("player");
                        if (player == null) return;
                        var key = type == "player_joined" ? "players" : "spectators";
                        Edit(next, key, p => p.GetString("player_id") == player.GetString("player_id") ? null : p);
                        (next.GetArray(key) ?? Put(next, key)).Add(player);
                        break;
                    case "player_disconnected":
                    case "player_reconnected":
                        Edit(next, "players", p => { if (p.GetString("player_id") == id) p["connected"] = type == "player_reconnected"; return p; });
                        break;
                    case "player_data":
                    case "player_ready":
                        var field = type == "player_data" ? "data" : "ready";
                        Edit(next, "players", p => { if (p.GetString("player_id") == id) p[field] = m[field]; return p; });
                        break;
                    case "host_changed": next["host"] = m["host"]; break;
                    case "room_status": next["status"] = m["status"]; break;
                    case "room_data": next["data"] = m["data"]; break;
                    default: return;
                }
                _room = next;
            }
        }

        private static void Edit(JsonObject room, string key, Func<JsonObject, JsonObject> map)
        {
            var old = room.GetArray(key);
            if (old == null) return;
            var list = new JsonArray();
            foreach (var item in old)
            {
                var kept = item is JsonObject o ? map(o) : item;
                if (kept != null) list.Add(kept);
            }
            room[key] = list;
        }

        private static JsonArray Put(JsonObject o, string key)
        {
            var a = new JsonArray();
            o[key] = a;
            return a;
        }

        private void Complete(Pending p, JsonObject ok)
        {
            p.Timer?.Dispose();
            lock (_lock)
            {
                if (RoomReplies.Contains(p.Type) && ok.GetObject("room") != null) _room = ok.GetObject("room");
                if (p.Type == "leave_room") _room = null;
                if ((p.Type == "create_party" || p.Type == "join_party") && ok.GetObject("party") != null) _party = ok.GetObject("party");
                if (p.Type == "leave_party") _party = null;
            }
            p.Tcs.TrySetResult(ok);
        }

        private static void Fail(Pending p, Exception e)
        {
            p.Timer?.Dispose();
            p.Tcs.TrySetException(e);
        }

        private void FailAll(string why)
        {
            foreach (var rid in _pending.Keys)
                if (_pending.TryRemove(rid, out var p)) Fail(p, new RendezvousException("disconnected", why, p.Type));
        }

        // ---- Dispatch ----------------------------------------------------------------

        private void Emit(Action raise)
        {
            if (_options.DispatchMode == DispatchMode.Immediate) Invoke(raise);
            else _events.Enqueue(raise);
        }

        // A handler's exception must not break the client: it is reported through Error.
        private void Invoke(Action raise)
        {
            try
            {
                raise();
            }
            catch (Exception e)
            {
                try { Error?.Invoke(new RendezvousException("handler_exception", "an event handler threw: " + e.Message, inner: e)); }
                catch (Exception) { /* the Error handler itself threw: nothing left to tell */ }
            }
        }

        private void Observe(Task task) =>
            task.ContinueWith(t =>
            {
                var e = t.Exception?.GetBaseException();
                var err = e as RendezvousException ?? new RendezvousException("disconnected", e?.Message, inner: e);
                Emit(() => Error?.Invoke(err));
            }, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);

        // ---- Helpers -----------------------------------------------------------------

        private async Task<Room> RoomRequest(string type, JsonObject fields)
        {
            var ok = await RequestAsync(type, fields).ConfigureAwait(false);
            return new Room(ok.GetObject("room"));
        }

        private async Task<Party> PartyRequest(string type, JsonObject fields)
        {
            var ok = await RequestAsync(type, fields).ConfigureAwait(false);
            return new Party(ok.GetObject("party"));
        }

        private static IReadOnlyList<Room> Rooms(JsonObject ok) => JsonView.List(ok.GetArray("rooms"), o => new Room(o));

        private static JsonObject Message(string type, long? rid, JsonObject fields)
        {
            var m = new JsonObject { { "type", type } };
            if (rid.HasValue) m["rid"] = rid.Value;
            if (fields != null)
                foreach (var kv in fields)
                    if (kv.Key != "type" && kv.Key != "rid") m[kv.Key] = kv.Value;
            return m;
        }

        private static JsonObject Target(string roomIdOrCode, string asRole)
        {
            var t = (roomIdOrCode ?? "").Trim();
            var isCode = t.Length >= 4 && t.Length <= 8 && t.IndexOf('-') < 0;
            var f = isCode ? new JsonObject { { "code", t.ToUpperInvariant() } } : new JsonObject { { "room_id", t } };
            if (asRole != null) f["as"] = asRole;
            return f;
        }

        private static JsonObject SendFields(JsonValue data, string to)
        {
            var f = new JsonObject();
            if (to != null) f["to"] = to;
            f["data"] = data ?? JsonValue.Null;
            return f;
        }

        private static JsonObject TryParse(string text)
        {
            try { return JsonValue.Parse(text) as JsonObject; }
            catch (FormatException) { return null; }
        }

        private static RendezvousException ServerError(JsonObject msg, string request) =>
            new RendezvousException(msg.GetString("code") ?? "internal", msg.GetString("message"), request, msg);

        private sealed class Unsubscriber : IDisposable
        {
            private Action _undo;
            internal Unsubscriber(Action undo) { _undo = undo; }
            public void Dispose() { Interlocked.Exchange(ref _undo, null)?.Invoke(); }
        }
    }
}
