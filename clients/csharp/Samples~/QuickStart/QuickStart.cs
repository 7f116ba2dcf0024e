// The five-minute path: connect, find a match, exchange an offer, play.
// Engine-agnostic: a Unity MonoBehaviour owns one QuickStart and calls Update()
// every frame (see UnityQuickStart.cs); the tests run it against a real server.
using System;
using System.Linq;
using System.Threading.Tasks;
using Rendezvous;

namespace Rendezvous.Samples
{
    /// <summary>One side of a WebRTC connection, e.g. Unity's RTCPeerConnection (see UnityWebRtcPeer.cs).</summary>
    public interface IPeer
    {
        /// <summary>createOffer + setLocalDescription; returns the offer's SDP.</summary>
        Task<string> CreateOfferAsync();
        /// <summary>setRemoteDescription(offer) + createAnswer + setLocalDescription; returns the answer's SDP.</summary>
        Task<string> CreateAnswerAsync(string offerSdp);
        /// <summary>setRemoteDescription(answer).</summary>
        Task AcceptAnswerAsync(string answerSdp);
        /// <summary>addIceCandidate (an empty candidate ends the remote candidates).</summary>
        void AddIceCandidate(IceCandidate candidate);
        /// <summary>Raised for each local candidate (onicecandidate), and with an empty one at the end.</summary>
        event Action<IceCandidate> LocalCandidate;
    }

    /// <summary>Connects, finds a two-player match and connects the two players' peers.</summary>
    public sealed class QuickStart
    {
        private readonly Func<Welcome, IPeer> _newPeer;
        private RendezvousClient _client;

        /// <param name="newPeer">Makes the peer connection, given the welcome (it holds the ICE servers).</param>
        public QuickStart(Func<Welcome, IPeer> newPeer) { _newPeer = newPeer; }

        /// <summary>The connection to the lobby.</summary>
        public RendezvousClient Client => _client;
        /// <summary>The other player, once the game started.</summary>
        public string Opponent { get; private set; }
        /// <summary>The peer connection to the opponent.</summary>
        public IPeer Peer { get; private set; }
        /// <summary>Where the sample reports progress and errors (Unity: Debug.Log).</summary>
        public Action<string> Log { get; set; } = _ => { };

        /// <summary>1. connect, 2. listen, 3. find a match.</summary>
        public async Task StartAsync(string url, string name)
        {
            _client = await RendezvousClient.ConnectAsync(url, new ClientOptions { Name = name });
            _client.GameStarted += OnGameStarted;
            _client.SignalReceived += OnSignal;
            _client.MessageReceived += m => Log("move from " + m.From + ": " + m.Data);
            _client.Error += e => Log("error " + e.Code + ": " + e.Message);
            var match = await _client.FindMatchAsync(new FindMatchOptions { MaxPlayers = 2, Mode = "quickstart" });
            Log(match.Created ? "waiting for an opponent" : "joined a room");
        }

        /// <summary>Call every frame: raises the lobby's events on this thread.</summary>
        public void Update() => _client?.DispatchEvents();

        /// <summary>4. play: relay a move through the server (for when the peer-to-peer link is down).</summary>
        public void SendMove(JsonObject move) => _client.Send(move, Opponent);

        // The room is full: make the peer connection. By the protocol's convention the
        // player who joined later (later in room.players) sends the offer.
        private async void OnGameStarted(GameStartedEvent e)
        {
            try
            {
                var players = e.Room.Players.Select(p => p.PlayerId).ToList();
                Opponent = players.First(id => id != _client.PlayerId);
                Peer = _newPeer(_client.Welcome);
                Peer.LocalCandidate += c => _client.SendIceCandidate(Opponent, c.Candidate, c.SdpMid, c.SdpMLineIndex);
                if (players.IndexOf(_client.PlayerId) > players.IndexOf(Opponent))
                    await _client.SendOfferAsync(Opponent, await Peer.CreateOfferAsync());
            }
            catch (Exception ex) { Log("could not start the peer connection: " + ex.Message); }
        }

        private async void OnSignal(SignalEvent s)
        {
            try
            {
                if (Peer == null || s.From != Opponent) return;
                if (s.Type == "offer") await _client.SendAnswerAsync(s.From, await Peer.CreateAnswerAsync(s.Sdp));
                else if (s.Type == "answer") await Peer.AcceptAnswerAsync(s.Sdp);
                else if (s.Type == "ice_candidate") Peer.AddIceCandidate(s.Candidate);
            }
            catch (Exception ex) { Log("signaling failed: " + ex.Message); }
        }
    }
}
