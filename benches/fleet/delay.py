#!/usr/bin/env python3
"""A delaying TCP forwarder for the fleet benchmark (this kernel has no netem).

    delay.py --delay-ms D --listen-base L --target-base T --count N [--ready FILE]

Listens on 127.0.0.1:L+1 … L+N and forwards each connection to 127.0.0.1:T+k, holding every
chunk D ms before passing it on, in each direction: a round trip through it costs 2·D ms more.
Chunks keep their order and are never merged or dropped; bandwidth is not limited. Only
127.0.0.1 is ever connected to. Writes FILE once every port listens. Standard library only.
"""
import argparse
import asyncio
import os
import resource
import sys
import time


async def pipe(reader, writer, delay, not_before=0.0):
    """Copies reader → writer, each chunk leaving `delay` seconds after it arrived (and not
    before the monotonic time `not_before`)."""
    queue = asyncio.Queue()

    async def send():
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    sender = asyncio.ensure_future(send())
    try:
        while True:
            data = await reader.read(65536)
            queue.put_nowait((max(time.monotonic() + delay, not_before), data or None))
            if not data:
                break
        await sender
    except (ConnectionError, OSError):
        sender.cancel()
    finally:
        # A peer that already went away: nothing more to deliver.
        pass


async def handle(client_reader, client_writer, target_port, delay):
    # TCP's own handshake costs a round trip before the client may send: the server sees the
    # connection half a trip after the client asked (SYN), and the client's first bytes reach
    # it a trip and a half after (SYN-ACK back, then the data).
    start = time.monotonic()
    await asyncio.sleep(delay)
    try:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(
        pipe(client_reader, server_writer, delay, start + 3 * delay),
        pipe(server_reader, client_writer, delay),
        return_exceptions=True,
    )
    for w in (client_writer, server_writer):
        try:
            w.close()
        except OSError:
            pass


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--delay-ms", type=float, required=True)
    p.add_argument("--listen-base", type=int, required=True)
    p.add_argument("--target-base", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--ready")
    a = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 8 * a.count + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    delay = a.delay_ms / 1000.0
    servers = []
    for k in range(1, a.count + 1):
        target = a.target_base + k

        async def on_connect(r, w, target=target):
            await handle(r, w, target, delay)

        servers.append(
            await asyncio.start_server(on_connect, "127.0.0.1", a.listen_base + k, backlog=1024)
        )
    if a.ready:
        tmp = a.ready + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % os.getpid())
        os.replace(tmp, a.ready)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
