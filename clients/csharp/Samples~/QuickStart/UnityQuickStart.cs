// The Unity side of the quick start: a MonoBehaviour that runs QuickStart, and an
// IPeer over Unity's WebRTC package (com.unity.webrtc 3.x). Compiled only inside
// Unity: outside it (the repository's Mono test build) this file is empty.
#if UNITY_5_3_OR_NEWER
using System;
using System.Collections;
using System.Linq;
using System.Threading.Tasks;
using Unity.WebRTC;
using UnityEngine;

namespace Rendezvous.Samples
{
    /// <summary>Add to a GameObject, set the URL, press Play in two editors or builds.</summary>
    public sealed class UnityQuickStart : MonoBehaviour
    {
        /// <summary>The server's WebSocket endpoint.</summary>
        public string Url = "ws://localhost:8080/ws";
        /// <summary>Display name.</summary>
        public string PlayerName = "player";

        private QuickStart _game;

        private async void Start()
        {
            _game = new QuickStart(welcome => new UnityWebRtcPeer(this, welcome)) { Log = Debug.Log };
            try { await _game.StartAsync(Url, PlayerName); }
            catch (RendezvousException e) { Debug.LogError("Rendezvous: " + e.Code + ": " + e.Message); }
        }

        // Lobby events are raised here, on Unity's main thread.
        private void Update() => _game?.Update();

        private void OnDestroy() => _game?.Client?.Close();
    }

    /// <summary>An RTCPeerConnection with one reliable data channel, as an <see cref="IPeer"/>.</summary>
    public sealed class UnityWebRtcPeer : IPeer, IDisposable
    {
        private readonly MonoBehaviour _host;
        private readonly RTCPeerConnection _pc;

        /// <summary>The data channel to play over (set once created or received).</summary>
        public RTCDataChannel Channel { get; private set; }

        /// <inheritdoc/>
        public event Action<IceCandidate> LocalCandidate;

        public UnityWebRtcPeer(MonoBehaviour host, Welcome welcome)
        {
            _host = host;
            var config = new RTCConfiguration
            {
                iceServers = welcome.IceServers.Select(s => new RTCIceServer
                {
                    urls = s.Urls.ToArray(),
                    username = s.Username,
                    credential = s.Credential,
                }).ToArray(),
            };
            _pc = new RTCPeerConnection(ref config);
            _pc.OnIceCandidate = c => LocalCandidate?.Invoke(new IceCandidate(c.Candidate, c.SdpMid, c.SdpMLineIndex));
            _pc.OnIceGatheringStateChange = state =>
            {
                if (state == RTCIceGatheringState.Complete) LocalCandidate?.Invoke(new IceCandidate(""));
            };
            _pc.OnDataChannel = channel => Channel = channel;
        }

        /// <inheritdoc/>
        public Task<string> CreateOfferAsync()
        {
            Channel = _pc.CreateDataChannel("game");
            return Run<string>(tcs => Describe(_pc.CreateOffer(), tcs));
        }

        /// <inheritdoc/>
        public Task<string> CreateAnswerAsync(string offerSdp) =>
            Run<string>(tcs => AnswerRoutine(offerSdp, tcs));

        /// <inheritdoc/>
        public Task AcceptAnswerAsync(string answerSdp) =>
            Run<string>(tcs => SetRemote(RTCSdpType.Answer, answerSdp, tcs, true));

        /// <inheritdoc/>
        public void AddIceCandidate(IceCandidate c)
        {
            if (string.IsNullOrEmpty(c.Candidate)) return; // end of candidates
            _pc.AddIceCandidate(new RTCIceCandidate(new RTCIceCandidateInit
            {
                candidate = c.Candidate,
                sdpMid = c.SdpMid,
                sdpMLineIndex = c.SdpMLineIndex,
            }));
        }

        /// <inheritdoc/>
        public void Dispose()
        {
            Channel?.Close();
            _pc.Close();
        }

        private IEnumerator AnswerRoutine(string offerSdp, TaskCompletionSource<string> tcs)
        {
            yield return SetRemote(RTCSdpType.Offer, offerSdp, tcs, false);
            if (!tcs.Task.IsFaulted) yield return Describe(_pc.CreateAnswer(), tcs);
        }

        private IEnumerator SetRemote(RTCSdpType type, string sdp, TaskCompletionSource<string> tcs, bool complete)
        {
            var desc = new RTCSessionDescription { type = type, sdp = sdp };
            var op = _pc.SetRemoteDescription(ref desc);
            yield return op;
            if (op.IsError) tcs.TrySetException(new Exception(op.Error.message));
            else if (complete) tcs.TrySetResult(sdp);
        }

        // Creates the local description (offer or answer), sets it, and completes with its SDP.
        private IEnumerator Describe(RTCSessionDescriptionAsyncOperation create, TaskCompletionSource<string> tcs)
        {
            yield return create;
            if (create.IsError) { tcs.TrySetException(new Exception(create.Error.message)); yield break; }
            var desc = create.Desc;
            var set = _pc.SetLocalDescription(ref desc);
            yield return set;
            if (set.IsError) tcs.TrySetException(new Exception(set.Error.message));
            else tcs.TrySetResult(desc.sdp);
        }

        private Task<T> Run<T>(Func<TaskCompletionSource<T>, IEnumerator> routine)
        {
            var tcs = new TaskCompletionSource<T>();
            _host.StartCoroutine(routine(tcs));
            return tcs.Task;
        }
    }
}
#endif
