#!/usr/bin/env python3
"""Idle memory per socket, measured from outside with a standard client.

Opens N WebSockets to a running Rendezvous (`--max-connections-per-ip` high
enough), 500 handshakes at a time, each reading its `welcome`, and prints the
server's RSS growth per socket (from /proc/PID/status). Loopback only.

    pip install websockets==17.0
    target/release/rendezvous --listen 127.0.0.1:7800 --max-connections-per-ip 100000 &
    scripts/idle-python.py --url ws://127.0.0.1:7800/ws --pid $! --sockets 19000
"""
import argparse
import asyncio
import resource
import time

import websockets


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--sockets", type=int, default=10000)
    ap.add_argument("--burst", type=int, default=500)
    ap.add_argument("--compression", action="store_true", help="offer permessage-deflate")
    a = ap.parse_args()
    assert "127.0.0.1" in a.url or "[::1]" in a.url or "localhost" in a.url, "loopback only"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    before = rss_kib(a.pid)
    socks = []
    t0 = time.time()

    async def one():
        ws = await websockets.connect(
            a.url,
            compression="deflate" if a.compression else None,
            ping_interval=None,
            max_size=2**20,
        )
        welcome = await ws.recv()
        assert '"welcome"' in welcome, welcome[:80]
        return ws

    while len(socks) < a.sockets:
        n = min(a.burst, a.sockets - len(socks))
        socks += await asyncio.gather(*[one() for _ in range(n)])
    await asyncio.sleep(2)
    after = rss_kib(a.pid)
    print(
        f"{len(socks)} sockets in {time.time() - t0:.1f} s: server RSS {before} -> {after} KiB, "
        f"{(after - before) / len(socks):.2f} KiB per socket"
    )
    await asyncio.gather(*[ws.close() for ws in socks])


asyncio.run(main())
