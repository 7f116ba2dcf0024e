using System;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.IO;
using System.Net.WebSockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace Rendezvous
{
    /// <summary>
    /// One WebSocket session: the socket, its outbound queue (a single writer
    /// keeps frames in the order they were queued) and its liveness clock.
    /// A reconnection makes a new Connection; a dead one is never reused.
    /// </summary>
    internal sealed class Connection
    {
        private sealed class OutFrame
        {
            internal byte[] Bytes;
            internal TaskCompletionSource<bool> Sent;
        }

        private readonly ConcurrentQueue<OutFrame> _outbox = new ConcurrentQueue<OutFrame>();
        private readonly SemaphoreSlim _outSignal = new SemaphoreSlim(0);
        private readonly int _maxReceiveBytes;
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private long _lastRxMs;
        private int _dead;

        internal Connection(ClientWebSocket ws, int maxReceiveBytes)
        {
            Ws = ws;
            _maxReceiveBytes = maxReceiveBytes;
        }

        internal ClientWebSocket Ws { get; }
        internal CancellationTokenSource Cts { get; } = new CancellationTokenSource();
        internal bool IsDead => Volatile.Read(ref _dead) != 0;

        /// <summary>Milliseconds since the last frame arrived.</summary>
        internal long SilentMs => _clock.ElapsedMilliseconds - Interlocked.Read(ref _lastRxMs);

        /// <summary>Marks the connection dead; true only for the first caller.</summary>
        internal bool MarkDead()
        {
            if (Interlocked.Exchange(ref _dead, 1) != 0) return false;
            try { Cts.Cancel(); } catch (ObjectDisposedException) { }
            try { Ws.Abort(); } catch (Exception) { }
            while (_outbox.TryDequeue(out var f))
                f.Sent?.TrySetException(new RendezvousException("disconnected", "the connection closed before the message was sent"));
            return true;
        }

        /// <summary>Queues a text frame; <paramref name="sent"/> (optional) completes once it is written.</summary>
        internal bool Enqueue(string text, TaskCompletionSource<bool> sent)
        {
            if (IsDead) return false;
            _outbox.Enqueue(new OutFrame { Bytes = Encoding.UTF8.GetBytes(text), Sent = sent });
            _outSignal.Release();
            if (IsDead) MarkDead(); // raced with a drop: fail what is left
            return true;
        }

        /// <summary>Writes queued frames in order until the connection dies; returns the failure, if any.</summary>
        internal async Task<Exception> RunSenderAsync()
        {
            var ct = Cts.Token;
            try
            {
                while (true)
                {
                    await _outSignal.WaitAsync(ct).ConfigureAwait(false);
                    OutFrame frame; // (no `out var` in async methods: mcs cannot compile it)
                    if (!_outbox.TryDequeue(out frame)) continue;
                    try
                    {
                        await Ws.SendAsync(new ArraySegment<byte>(frame.Bytes), WebSocketMessageType.Text, true, ct).ConfigureAwait(false);
                    }
                    catch (Exception e)
                    {
                        frame.Sent?.TrySetException(new RendezvousException("disconnected", "send failed: " + e.Message, inner: e));
                        throw;
                    }
                    frame.Sent?.TrySetResult(true);
                }
            }
            catch (Exception e)
            {
                return IsDead ? null : e;
            }
        }

        /// <summary>
        /// Reads one whole message. Returns null on a close frame. Throws on a
        /// broken socket or a message over the size limit.
        /// </summary>
        internal async Task<Incoming> ReceiveAsync(CancellationToken ct)
        {
            var buffer = new byte[8192];
            using (var data = new MemoryStream())
            {
                while (true)
                {
                    var r = await Ws.ReceiveAsync(new ArraySegment<byte>(buffer), ct).ConfigureAwait(false);
                    if (r.MessageType == WebSocketMessageType.Close) return null;
                    data.Write(buffer, 0, r.Count);
                    if (data.Length > _maxReceiveBytes)
                        throw new RendezvousException("bad_frame", "a message from the server exceeds " + _maxReceiveBytes + " bytes");
                    if (!r.EndOfMessage) continue;
                    Interlocked.Exchange(ref _lastRxMs, _clock.ElapsedMilliseconds);
                    return new Incoming(r.MessageType == WebSocketMessageType.Text, Encoding.UTF8.GetString(data.ToArray()));
                }
            }
        }
    }

    /// <summary>A received message: text, or (for a binary frame) its bytes decoded as best we can.</summary>
    internal sealed class Incoming
    {
        internal Incoming(bool isText, string text) { IsText = isText; Text = text; }
        internal bool IsText { get; }
        internal string Text { get; }
    }
}
