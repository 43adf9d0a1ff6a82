"""A TCP relay on 127.0.0.1 that delays every flight of bytes by half a round trip, each way.

It stands for the network between a pilot and a remote PanDA server in ``bench/comm_updates.py --only
client --rtt-ms N``: a TLS handshake then costs its real number of round trips. The relay accepts a
connection at once, so the TCP handshake's round trip is added to the first flight of each connection
instead: its bytes reach the server one and a half round trips after the client sent them, as they
would after a real SYN / SYN-ACK (the client cannot send before the handshake completes).

Usage: ``python bench/_latency_relay.py TARGET_PORT RTT_MS`` (prints ``listening on PORT``; ends on
SIGTERM).
"""

from __future__ import annotations

import asyncio
import signal
import sys


async def pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, first_extra: float = 0.0
) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds after it arrived, in order (the first
    ``first_extra`` seconds later still).
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            await asyncio.sleep(max(0.0, due - loop.time()))
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    sender = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(65536)
            await queue.put((loop.time() + delay + first_extra, data))
            first_extra = 0.0
            if not data:
                break
        await sender
    except (ConnectionError, OSError):
        sender.cancel()
        writer.close()


async def serve(target_port: int, rtt_ms: float) -> None:
    """Relay connections to 127.0.0.1:``target_port`` until SIGTERM."""
    delay = rtt_ms / 2000.0

    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(
            pipe(client_r, server_w, delay, first_extra=2 * delay),  # the TCP handshake's round trip
            pipe(server_r, client_w, delay),
        )
        for w in (client_w, server_w):
            w.close()

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), float(sys.argv[2])))
