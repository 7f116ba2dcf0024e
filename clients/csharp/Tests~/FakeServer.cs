// A tiny scripted WebSocket server for what the real server never does: send
// broken frames, stay silent. Each accepted connection runs the next script.
using System;
using System.Collections.Generic;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Threading.Tasks;

namespace Rendezvous.Tests
{
    internal sealed class FakeServer : IDisposable
    {
        private readonly TcpListener _listener = new TcpListener(IPAddress.Loopback, 0);
        private readonly Queue<Func<FakeConnection, Task>> _scripts;

        internal FakeServer(params Func<FakeConnection, Task>[] scripts)
        {
            _scripts = new Queue<Func<FakeConnection, Task>>(scripts);
            _listener.Start();
            Url = "ws://127.0.0.1:" + ((IPEndPoint)_listener.LocalEndpoint).Port + "/ws";
            Done = Task.Run(Serve);
        }

        internal string Url { get; }

        /// <summary>Completes when every script ran; faults with a script's exception.</summary>
        internal Task Done { get; }

        /// <summary>Request lines (e.g. <c>GET /ws?resume=... HTTP/1.1</c>) of the handshakes, in order.</summary>
        internal List<string> Requests { get; } = new List<string>();

        private async Task Serve()
        {
            while (_scripts.Count > 0)
            {
                var script = _scripts.Dequeue();
                using (var tcp = await _listener.AcceptTcpClientAsync().ConfigureAwait(false))
                {
                    var conn = new FakeConnection(tcp);
                    var request = await conn.HandshakeAsync().ConfigureAwait(false);
                    lock (Requests) Requests.Add(request);
                    await script(conn).ConfigureAwait(false);
                }
            }
        }

        public void Dispose() => _listener.Stop();

        internal static string Welcome(string playerId, string resumeToken, bool resumed = false) =>
            "{\"type\":\"welcome\",\"protocol\":1,\"player_id\":\"" + playerId + "\",\"name\":\"fake\",\"resume_token\":\"" + resumeToken +
            "\",\"resumed\":" + (resumed ? "true" : "false") + ",\"room\":null,\"heartbeat_interval_ms\":15000,\"heartbeat_timeout_ms\":45000," +
            "\"ice_servers\":[{\"urls\":[\"stun:stun.example.org:3478\"]}],\"limits\":{\"max_message_bytes\":65536,\"max_players\":16},\"features\":[]}";
    }

    internal sealed class FakeConnection
    {
        private readonly TcpClient _tcp;
        private readonly NetworkStream _stream;

        internal FakeConnection(TcpClient tcp)
        {
            _tcp = tcp;
            _stream = tcp.GetStream();
        }

        internal async Task<string> HandshakeAsync()
        {
            var head = new StringBuilder();
            var one = new byte[1];
            while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
            {
                if (await _stream.ReadAsync(one, 0, 1).ConfigureAwait(false) == 0) throw new EndOfStreamException("handshake cut");
                head.Append((char)one[0]);
            }
            var lines = head.ToString().Split(new[] { "\r\n" }, StringSplitOptions.RemoveEmptyEntries);
            string key = null;
            foreach (var line in lines)
                if (line.StartsWith("Sec-WebSocket-Key:", StringComparison.OrdinalIgnoreCase)) key = line.Substring(18).Trim();
            string accept;
            using (var sha1 = SHA1.Create())
                accept = Convert.ToBase64String(sha1.ComputeHash(Encoding.ASCII.GetBytes(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")));
            var answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n";
            await WriteAsync(Encoding.ASCII.GetBytes(answer)).ConfigureAwait(false);
            return lines[0];
        }

        /// <summary>Sends a text frame (opcode 1) or, with <paramref name="opcode"/> 2, a binary one.</summary>
        internal Task SendTextAsync(string text, int opcode = 1) => WriteAsync(Frame(Encoding.UTF8.GetBytes(text), opcode));

        /// <summary>Sends the first <paramref name="keep"/> bytes of a frame only (the header promises more).</summary>
        internal Task SendTruncatedAsync(string text, int keep)
        {
            var frame = Frame(Encoding.UTF8.GetBytes(text), 1);
            return _stream.WriteAsync(frame, 0, keep);
        }

        private static byte[] Frame(byte[] payload, int opcode)
        {
            var header = new List<byte> { (byte)(0x80 | opcode) };
            if (payload.Length < 126) header.Add((byte)payload.Length);
            else { header.Add(126); header.Add((byte)(payload.Length >> 8)); header.Add((byte)payload.Length); }
            var frame = new byte[header.Count + payload.Length];
            header.CopyTo(frame);
            payload.CopyTo(frame, header.Count);
            return frame;
        }

        /// <summary>Reads the next client text message (frames are masked); null when the client closed.</summary>
        internal async Task<string> ReadTextAsync()
        {
            while (true)
            {
                var h = await ReadExactly(2).ConfigureAwait(false);
                var opcode = h[0] & 0x0f;
                long len = h[1] & 0x7f;
                if (len == 126) { var e = await ReadExactly(2).ConfigureAwait(false); len = (e[0] << 8) | e[1]; }
                else if (len == 127) { var e = await ReadExactly(8).ConfigureAwait(false); len = 0; foreach (var b in e) len = (len << 8) | b; }
                var mask = await ReadExactly(4).ConfigureAwait(false);
                var payload = await ReadExactly((int)len).ConfigureAwait(false);
                for (var i = 0; i < payload.Length; i++) payload[i] ^= mask[i % 4];
                if (opcode == 8) return null;
                if (opcode == 1) return Encoding.UTF8.GetString(payload);
                // pings, pongs: ignored
            }
        }

        private async Task<byte[]> ReadExactly(int n)
        {
            var buf = new byte[n];
            var got = 0;
            while (got < n)
            {
                var r = await _stream.ReadAsync(buf, got, n - got).ConfigureAwait(false);
                if (r == 0) throw new EndOfStreamException("client went away");
                got += r;
            }
            return buf;
        }

        private Task WriteAsync(byte[] bytes) => _stream.WriteAsync(bytes, 0, bytes.Length);

        /// <summary>Drops the TCP connection without a close frame.</summary>
        internal void Abort()
        {
            _tcp.Client.LingerState = new LingerOption(true, 0);
            _tcp.Close();
        }
    }
}
