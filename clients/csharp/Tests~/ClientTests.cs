// Tests of the C# client against the real server (RENDEZVOUS_BIN), in memory or,
// with RENDEZVOUS_TEST_CLUSTER=1, as two nodes sharing a private redis-server
// (clients alternate between the nodes). Events are dispatched the way a game
// does it: the test thread calls DispatchEvents() while it waits.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using NUnit.Framework;
using Rendezvous.Samples;

namespace Rendezvous.Tests
{
    [TestFixture]
    public class ClientTests
    {
        private TestServer _server;
        private readonly List<RendezvousClient> _clients = new List<RendezvousClient>();
        private int _connected;

        [TestFixtureSetUp]
        public void StartServer() => _server = TestServer.Start();

        [TestFixtureTearDown]
        public void StopServer() => _server?.Dispose();

        [TearDown]
        public void CloseClients()
        {
            foreach (var c in _clients) c.CloseAsync().Wait(3000);
            _clients.Clear();
        }

        // ---- helpers --------------------------------------------------------------

        /// <summary>Connects to the nodes in turn (two nodes in cluster mode).</summary>
        private Task<RendezvousClient> Connect(string name, ClientOptions options = null) =>
            ConnectTo(_server.Urls[_connected++ % _server.Urls.Count], name, options);

        private async Task<RendezvousClient> ConnectTo(string url, string name, ClientOptions options = null)
        {
            options = options ?? new ClientOptions();
            options.Name = name;
            var c = await RendezvousClient.ConnectAsync(url, options);
            _clients.Add(c);
            return c;
        }

        /// <summary>Dispatches the clients' events on this thread until <paramref name="done"/> holds.</summary>
        private static async Task Until(Func<bool> done, string what, params RendezvousClient[] pump)
        {
            var deadline = DateTime.UtcNow.AddSeconds(15);
            while (true)
            {
                foreach (var c in pump) c.DispatchEvents();
                if (done()) return;
                if (DateTime.UtcNow > deadline) Assert.Fail("timed out waiting for " + what);
                await Task.Delay(10);
            }
        }

        private static async Task<RendezvousException> Refused(Task task)
        {
            try { await task; }
            catch (RendezvousException e) { return e; }
            Assert.Fail("the request should have been refused");
            return null;
        }

        private static string Unique(string prefix) => prefix + "-" + Guid.NewGuid().ToString("N").Substring(0, 8);

        private static string Fixture(string name)
        {
            var dir = Environment.GetEnvironmentVariable("RENDEZVOUS_SDP_FIXTURES") ?? "tests/fixtures/sdp";
            return File.ReadAllText(Path.Combine(dir, name));
        }

        private static bool Has(RendezvousClient c, string feature) => c.Welcome.HasFeature(feature);

        // ---- matchmaking and signaling ------------------------------------------------

        [Test]
        public async Task FindMatchStartsTheGameAndRelaysOfferAnswerAndCandidatesInOrder()
        {
            var ann = await Connect("ann");
            var bob = await Connect("bob");
            StringAssert.StartsWith("p_", ann.PlayerId);
            var annStarts = new List<GameStartedEvent>();
            var bobStarts = new List<GameStartedEvent>();
            var annSignals = new List<SignalEvent>();
            var bobSignals = new List<SignalEvent>();
            ann.GameStarted += annStarts.Add;
            bob.GameStarted += bobStarts.Add;
            ann.SignalReceived += annSignals.Add;
            bob.SignalReceived += bobSignals.Add;

            var mode = Unique("duel");
            var first = await ann.FindMatchAsync(new FindMatchOptions { MaxPlayers = 2, Mode = mode });
            Assert.IsTrue(first.Created);
            var second = await bob.FindMatchAsync(new FindMatchOptions { MaxPlayers = 2, Mode = mode });
            Assert.IsFalse(second.Created);
            Assert.AreEqual(first.Room.RoomId, second.Room.RoomId);

            await Until(() => annStarts.Count == 1 && bobStarts.Count == 1, "game_start on both", ann, bob);
            var players = annStarts[0].Room.Players.Select(p => p.PlayerId).ToList();
            CollectionAssert.AreEqual(new[] { ann.PlayerId, bob.PlayerId }, players);
            Assert.AreEqual("active", ann.Room.Status);
            Assert.AreEqual("active", bob.Room.Status);

            // Bob joined later, so Bob offers (fire-and-forget), Ann answers, Bob trickles.
            var offer = Fixture("chromium-offer-datachannel.sdp");
            var answer = Fixture("chromium-answer-datachannel.sdp");
            await bob.SendOfferAsync(ann.PlayerId, offer);
            await Until(() => annSignals.Count == 1, "the offer", ann);
            Assert.AreEqual("offer", annSignals[0].Type);
            Assert.AreEqual(bob.PlayerId, annSignals[0].From);
            Assert.AreEqual(offer, annSignals[0].Sdp, "the SDP is relayed byte for byte");

            await ann.SendAnswerAsync(bob.PlayerId, answer);
            var candidates = Fixture("chromium-candidates.txt").Split(new[] { '\r', '\n' }, StringSplitOptions.RemoveEmptyEntries);
            for (var i = 0; i < candidates.Length; i++) bob.SendIceCandidate(ann.PlayerId, candidates[i], "0", 0);
            bob.SendIceCandidate(ann.PlayerId, null);

            await Until(() => bobSignals.Count == 1 && annSignals.Count == candidates.Length + 2, "answer and candidates", ann, bob);
            Assert.AreEqual("answer", bobSignals[0].Type);
            Assert.AreEqual(answer, bobSignals[0].Sdp);
            for (var i = 0; i < candidates.Length; i++)
            {
                var s = annSignals[i + 1];
                Assert.AreEqual("ice_candidate", s.Type);
                Assert.AreEqual(candidates[i], s.Candidate.Candidate, "candidate " + i + " in order");
                Assert.AreEqual("0", s.Candidate.SdpMid);
                Assert.AreEqual(0, s.Candidate.SdpMLineIndex);
            }
            Assert.AreEqual("", annSignals.Last().Candidate.Candidate, "end of candidates");

            // The with-rid variant completes on the server's ok.
            await ann.OfferAsync(bob.PlayerId, Fixture("chromium-offer-av-data.sdp"));
            await Until(() => bobSignals.Count == 2, "the second offer", bob);
            Assert.AreEqual(Fixture("chromium-offer-av-data.sdp"), bobSignals[1].Sdp);
        }

        [Test]
        public async Task QueuedTicketsFormARoom()
        {
            var ann = await Connect("ann");
            var bob = await Connect("bob");
            var starts = new List<GameStartedEvent>();
            ann.GameStarted += starts.Add;
            bob.GameStarted += starts.Add;

            var mode = Unique("ranked");
            var t1 = await ann.QueueMatchAsync(new QueueMatchOptions { Mode = mode, MaxPlayers = 2, Skill = 1500 });
            var t2 = await bob.QueueMatchAsync(new QueueMatchOptions { Mode = mode, MaxPlayers = 2, Skill = 1520 });
            CollectionAssert.AreEqual(new[] { ann.PlayerId }, t1.Players);
            Assert.AreNotEqual(t1.TicketId, t2.TicketId);

            await Until(() => starts.Count == 2, "game_start for both tickets", ann, bob);
            Assert.AreEqual(starts[0].Room.RoomId, starts[1].Room.RoomId);
            CollectionAssert.AreEquivalent(new[] { t1.TicketId, t2.TicketId }, starts.Select(s => s.TicketId));
            Assert.AreEqual(2, ann.Room.Players.Count);
            var e = await Refused(ann.CancelMatchAsync());
            Assert.AreEqual("not_queued", e.Code);
        }

        [Test]
        public async Task APartyOfTwoQueuesAndLandsTogether()
        {
            var leader = await Connect("leader");
            var member = await Connect("member");
            var updates = new List<PartyUpdatedEvent>();
            var queued = new List<TicketEvent>();
            var starts = new List<GameStartedEvent>();
            leader.PartyUpdated += updates.Add;
            member.TicketQueued += queued.Add;
            leader.GameStarted += starts.Add;
            member.GameStarted += starts.Add;

            var party = await leader.CreatePartyAsync(2);
            Assert.AreEqual(leader.PlayerId, party.Leader);
            var joined = await member.JoinPartyAsync(party.Code.ToLowerInvariant());
            Assert.AreEqual(party.PartyId, joined.PartyId);
            await Until(() => updates.Count == 1, "party_updated for the leader", leader);
            Assert.AreEqual(2, updates[0].Party.Members.Count);
            Assert.AreEqual(2, leader.Party.Members.Count);

            var ticket = await leader.QueueMatchAsync(new QueueMatchOptions { Mode = Unique("party"), MaxPlayers = 2 });
            CollectionAssert.AreEqual(new[] { leader.PlayerId, member.PlayerId }, ticket.Players);
            await Until(() => starts.Count == 2 && queued.Count == 1, "ticket_queued and game_start", leader, member);
            Assert.AreEqual(ticket.TicketId, queued[0].TicketId);
            Assert.AreEqual(starts[0].Room.RoomId, starts[1].Room.RoomId);
            Assert.AreEqual(ticket.TicketId, starts[0].TicketId);
            Assert.AreEqual(member.Room.RoomId, leader.Room.RoomId);

            await member.LeavePartyAsync();
            Assert.IsNull(member.Party);
        }

        [Test]
        public async Task ASpectatorWatchesTheRoom()
        {
            var host = await Connect("host");
            var guest = await Connect("guest");
            var watcher = await Connect("watcher");
            var joined = new List<PlayerJoinedEvent>();
            var starts = new List<GameStartedEvent>();
            var chats = new List<ChatEvent>();
            var spectatorJoined = new List<JsonObject>();
            watcher.PlayerJoined += joined.Add;
            watcher.GameStarted += starts.Add;
            watcher.ChatReceived += chats.Add;
            host.On("spectator_joined", spectatorJoined.Add);

            var room = await host.CreateRoomAsync(new CreateRoomOptions { MaxPlayers = 2, MaxSpectators = 1, Private = true });
            Assert.IsNotNull(room.Code);
            var watched = await watcher.SpectateAsync(room.Code);
            Assert.AreEqual(room.RoomId, watched.RoomId);
            CollectionAssert.AreEqual(new[] { watcher.PlayerId }, watched.Spectators.Select(p => p.PlayerId));
            Assert.AreEqual(1, watched.Players.Count, "a spectator takes no seat");
            await Until(() => spectatorJoined.Count == 1, "spectator_joined for the host", host);

            await guest.JoinRoomAsync(room.RoomId);
            await host.ChatAsync("glhf");
            await Until(() => chats.Count == 1, "the chat", watcher);
            Assert.AreEqual(1, joined.Count);
            Assert.AreEqual(guest.PlayerId, joined[0].Player.PlayerId);
            Assert.AreEqual(1, starts.Count, "the room filled and started");
            Assert.AreEqual("glhf", chats[0].Text);
            Assert.AreEqual(host.PlayerId, chats[0].From);
            Assert.AreEqual(2, watcher.Room.Players.Count);

            var third = await Connect("third");
            var full = await Refused(third.SpectateAsync(room.RoomId));
            Assert.AreEqual("room_full", full.Code, "the only spectator place is taken");
        }

        // ---- reconnection -------------------------------------------------------------

        [Test]
        public async Task AnAbruptCutResumesTheSeatAndDeliversMissedEventsOnceInOrder()
        {
            using (var proxy = new CuttingProxy(_server.Urls[0]))
            {
                var options = new ClientOptions
                {
                    ReconnectMinDelay = TimeSpan.FromMilliseconds(50),
                    ReconnectMaxDelay = TimeSpan.FromMilliseconds(400),
                };
                var ann = await ConnectTo(proxy.Url, "ann", options);
                var bob = await Connect("bob");
                var chats = new List<string>();
                var resumed = new List<Welcome>();
                var drops = new List<DisconnectedEvent>();
                var bobSaw = new List<string>();
                ann.ChatReceived += c => chats.Add(c.Text);
                ann.Resumed += resumed.Add;
                ann.Disconnected += drops.Add;
                bob.PlayerDisconnected += e => bobSaw.Add("disconnected " + e.PlayerId);
                bob.PlayerReconnected += e => bobSaw.Add("reconnected " + e.PlayerId);

                var room = await ann.CreateRoomAsync(new CreateRoomOptions { MaxPlayers = 3 });
                await bob.JoinRoomAsync(room.RoomId);
                await bob.ChatAsync("before");
                await Until(() => chats.Count == 1, "the first chat", ann);
                var id = ann.PlayerId;
                var token = ann.ResumeToken;

                // Cut, and keep the server unreachable until the chats were sent.
                proxy.Blocked = true;
                proxy.CutAll();
                await Until(() => bobSaw.Count == 1, "player_disconnected", bob);
                Assert.AreEqual("disconnected " + id, bobSaw[0]);
                for (var i = 1; i <= 5; i++) await bob.ChatAsync("missed " + i);
                await Until(() => drops.Count == 1, "the client to notice the cut", ann);
                Assert.IsFalse(ann.IsConnected);
                proxy.Blocked = false;

                await Until(() => resumed.Count == 1 && chats.Count == 6, "resume and the missed chats", ann, bob);
                Assert.AreEqual(1, drops.Count);
                Assert.IsTrue(drops[0].WillReconnect);
                Assert.AreEqual(id, ann.PlayerId, "same player");
                Assert.IsTrue(resumed[0].Resumed);
                Assert.AreNotEqual(token, ann.ResumeToken, "each welcome hands out a fresh token");
                Assert.AreEqual(room.RoomId, ann.Room.RoomId, "same seat");
                Assert.AreEqual(2, proxy.Forwarded);

                await bob.ChatAsync("after");
                await Until(() => chats.Count == 7 && bobSaw.Count == 2, "the chat after the resume", ann, bob);
                CollectionAssert.AreEqual(new[] { "before", "missed 1", "missed 2", "missed 3", "missed 4", "missed 5", "after" }, chats);
                Assert.AreEqual("reconnected " + id, bobSaw[1]);
                await ann.PingAsync();
            }
        }

        // ---- refusals and failures ----------------------------------------------------

        [Test]
        public async Task RefusalsSurfaceAsExceptionCodes()
        {
            var ann = await Connect("ann");
            var bob = await Connect("bob");
            var cid = await Connect("cid");
            var room = await ann.CreateRoomAsync(new CreateRoomOptions { MaxPlayers = 2 });
            await bob.JoinRoomAsync(room.RoomId);
            var full = await Refused(cid.JoinRoomAsync(room.RoomId));
            Assert.AreEqual("room_full", full.Code);
            Assert.AreEqual("join_room", full.Request);
            Assert.IsNotEmpty(full.Message);

            Assert.AreEqual("not_host", (await Refused(bob.StartGameAsync())).Code);
            Assert.AreEqual("room_not_found", (await Refused(cid.JoinRoomAsync("ZZZZZZ"))).Code);
            Assert.AreEqual("not_in_room", (await Refused(cid.ChatAsync("hello?"))).Code);

            // A fire-and-forget refusal comes back without rid: an Error event.
            var errors = new List<RendezvousException>();
            cid.Error += errors.Add;
            await cid.SendOfferAsync(ann.PlayerId, Fixture("chromium-offer-datachannel.sdp"));
            await Until(() => errors.Count == 1, "the error event", cid);
            Assert.AreEqual("not_in_room", errors[0].Code);
            Assert.IsNull(errors[0].Request);
        }

        [Test]
        public async Task RateLimitedRequestsFailWithTheirOwnRid()
        {
            using (var limited = TestServer.Start("--rate-limit 1", "--rate-burst 3"))
            {
                var ann = await ConnectTo(limited.Urls[0], "ann");
                await ann.CreateRoomAsync();
                var chats = Enumerable.Range(0, 8).Select(i => ann.ChatAsync("spam " + i)).ToList();
                var codes = new List<string>();
                foreach (var chat in chats)
                {
                    try { await chat; codes.Add("ok"); }
                    catch (RendezvousException e) { codes.Add(e.Code); }
                }
                Assert.That(codes.Count(c => c == "ok"), Is.InRange(1, 3), string.Join(",", codes));
                Assert.That(codes.Count(c => c == "rate_limited"), Is.GreaterThanOrEqualTo(5), string.Join(",", codes));
                Assert.That(codes.All(c => c == "ok" || c == "rate_limited"), string.Join(",", codes));
                Assert.AreEqual("ok", codes[0], "the burst serves the first ones");
                Assert.AreEqual("rate_limited", codes[7]);
            }
        }

        [Test]
        public async Task HostileFramesDoNotCrashTheClient()
        {
            string resumeQuery = null;
            using (var fake = new FakeServer(
                async conn =>
                {
                    await conn.SendTextAsync(FakeServer.Welcome("p_fake", "tok1"));
                    await conn.SendTextAsync("{\"type\":\"chat\",\"text\":\"hel");    // truncated JSON
                    await conn.SendTextAsync("not json at all");
                    await conn.SendTextAsync("[1,2,3]");
                    await conn.SendTextAsync("{\"type\":42}");
                    await conn.SendTextAsync("binary", opcode: 2);
                    await conn.SendTextAsync("{\"type\":\"chat\",\"room_id\":7,\"from\":[],\"text\":{\"a\":1}}"); // wrong field types
                    await conn.SendTextAsync("{\"type\":\"chat\",\"from\":\"p_x\",\"text\":\"still here\"}");
                    var ping = JsonValue.Parse(await conn.ReadTextAsync()).AsObject();
                    Assert.AreEqual("ping", ping.GetString("type"));
                    await conn.SendTextAsync("{\"type\":\"ok\",\"rid\":" + ping["rid"] + ",\"server_time\":\"2026-01-01T00:00:00Z\"}");
                    await conn.SendTruncatedAsync("{\"type\":\"chat\",\"text\":\"cut in the middle of a frame\"}", 12);
                    conn.Abort();
                },
                async conn =>
                {
                    await conn.SendTextAsync(FakeServer.Welcome("p_fake", "tok2", resumed: true));
                    await conn.ReadTextAsync(); // until the client closes
                }))
            {
                var client = await ConnectTo(fake.Url, "ann", new ClientOptions { ReconnectMinDelay = TimeSpan.FromMilliseconds(50) });
                var errors = new List<RendezvousException>();
                var chats = new List<ChatEvent>();
                var resumed = 0;
                client.Error += errors.Add;
                client.ChatReceived += chats.Add;
                client.Resumed += w => resumed++;

                await Until(() => chats.Count == 2, "the chats", client);
                Assert.AreEqual(5, errors.Count, string.Join("\n", errors.Select(e => e.Message)));
                Assert.That(errors.All(e => e.Code == "bad_frame"));
                Assert.IsNull(chats[0].Text, "a field of the wrong type reads as null");
                Assert.AreEqual("still here", chats[1].Text);
                var pong = await client.PingAsync();
                Assert.AreEqual("2026-01-01T00:00:00Z", pong.ServerTime);

                await Until(() => resumed == 1, "the reconnection after the cut frame", client);
                resumeQuery = fake.Requests[1];
                Assert.AreEqual(2, chats.Count, "the truncated frame was not delivered");
                Assert.IsTrue(client.IsConnected);
                await client.CloseAsync();
                await fake.Done;
            }
            StringAssert.Contains("resume=tok1", resumeQuery);
        }

        [Test]
        public async Task ARequestWithoutReplyTimesOut()
        {
            using (var fake = new FakeServer(async conn =>
            {
                await conn.SendTextAsync(FakeServer.Welcome("p_fake", "tok"));
                while (await conn.ReadTextAsync() != null) { } // never answers
            }))
            {
                var client = await ConnectTo(fake.Url, "ann", new ClientOptions { RequestTimeout = TimeSpan.FromMilliseconds(300) });
                var e = await Refused(client.PingAsync());
                Assert.AreEqual("timeout", e.Code);
                Assert.IsTrue(client.IsConnected);
            }
        }

        [Test]
        public async Task ConnectingToNothingFails()
        {
            var e = await Refused(RendezvousClient.ConnectAsync("ws://127.0.0.1:" + TestServer.FreePort() + "/ws"));
            Assert.AreEqual("connect_failed", e.Code);
        }

        // ---- threading ------------------------------------------------------------------

        [Test]
        public async Task QueuedEventsAreRaisedOnlyInsideDispatchEvents()
        {
            var ann = await Connect("ann");
            var bob = await Connect("bob", new ClientOptions { DispatchMode = DispatchMode.Immediate });
            var threads = new List<int>();
            var joinedSeen = 0;
            ann.PlayerJoined += e => { threads.Add(Thread.CurrentThread.ManagedThreadId); joinedSeen++; };
            ann.ChatReceived += e => threads.Add(Thread.CurrentThread.ManagedThreadId);
            var bobChats = 0;
            bob.ChatReceived += e => Interlocked.Increment(ref bobChats);

            var room = await ann.CreateRoomAsync(new CreateRoomOptions { MaxPlayers = 3 });
            await bob.JoinRoomAsync(room.RoomId);
            await bob.ChatAsync("hi");
            // Immediate mode: raised on the socket thread, no DispatchEvents needed.
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (Volatile.Read(ref bobChats) == 0 && DateTime.UtcNow < deadline) await Task.Delay(10);
            Assert.AreEqual(1, Volatile.Read(ref bobChats));

            deadline = DateTime.UtcNow.AddSeconds(10);
            while (ann.PendingEvents < 3 && DateTime.UtcNow < deadline) await Task.Delay(10); // chat_history, player_joined, chat
            Assert.That(ann.PendingEvents, Is.GreaterThanOrEqualTo(3));
            Assert.IsEmpty(threads, "nothing is raised before DispatchEvents");
            Assert.AreEqual(2, ann.Room.Players.Count, "Room is current even before dispatch");

            var me = Thread.CurrentThread.ManagedThreadId;
            var raised = ann.DispatchEvents();
            Assert.That(raised, Is.GreaterThanOrEqualTo(3));
            Assert.AreEqual(1, joinedSeen);
            Assert.AreEqual(2, threads.Count);
            Assert.That(threads.All(t => t == me), "raised on the thread that called DispatchEvents");
            Assert.AreEqual(0, ann.PendingEvents);
        }

        [Test]
        public async Task AThrowingHandlerIsReportedAndTheClientGoesOn()
        {
            var ann = await Connect("ann");
            var errors = new List<RendezvousException>();
            var histories = 0;
            ann.Error += errors.Add;
            ann.ChatHistory += h => { histories++; throw new InvalidOperationException("game bug"); };
            await ann.CreateRoomAsync();
            await Until(() => histories == 1 && errors.Count == 1, "the handler exception", ann);
            Assert.AreEqual("handler_exception", errors[0].Code);
            await ann.PingAsync();
        }

        // ---- protocol 1.2 -----------------------------------------------------------------

        [Test]
        public async Task SetReadyStartsARoomWhenEveryoneIsReady()
        {
            var ann = await Connect("ann");
            var bob = await Connect("bob");
            Assert.IsTrue(Has(ann, "ready"), "welcome.features lists ready");
            var annReady = new List<PlayerReadyEvent>();
            var starts = new List<GameStartedEvent>();
            ann.PlayerReady += annReady.Add;
            ann.GameStarted += starts.Add;
            bob.GameStarted += starts.Add;

            var room = await ann.CreateRoomAsync(new CreateRoomOptions { MaxPlayers = 3, StartWhenReady = true });
            await bob.JoinRoomAsync(room.RoomId);
            var after = await bob.SetReadyAsync(true);
            Assert.IsTrue(after.Players.Single(p => p.PlayerId == bob.PlayerId).Ready);
            Assert.IsFalse(after.Players.Single(p => p.PlayerId == ann.PlayerId).Ready);
            await Until(() => annReady.Count == 1, "player_ready", ann);
            Assert.AreEqual(bob.PlayerId, annReady[0].PlayerId);
            Assert.IsTrue(annReady[0].Ready);
            Assert.IsTrue(ann.Room.Players.Single(p => p.PlayerId == bob.PlayerId).Ready, "Room tracks the flag");
            Assert.AreEqual("waiting", ann.Room.Status);

            await ann.SetReadyAsync(true);
            await Until(() => starts.Count == 2, "game_start once all are ready", ann, bob);
            Assert.AreEqual("room_not_waiting", (await Refused(ann.SetReadyAsync(false))).Code);
        }

        [Test]
        public async Task SendRelaysRoomMessagesInOrder()
        {
            var ann = await Connect("ann");
            var bob = await Connect("bob");
            var cid = await Connect("cid");
            Assert.IsTrue(Has(ann, "messages"), "welcome.features lists messages");
            var bobGot = new List<MessageEvent>();
            var cidGot = new List<MessageEvent>();
            bob.MessageReceived += bobGot.Add;
            cid.MessageReceived += cidGot.Add;

            var room = await ann.CreateRoomAsync(new CreateRoomOptions { MaxPlayers = 3 });
            await bob.JoinRoomAsync(room.RoomId);
            await cid.JoinRoomAsync(room.RoomId);

            Assert.AreEqual(1, await ann.SendAsync(new JsonObject { { "move", 4 } }, bob.PlayerId));
            Assert.AreEqual(2, await ann.SendAsync("to everyone"));
            for (var i = 0; i < 5; i++) ann.Send(new JsonArray { i });
            await Until(() => bobGot.Count == 7 && cidGot.Count == 6, "the messages", bob, cid);
            Assert.AreEqual(ann.PlayerId, bobGot[0].From);
            Assert.AreEqual(4, bobGot[0].Data.AsObject().GetLong("move"));
            Assert.AreEqual("to everyone", bobGot[1].Data.AsString());
            Assert.AreEqual("to everyone", cidGot[0].Data.AsString());
            CollectionAssert.AreEqual(new long[] { 0, 1, 2, 3, 4 }, bobGot.Skip(2).Select(m => m.Data.AsArray()[0].AsLong()));
            Assert.AreEqual("peer_not_found", (await Refused(ann.SendAsync(1, "p_nobody"))).Code);
        }

        // ---- the README's example ------------------------------------------------------

        private sealed class FixturePeer : IPeer
        {
            public readonly List<string> Remote = new List<string>();
            public readonly List<IceCandidate> RemoteCandidates = new List<IceCandidate>();
            public event Action<IceCandidate> LocalCandidate;

            public Task<string> CreateOfferAsync() => Task.FromResult(Fixture("chromium-offer-datachannel.sdp"));

            public Task<string> CreateAnswerAsync(string offerSdp)
            {
                Remote.Add(offerSdp);
                return Task.FromResult(Fixture("chromium-answer-datachannel.sdp"));
            }

            public Task AcceptAnswerAsync(string answerSdp)
            {
                Remote.Add(answerSdp);
                LocalCandidate?.Invoke(new IceCandidate(Fixture("chromium-candidates.txt").Split('\n')[0].Trim(), "0", 0));
                return Task.CompletedTask;
            }

            public void AddIceCandidate(IceCandidate candidate) => RemoteCandidates.Add(candidate);
        }

        [Test]
        public async Task TheQuickStartSampleConnectsTwoPlayers()
        {
            var ann = new QuickStart(w => new FixturePeer());
            var bob = new QuickStart(w => new FixturePeer());
            var log = new List<string>();
            ann.Log = bob.Log = log.Add;
            try
            {
                await ann.StartAsync(_server.Urls[0], "ann");
                await bob.StartAsync(_server.Urls[_server.Urls.Count - 1], "bob");
                var deadline = DateTime.UtcNow.AddSeconds(15);
                while (DateTime.UtcNow < deadline && (ann.Peer == null || ((FixturePeer)ann.Peer).RemoteCandidates.Count == 0))
                {
                    ann.Update();
                    bob.Update();
                    await Task.Delay(10);
                }
                Assert.AreEqual(bob.Client.PlayerId, ann.Opponent, string.Join("\n", log));
                var annPeer = (FixturePeer)ann.Peer;
                var bobPeer = (FixturePeer)bob.Peer;
                CollectionAssert.AreEqual(new[] { Fixture("chromium-offer-datachannel.sdp") }, annPeer.Remote, "ann answered bob's offer");
                CollectionAssert.AreEqual(new[] { Fixture("chromium-answer-datachannel.sdp") }, bobPeer.Remote, "bob got the answer");
                Assert.AreEqual(1, annPeer.RemoteCandidates.Count);
            }
            finally
            {
                if (ann.Client != null) await ann.Client.CloseAsync();
                if (bob.Client != null) await bob.Client.CloseAsync();
            }
        }
    }

    [TestFixture]
    public class JsonTests
    {
        [Test]
        public void RoundTripsTheProtocolsValues()
        {
            var text = "{\"a\":[1,-2.5,1e3,true,false,null],\"s\":\"q\\\"\\\\\\n\\u00e9\\ud83d\\ude00\",\"big\":9007199254740993,\"o\":{}}";
            var v = JsonValue.Parse(text).AsObject();
            Assert.AreEqual(text.Replace("\\u00e9", "\u00e9").Replace("\\ud83d\\ude00", "\U0001F600"), v.ToString());
            Assert.AreEqual(9007199254740993L, v.GetLong("big"));
            Assert.AreEqual(-2.5, v.GetArray("a")[1].AsDouble());
            Assert.AreEqual("q\"\\\n\u00e9\U0001F600", v.GetString("s"));
            Assert.IsTrue(v.GetArray("a")[5].IsNull);
            Assert.AreEqual("{\"k\":\"\\u0001\"}", new JsonObject { { "k", "\u0001" } }.ToString());
        }

        [TestCase("")]
        [TestCase("{")]
        [TestCase("{\"a\":1,}")]
        [TestCase("[1 2]")]
        [TestCase("\"unterminated")]
        [TestCase("01")]
        [TestCase("{} x")]
        [TestCase("tru")]
        public void RejectsMalformedText(string text)
        {
            Assert.Throws<FormatException>(() => JsonValue.Parse(text));
        }

        [Test]
        public void RejectsNestingBeyondTheLimit()
        {
            Assert.Throws<FormatException>(() => JsonValue.Parse(new string('[', 300) + new string(']', 300)));
            Assert.IsNotNull(JsonValue.Parse(new string('[', 200) + new string(']', 200)));
        }
    }
}
