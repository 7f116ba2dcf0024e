// Processes and sockets the tests need: the real server (one node in memory, or
// two nodes sharing a private redis-server in cluster mode), and a TCP proxy
// that can cut connections abruptly. Everything binds to 127.0.0.1 and every
// process started here is killed by its id in Dispose.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;

namespace Rendezvous.Tests
{
    internal sealed class TestServer : IDisposable
    {
        private readonly List<Process> _processes = new List<Process>();
        private readonly List<string> _logs = new List<string>();

        internal static bool Cluster => Environment.GetEnvironmentVariable("RENDEZVOUS_TEST_CLUSTER") == "1";

        /// <summary>ws:// URLs of the nodes (two in cluster mode, one otherwise).</summary>
        internal List<string> Urls { get; } = new List<string>();

        /// <summary>Starts the server (with redis and a second node in cluster mode).</summary>
        internal static TestServer Start(params string[] args)
        {
            var server = new TestServer();
            try
            {
                var extra = string.Join(" ", args);
                if (Cluster)
                {
                    var redisPort = FreePort();
                    server.Spawn("redis-server", "--port " + redisPort + " --bind 127.0.0.1 --save \"\" --appendonly no", null);
                    WaitForPort(redisPort);
                    var redis = " --redis-url redis://127.0.0.1:" + redisPort + "/";
                    server.StartNode(extra + redis + " --node-id n1");
                    server.StartNode(extra + redis + " --node-id n2");
                }
                else
                {
                    server.StartNode(extra);
                }
                return server;
            }
            catch
            {
                server.Dispose();
                throw;
            }
        }

        private void StartNode(string args)
        {
            var bin = Environment.GetEnvironmentVariable("RENDEZVOUS_BIN") ?? "target/debug/rendezvous";
            var listening = new TaskCompletionSource<string>();
            Spawn(bin, "--listen 127.0.0.1:0 " + args, line =>
            {
                const string prefix = "listening on http://";
                if (line.StartsWith(prefix, StringComparison.Ordinal)) listening.TrySetResult(line.Substring(prefix.Length).Trim());
            });
            if (!listening.Task.Wait(TimeSpan.FromSeconds(20)))
                throw new InvalidOperationException("the server did not report its address:\n" + string.Join("\n", Log));
            Urls.Add("ws://" + listening.Task.Result + "/ws");
        }

        private void Spawn(string file, string args, Action<string> onStdout)
        {
            var psi = new ProcessStartInfo(file, args)
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            psi.EnvironmentVariables["RUST_LOG"] = "warn";
            var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start " + file);
            lock (_processes) _processes.Add(p);
            p.OutputDataReceived += (s, e) => { if (e.Data != null) { Keep(e.Data); onStdout?.Invoke(e.Data); } };
            p.ErrorDataReceived += (s, e) => { if (e.Data != null) Keep(e.Data); };
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
        }

        private void Keep(string line)
        {
            lock (_logs)
            {
                _logs.Add(line);
                if (_logs.Count > 200) _logs.RemoveAt(0);
            }
        }

        internal List<string> Log { get { lock (_logs) return new List<string>(_logs); } }

        public void Dispose()
        {
            lock (_processes)
            {
                // Nodes first (they were started last), then redis.
                for (var i = _processes.Count - 1; i >= 0; i--)
                {
                    var p = _processes[i];
                    try
                    {
                        if (!p.HasExited) p.Kill();
                        p.WaitForExit(5000);
                    }
                    catch (InvalidOperationException) { /* already gone */ }
                    p.Dispose();
                }
                _processes.Clear();
            }
        }

        internal static int FreePort()
        {
            var l = new TcpListener(IPAddress.Loopback, 0);
            l.Start();
            var port = ((IPEndPoint)l.LocalEndpoint).Port;
            l.Stop();
            return port;
        }

        private static void WaitForPort(int port)
        {
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (true)
            {
                try
                {
                    using (var c = new TcpClient()) { c.Connect(IPAddress.Loopback, port); return; }
                }
                catch (SocketException) when (DateTime.UtcNow < deadline)
                {
                    Thread.Sleep(50);
                }
            }
        }
    }

    /// <summary>A TCP proxy in front of a node; <see cref="CutAll"/> resets every live connection (RST both ways).</summary>
    internal sealed class CuttingProxy : IDisposable
    {
        private readonly TcpListener _listener = new TcpListener(IPAddress.Loopback, 0);
        private readonly IPEndPoint _target;
        private readonly List<Socket> _live = new List<Socket>();
        private volatile bool _stopped;

        internal CuttingProxy(string wsUrl)
        {
            var u = new Uri(wsUrl);
            _target = new IPEndPoint(IPAddress.Parse(u.Host), u.Port);
            _listener.Start();
            Url = "ws://127.0.0.1:" + ((IPEndPoint)_listener.LocalEndpoint).Port + u.AbsolutePath;
            Task.Run(AcceptLoop);
        }

        internal string Url { get; }

        /// <summary>Connections forwarded to the node so far.</summary>
        internal int Forwarded;

        /// <summary>While set, new connections are reset at once (the server looks unreachable).</summary>
        internal volatile bool Blocked;

        private async Task AcceptLoop()
        {
            while (!_stopped)
            {
                Socket client;
                try { client = await _listener.AcceptSocketAsync().ConfigureAwait(false); }
                catch (Exception) { return; }
                if (Blocked)
                {
                    client.LingerState = new LingerOption(true, 0);
                    client.Close();
                    continue;
                }
                Interlocked.Increment(ref Forwarded);
                var upstream = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                try { upstream.Connect(_target); }
                catch (SocketException) { client.Close(); continue; }
                lock (_live) { _live.Add(client); _live.Add(upstream); }
                _ = Pump(client, upstream);
                _ = Pump(upstream, client);
            }
        }

        private static async Task Pump(Socket from, Socket to)
        {
            var buffer = new byte[16384];
            try
            {
                using (var inStream = new NetworkStream(from, false))
                using (var outStream = new NetworkStream(to, false))
                {
                    int n;
                    while ((n = await inStream.ReadAsync(buffer, 0, buffer.Length).ConfigureAwait(false)) > 0)
                        await outStream.WriteAsync(buffer, 0, n).ConfigureAwait(false);
                }
                to.Shutdown(SocketShutdown.Send);
            }
            catch (Exception) { /* cut or closed */ }
        }

        /// <summary>Resets every live connection, both sides, without a close handshake.</summary>
        internal void CutAll()
        {
            List<Socket> sockets;
            lock (_live) { sockets = new List<Socket>(_live); _live.Clear(); }
            foreach (var s in sockets)
            {
                try { s.LingerState = new LingerOption(true, 0); s.Close(); }
                catch (Exception) { /* already closed */ }
            }
        }

        public void Dispose()
        {
            _stopped = true;
            _listener.Stop();
            CutAll();
        }
    }
}
