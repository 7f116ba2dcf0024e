using System;
using System.Collections.Generic;

namespace Rendezvous
{
    /// <summary>Where the client raises its events.</summary>
    public enum DispatchMode
    {
        /// <summary>
        /// Events wait in a queue until <see cref="RendezvousClient.DispatchEvents"/> is called,
        /// and are raised on that thread (a Unity game calls it from <c>Update</c>).
        /// </summary>
        Queued,
        /// <summary>Events are raised at once on the socket's thread (a thread-pool thread).</summary>
        Immediate,
    }

    /// <summary>Options of <see cref="RendezvousClient.ConnectAsync"/>.</summary>
    public sealed class ClientOptions
    {
        /// <summary>Display name, 1 to 32 characters (the server defaults to "player").</summary>
        public string Name { get; set; }
        /// <summary>A JWT, for a server that runs with <c>--auth</c>.</summary>
        public string Token { get; set; }
        /// <summary>A <c>resume_token</c> kept from an earlier session (e.g. across a restart of the game).</summary>
        public string ResumeToken { get; set; }
        /// <summary>Reconnect with the resume token when the connection drops (default true).</summary>
        public bool Reconnect { get; set; } = true;
        /// <summary>First reconnection delay; doubles on every failed attempt, with jitter (default 0.5 s).</summary>
        public TimeSpan ReconnectMinDelay { get; set; } = TimeSpan.FromMilliseconds(500);
        /// <summary>Longest delay between reconnection attempts (default 15 s).</summary>
        public TimeSpan ReconnectMaxDelay { get; set; } = TimeSpan.FromSeconds(15);
        /// <summary>Attempts before giving up (default: keep trying).</summary>
        public int MaxReconnectAttempts { get; set; } = int.MaxValue;
        /// <summary>A request with no reply after this long fails with code <c>timeout</c> (default 15 s; zero: never).</summary>
        public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(15);
        /// <summary>Time allowed to open the socket and receive <c>welcome</c> (default 10 s).</summary>
        public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);
        /// <summary>Queued (default, for game loops) or immediate event dispatch.</summary>
        public DispatchMode DispatchMode { get; set; } = DispatchMode.Queued;
        /// <summary>Largest message accepted from the server; a larger one drops the connection (default 4 MiB).</summary>
        public int MaxReceiveBytes { get; set; } = 4 << 20;
    }

    /// <summary>Fields of <c>find_match</c>.</summary>
    public sealed class FindMatchOptions
    {
        /// <summary>Room size (default 2).</summary>
        public int? MaxPlayers { get; set; }
        /// <summary>Game mode (default "default").</summary>
        public string Mode { get; set; }
        /// <summary>Values the room's data must equal (strings, numbers, booleans).</summary>
        public JsonObject Filters { get; set; }
        /// <summary>For a room it creates: refill seats while active (1.1).</summary>
        public bool? Backfill { get; set; }
        /// <summary>For a room it creates: spectator places (1.1).</summary>
        public int? MaxSpectators { get; set; }
        /// <summary>For a room it creates: start when every seated player is ready (1.2).</summary>
        public bool? StartWhenReady { get; set; }
        /// <summary>Any other fields, sent as given.</summary>
        public JsonObject Extra { get; set; }

        internal JsonObject ToJson()
        {
            var o = Fields.Start(Extra);
            Fields.Put(o, "max_players", MaxPlayers);
            Fields.Put(o, "mode", Mode);
            Fields.Put(o, "filters", Filters);
            Fields.Put(o, "backfill", Backfill);
            Fields.Put(o, "max_spectators", MaxSpectators);
            Fields.Put(o, "start_when_ready", StartWhenReady);
            return o;
        }
    }

    /// <summary>Fields of <c>create_room</c>.</summary>
    public sealed class CreateRoomOptions
    {
        /// <summary>Room size (default 2).</summary>
        public int? MaxPlayers { get; set; }
        /// <summary>Game mode (default "default").</summary>
        public string Mode { get; set; }
        /// <summary>A private room is joined only by code or id.</summary>
        public bool? Private { get; set; }
        /// <summary>Initial room data.</summary>
        public JsonObject Data { get; set; }
        /// <summary>Only these players may join.</summary>
        public IList<string> AllowedPlayers { get; set; }
        /// <summary>Only players with one of these JWT roles may join.</summary>
        public IList<string> AllowedRoles { get; set; }
        /// <summary>Spectator places (1.1, default 0).</summary>
        public int? MaxSpectators { get; set; }
        /// <summary>Refill seats while active (1.1).</summary>
        public bool? Backfill { get; set; }
        /// <summary>Start when every seated player is ready (1.2).</summary>
        public bool? StartWhenReady { get; set; }
        /// <summary>Any other fields, sent as given.</summary>
        public JsonObject Extra { get; set; }

        internal JsonObject ToJson()
        {
            var o = Fields.Start(Extra);
            Fields.Put(o, "max_players", MaxPlayers);
            Fields.Put(o, "mode", Mode);
            Fields.Put(o, "private", Private);
            Fields.Put(o, "data", Data);
            Fields.Put(o, "allowed_players", AllowedPlayers);
            Fields.Put(o, "allowed_roles", AllowedRoles);
            Fields.Put(o, "max_spectators", MaxSpectators);
            Fields.Put(o, "backfill", Backfill);
            Fields.Put(o, "start_when_ready", StartWhenReady);
            return o;
        }
    }

    /// <summary>Fields of <c>queue_match</c> (1.1 ticket matchmaking).</summary>
    public sealed class QueueMatchOptions
    {
        /// <summary>Game mode.</summary>
        public string Mode { get; set; }
        /// <summary>Room size.</summary>
        public int? MaxPlayers { get; set; }
        /// <summary>Smallest room accepted after the fill delay (default <see cref="MaxPlayers"/>).</summary>
        public int? MinPlayers { get; set; }
        /// <summary>Skill rating; tickets without skill only match each other.</summary>
        public double? Skill { get; set; }
        /// <summary>Initial skill window (default 100).</summary>
        public double? SkillWindow { get; set; }
        /// <summary>Window growth per second waited (default 50).</summary>
        public double? SkillWidenPerS { get; set; }
        /// <summary>Largest window (default 1000).</summary>
        public double? SkillWindowMax { get; set; }
        /// <summary>Region name to measured round trip in ms.</summary>
        public IDictionary<string, double> Regions { get; set; }
        /// <summary>Largest acceptable round trip (default 150).</summary>
        public double? MaxRttMs { get; set; }
        /// <summary>Values every ticket of the room must share.</summary>
        public JsonObject Filters { get; set; }
        /// <summary>Take seats in, and make, backfill rooms.</summary>
        public bool? Backfill { get; set; }
        /// <summary>Any other fields, sent as given.</summary>
        public JsonObject Extra { get; set; }

        internal JsonObject ToJson()
        {
            var o = Fields.Start(Extra);
            Fields.Put(o, "mode", Mode);
            Fields.Put(o, "max_players", MaxPlayers);
            Fields.Put(o, "min_players", MinPlayers);
            Fields.Put(o, "skill", Skill);
            Fields.Put(o, "skill_window", SkillWindow);
            Fields.Put(o, "skill_widen_per_s", SkillWidenPerS);
            Fields.Put(o, "skill_window_max", SkillWindowMax);
            if (Regions != null)
            {
                var r = new JsonObject();
                foreach (var kv in Regions) r[kv.Key] = kv.Value;
                o["regions"] = r;
            }
            Fields.Put(o, "max_rtt_ms", MaxRttMs);
            Fields.Put(o, "filters", Filters);
            Fields.Put(o, "backfill", Backfill);
            return o;
        }
    }

    /// <summary>Helpers that put only the fields that were given.</summary>
    internal static class Fields
    {
        internal static JsonObject Start(JsonObject extra) => extra == null ? new JsonObject() : extra.Clone();
        internal static void Put(JsonObject o, string key, int? v) { if (v.HasValue) o[key] = v.Value; }
        internal static void Put(JsonObject o, string key, double? v) { if (v.HasValue) o[key] = v.Value; }
        internal static void Put(JsonObject o, string key, bool? v) { if (v.HasValue) o[key] = v.Value; }
        internal static void Put(JsonObject o, string key, string v) { if (v != null) o[key] = v; }
        internal static void Put(JsonObject o, string key, JsonValue v) { if (v != null) o[key] = v; }

        internal static void Put(JsonObject o, string key, IList<string> v)
        {
            if (v == null) return;
            var a = new JsonArray();
            foreach (var s in v) a.Add(s);
            o[key] = a;
        }
    }
}
