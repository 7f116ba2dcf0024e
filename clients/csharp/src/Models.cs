// Typed views of the protocol's objects and events. Each wraps the JSON it was
// read from (property Json) and reads fields on demand, so a field the server
// adds later is still reachable and a malformed field reads as a default.
using System;
using System.Collections.Generic;
using System.Linq;

namespace Rendezvous
{
    /// <summary>
    /// A refused or failed request. <see cref="Code"/> is the protocol's error code
    /// (<c>room_full</c>, <c>rate_limited</c>, ...) or one of the client's own:
    /// <c>timeout</c> (no reply within <see cref="ClientOptions.RequestTimeout"/>),
    /// <c>disconnected</c> (the socket was not open or dropped before the reply),
    /// <c>connect_failed</c>, <c>bad_frame</c> (the server sent something that is not a protocol message),
    /// <c>handler_exception</c> (an event handler threw; raised through <see cref="RendezvousClient.Error"/> only).
    /// </summary>
    public sealed class RendezvousException : Exception
    {
        /// <summary>Creates an exception.</summary>
        public RendezvousException(string code, string message, string request = null, JsonObject reply = null, Exception inner = null)
            : base(message ?? code, inner)
        {
            Code = code;
            Request = request;
            Reply = reply;
        }

        /// <summary>Machine-readable code; act on this, not on <see cref="Exception.Message"/>.</summary>
        public string Code { get; }

        /// <summary>The request type that failed (e.g. <c>join_room</c>), when known.</summary>
        public string Request { get; }

        /// <summary>The server's <c>error</c> message as received, when there was one.</summary>
        public JsonObject Reply { get; }
    }

    /// <summary>Base of the typed views: the JSON object it reads.</summary>
    public abstract class JsonView
    {
        /// <summary>Wraps an object (null becomes an empty object).</summary>
        protected JsonView(JsonObject json) { Json = json ?? new JsonObject(); }

        /// <summary>The object as received.</summary>
        public JsonObject Json { get; }

        /// <summary>The JSON text.</summary>
        public override string ToString() => Json.ToString();

        internal static List<T> List<T>(JsonArray array, Func<JsonObject, T> make)
        {
            var list = new List<T>();
            if (array == null) return list;
            foreach (var item in array)
                if (item is JsonObject o) list.Add(make(o));
            return list;
        }

        internal static List<string> Strings(JsonArray array)
        {
            var list = new List<string>();
            if (array == null) return list;
            foreach (var item in array)
                if (item.AsString() != null) list.Add(item.AsString());
            return list;
        }
    }

    /// <summary>The server's first message: identity, resume token, ICE servers, limits and features.</summary>
    public sealed class Welcome : JsonView
    {
        internal Welcome(JsonObject json) : base(json) { }

        /// <summary>This player's id, the only identity peers see.</summary>
        public string PlayerId => Json.GetString("player_id");
        /// <summary>The display name the server uses.</summary>
        public string Name => Json.GetString("name");
        /// <summary>The token that takes the seat back after a drop (single use; the client keeps the latest).</summary>
        public string ResumeToken => Json.GetString("resume_token");
        /// <summary>True when this session is the same player as before the drop.</summary>
        public bool Resumed => Json.GetBool("resumed");
        /// <summary>The room after a resume, else null.</summary>
        public Room Room => Json.GetObject("room") is JsonObject r ? new Room(r) : null;
        /// <summary>Events dropped from the resume buffer while away (0 when none).</summary>
        public long Missed => Json.GetLong("missed");
        /// <summary>How often the server pings, in ms.</summary>
        public long HeartbeatIntervalMs => Json.GetLong("heartbeat_interval_ms", 15000);
        /// <summary>Silence after which either side drops the connection, in ms.</summary>
        public long HeartbeatTimeoutMs => Json.GetLong("heartbeat_timeout_ms", 45000);
        /// <summary>STUN and TURN servers for the peer connections.</summary>
        public IReadOnlyList<IceServer> IceServers => List(Json.GetArray("ice_servers"), o => new IceServer(o));
        /// <summary>What the server supports beyond protocol v1 (<c>tickets</c>, <c>parties</c>, <c>spectators</c>, <c>ready</c>, <c>messages</c>, ...).</summary>
        public IReadOnlyList<string> Features => Strings(Json.GetArray("features"));
        /// <summary>The server's limits (<c>max_message_bytes</c>, <c>max_players</c>).</summary>
        public JsonObject Limits => Json.GetObject("limits") ?? new JsonObject();
        /// <summary>Whether <see cref="Features"/> names <paramref name="feature"/>.</summary>
        public bool HasFeature(string feature) => Features.Contains(feature);
    }

    /// <summary>One ICE server entry (the shape of WebRTC's RTCIceServer).</summary>
    public sealed class IceServer : JsonView
    {
        internal IceServer(JsonObject json) : base(json) { }
        /// <summary><c>stun:</c> / <c>turn:</c> URLs.</summary>
        public IReadOnlyList<string> Urls => Json.GetString("urls") is string one ? new List<string> { one } : Strings(Json.GetArray("urls"));
        /// <summary>TURN user name, or null.</summary>
        public string Username => Json.GetString("username");
        /// <summary>TURN credential, or null.</summary>
        public string Credential => Json.GetString("credential");
    }

    /// <summary>A room as the server shows it.</summary>
    public sealed class Room : JsonView
    {
        /// <summary>Wraps a room object.</summary>
        public Room(JsonObject json) : base(json) { }
        /// <summary>The room's id.</summary>
        public string RoomId => Json.GetString("room_id");
        /// <summary>The 6-character join code (members only), or null.</summary>
        public string Code => Json.GetString("code");
        /// <summary><c>waiting</c>, <c>active</c> or <c>finished</c>.</summary>
        public string Status => Json.GetString("status");
        /// <summary>The game mode.</summary>
        public string Mode => Json.GetString("mode");
        /// <summary>The host's player id.</summary>
        public string Host => Json.GetString("host");
        /// <summary>Seats.</summary>
        public int MaxPlayers => (int)Json.GetLong("max_players");
        /// <summary>The room's data (set by the host).</summary>
        public JsonObject Data => Json.GetObject("data") ?? new JsonObject();
        /// <summary>Seated players in join order (the full-mesh order: later joiners offer).</summary>
        public IReadOnlyList<PlayerInfo> Players => List(Json.GetArray("players"), o => new PlayerInfo(o));
        /// <summary>Spectators (1.1), empty when none.</summary>
        public IReadOnlyList<PlayerInfo> Spectators => List(Json.GetArray("spectators"), o => new PlayerInfo(o));
    }

    /// <summary>A player in a room or party.</summary>
    public sealed class PlayerInfo : JsonView
    {
        internal PlayerInfo(JsonObject json) : base(json) { }
        /// <summary>The player's id.</summary>
        public string PlayerId => Json.GetString("player_id");
        /// <summary>Display name.</summary>
        public string Name => Json.GetString("name");
        /// <summary>False while the seat is held for a dropped player.</summary>
        public bool Connected => Json.GetBool("connected", true);
        /// <summary>The ready flag (1.2 <c>set_ready</c>).</summary>
        public bool Ready => Json.GetBool("ready");
        /// <summary>Player data.</summary>
        public JsonObject Data => Json.GetObject("data") ?? new JsonObject();
    }

    /// <summary>A party (1.1): a group that queues and plays together.</summary>
    public sealed class Party : JsonView
    {
        internal Party(JsonObject json) : base(json) { }
        /// <summary>The party's id.</summary>
        public string PartyId => Json.GetString("party_id");
        /// <summary>Join code to share.</summary>
        public string Code => Json.GetString("code");
        /// <summary>The leader's player id (the one who queues).</summary>
        public string Leader => Json.GetString("leader");
        /// <summary>Members in join order.</summary>
        public IReadOnlyList<PlayerInfo> Members => List(Json.GetArray("members"), o => new PlayerInfo(o));
    }

    /// <summary>A matchmaking ticket (1.1 <c>queue_match</c>).</summary>
    public sealed class Ticket : JsonView
    {
        internal Ticket(JsonObject json) : base(json) { }
        /// <summary>The ticket's id (also on the <c>game_start</c> it ends with).</summary>
        public string TicketId => Json.GetString("ticket_id");
        /// <summary>Player ids on the ticket, leader first.</summary>
        public IReadOnlyList<string> Players => Strings(Json.GetArray("players"));
    }

    /// <summary>The reply to <c>find_match</c>.</summary>
    public sealed class MatchResult
    {
        internal MatchResult(Room room, bool created) { Room = room; Created = created; }
        /// <summary>The room joined or created.</summary>
        public Room Room { get; }
        /// <summary>True when no room fitted and this one was created.</summary>
        public bool Created { get; }
    }

    /// <summary>The reply to <c>ping</c>.</summary>
    public sealed class PingResult
    {
        internal PingResult(string serverTime, TimeSpan roundTrip) { ServerTime = serverTime; RoundTrip = roundTrip; }
        /// <summary>The server's clock (RFC 3339).</summary>
        public string ServerTime { get; }
        /// <summary>Measured round trip.</summary>
        public TimeSpan RoundTrip { get; }
    }

    /// <summary>An ICE candidate (the shape of WebRTC's RTCIceCandidateInit).</summary>
    public sealed class IceCandidate
    {
        /// <summary>Creates a candidate; an empty <paramref name="candidate"/> means end of candidates.</summary>
        public IceCandidate(string candidate, string sdpMid = null, int? sdpMLineIndex = null, string usernameFragment = null)
        {
            Candidate = candidate ?? "";
            SdpMid = sdpMid;
            SdpMLineIndex = sdpMLineIndex;
            UsernameFragment = usernameFragment;
        }
        /// <summary>The <c>candidate:</c> line, or "" for end of candidates.</summary>
        public string Candidate { get; }
        /// <summary>Media stream id, or null.</summary>
        public string SdpMid { get; }
        /// <summary>Media line index, or null.</summary>
        public int? SdpMLineIndex { get; }
        /// <summary>ICE ufrag, or null.</summary>
        public string UsernameFragment { get; }

        internal JsonObject ToJson() => new JsonObject
        {
            { "candidate", Candidate },
            { "sdpMid", SdpMid },
            { "sdpMLineIndex", SdpMLineIndex.HasValue ? JsonValue.From(SdpMLineIndex.Value) : JsonValue.Null },
            { "usernameFragment", UsernameFragment },
        };

        internal static IceCandidate FromJson(JsonValue v)
        {
            if (v is JsonObject o)
            {
                var idx = o["sdpMLineIndex"];
                return new IceCandidate(o.GetString("candidate"), o.GetString("sdpMid"),
                    idx != null && idx.Kind == JsonKind.Number ? (int?)idx.AsLong() : null, o.GetString("usernameFragment"));
            }
            return new IceCandidate(v?.AsString() ?? "");
        }
    }

    /// <summary>A server event: its <c>type</c> and the message as received.</summary>
    public class ServerEvent : JsonView
    {
        /// <summary>Wraps an event message.</summary>
        public ServerEvent(JsonObject json) : base(json) { }
        /// <summary>The event's <c>type</c>.</summary>
        public string Type => Json.GetString("type");
        /// <summary>The room the event is about (<c>room_id</c>), when it has one.</summary>
        public string RoomId => Json.GetString("room_id");
        /// <summary>The player the event is about (<c>player_id</c>, or <c>player.player_id</c>).</summary>
        public string PlayerId => Json.GetString("player_id") ?? Json.GetObject("player")?.GetString("player_id");
    }

    /// <summary><c>game_start</c>: the room became active (players in full-mesh order).</summary>
    public sealed class GameStartedEvent : ServerEvent
    {
        internal GameStartedEvent(JsonObject json) : base(json) { }
        /// <summary>The room as it started.</summary>
        public Room Room => new Room(Json.GetObject("room"));
        /// <summary>The ticket this start ends (queue_match), or null.</summary>
        public string TicketId => Json.GetString("ticket_id");
        /// <summary>The allocation hook's answer (e.g. a dedicated server address), or null.</summary>
        public JsonObject Allocation => Json.GetObject("allocation");
    }

    /// <summary><c>player_joined</c> (and <c>spectator_joined</c> via <see cref="RendezvousClient.On"/>).</summary>
    public sealed class PlayerJoinedEvent : ServerEvent
    {
        internal PlayerJoinedEvent(JsonObject json) : base(json) { }
        /// <summary>The newcomer.</summary>
        public PlayerInfo Player => new PlayerInfo(Json.GetObject("player"));
    }

    /// <summary><c>player_left</c>.</summary>
    public sealed class PlayerLeftEvent : ServerEvent
    {
        internal PlayerLeftEvent(JsonObject json) : base(json) { }
        /// <summary><c>left</c>, <c>kicked</c>, <c>timeout</c> or <c>closed</c>.</summary>
        public string Reason => Json.GetString("reason");
    }

    /// <summary><c>host_changed</c>.</summary>
    public sealed class HostChangedEvent : ServerEvent
    {
        internal HostChangedEvent(JsonObject json) : base(json) { }
        /// <summary>The new host's player id.</summary>
        public string Host => Json.GetString("host");
    }

    /// <summary><c>room_status</c>.</summary>
    public sealed class RoomStatusEvent : ServerEvent
    {
        internal RoomStatusEvent(JsonObject json) : base(json) { }
        /// <summary><c>active</c> or <c>finished</c>.</summary>
        public string Status => Json.GetString("status");
        /// <summary>The host's result on <c>finished</c>, or null.</summary>
        public JsonObject Result => Json.GetObject("result");
    }

    /// <summary><c>room_data</c> and <c>player_data</c>.</summary>
    public sealed class DataChangedEvent : ServerEvent
    {
        internal DataChangedEvent(JsonObject json) : base(json) { }
        /// <summary>The new data (it replaces the old).</summary>
        public JsonObject Data => Json.GetObject("data") ?? new JsonObject();
    }

    /// <summary><c>offer</c>, <c>answer</c> or <c>ice_candidate</c> from another member.</summary>
    public sealed class SignalEvent : ServerEvent
    {
        internal SignalEvent(JsonObject json) : base(json) { }
        /// <summary>The sender's player id (set by the server).</summary>
        public string From => Json.GetString("from");
        /// <summary>The SDP of an offer or answer, else null.</summary>
        public string Sdp => Json.GetString("sdp");
        /// <summary>The candidate of an <c>ice_candidate</c> (empty <c>Candidate</c>: end of candidates), else null.</summary>
        public IceCandidate Candidate => Type == "ice_candidate" ? IceCandidate.FromJson(Json["candidate"]) : null;
    }

    /// <summary><c>chat</c>.</summary>
    public sealed class ChatEvent : ServerEvent
    {
        internal ChatEvent(JsonObject json) : base(json) { }
        /// <summary>Sender's player id.</summary>
        public string From => Json.GetString("from");
        /// <summary>Sender's name.</summary>
        public string Name => Json.GetString("name");
        /// <summary>The text.</summary>
        public string Text => Json.GetString("text");
        /// <summary>Server time (RFC 3339).</summary>
        public string Ts => Json.GetString("ts");
    }

    /// <summary><c>chat_history</c>: the room's last messages, oldest first, right after joining.</summary>
    public sealed class ChatHistoryEvent : ServerEvent
    {
        internal ChatHistoryEvent(JsonObject json) : base(json) { }
        /// <summary>The messages.</summary>
        public IReadOnlyList<ChatEvent> Messages => List(Json.GetArray("messages"), o => new ChatEvent(o));
    }

    /// <summary><c>ticket_queued</c> (a party member's ticket) and <c>ticket_expired</c>.</summary>
    public sealed class TicketEvent : ServerEvent
    {
        internal TicketEvent(JsonObject json) : base(json) { }
        /// <summary>The ticket's id.</summary>
        public string TicketId => Json.GetString("ticket_id") ?? Json.GetObject("ticket")?.GetString("ticket_id");
        /// <summary>The ticket (on <c>ticket_queued</c>), else null.</summary>
        public Ticket Ticket => Json.GetObject("ticket") is JsonObject t ? new Ticket(t) : null;
    }

    /// <summary><c>party_updated</c>.</summary>
    public sealed class PartyUpdatedEvent : ServerEvent
    {
        internal PartyUpdatedEvent(JsonObject json) : base(json) { }
        /// <summary>The party now.</summary>
        public Party Party => new Party(Json.GetObject("party"));
    }

    /// <summary><c>player_ready</c> (1.2).</summary>
    public sealed class PlayerReadyEvent : ServerEvent
    {
        internal PlayerReadyEvent(JsonObject json) : base(json) { }
        /// <summary>The new flag.</summary>
        public bool Ready => Json.GetBool("ready");
    }

    /// <summary><c>message</c> (1.2): game data relayed by the server.</summary>
    public sealed class MessageEvent : ServerEvent
    {
        internal MessageEvent(JsonObject json) : base(json) { }
        /// <summary>Sender's player id.</summary>
        public string From => Json.GetString("from");
        /// <summary>The data as sent (any JSON value).</summary>
        public JsonValue Data => Json["data"] ?? JsonValue.Null;
    }

    /// <summary><c>announcement</c> (from the server's operator).</summary>
    public sealed class AnnouncementEvent : ServerEvent
    {
        internal AnnouncementEvent(JsonObject json) : base(json) { }
        /// <summary>The text.</summary>
        public string Text => Json.GetString("text");
    }

    /// <summary><c>server_shutdown</c>: the client reconnects after <see cref="ReconnectAfterMs"/> (to another node, behind a load balancer).</summary>
    public sealed class ServerShutdownEvent : ServerEvent
    {
        internal ServerShutdownEvent(JsonObject json) : base(json) { }
        /// <summary>Wait at least this long before reconnecting.</summary>
        public long ReconnectAfterMs => Json.GetLong("reconnect_after_ms");
    }

    /// <summary>The connection dropped or was closed.</summary>
    public sealed class DisconnectedEvent
    {
        internal DisconnectedEvent(int? closeCode, string reason, bool willReconnect)
        {
            CloseCode = closeCode;
            Reason = reason ?? "";
            WillReconnect = willReconnect;
        }
        /// <summary>The WebSocket close status, or null when the socket broke without one.</summary>
        public int? CloseCode { get; }
        /// <summary>Close reason or error text.</summary>
        public string Reason { get; }
        /// <summary>True when the client will try to resume the session.</summary>
        public bool WillReconnect { get; }
    }
}
