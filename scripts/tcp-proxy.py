#!/usr/bin/env python3
"""A TCP proxy for failure tests: forwards 127.0.0.1:<listen> to 127.0.0.1:<target>.

Prints the listening port on the first line of stdout, then obeys commands read line by line on stdin:
  cut      reset every open connection (RST, no FIN): the peers see the connection die
  pause    stop forwarding bytes (connections stay open: a network that swallows packets)
  resume   forward again
  refuse   reset new connections at once
  accept   accept new connections again
It exits when stdin closes.
"""
import asyncio
import socket
import struct
import sys


class Proxy:
    def __init__(self, target):
        self.target = target
        self.connections = set()
        self.paused = asyncio.Event()
        self.paused.set()  # set = forwarding
        self.refusing = False

    async def pump(self, reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self.paused.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def handle(self, client_reader, client_writer):
        if self.refusing:
            reset(client_writer)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            reset(client_writer)
            return
        for w in (client_writer, upstream_writer):
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = (client_writer, upstream_writer)
        self.connections.add(pair)
        try:
            await asyncio.gather(self.pump(client_reader, upstream_writer), self.pump(upstream_reader, client_writer))
        finally:
            self.connections.discard(pair)

    def cut(self):
        for pair in list(self.connections):
            for w in pair:
                reset(w)
        self.connections.clear()


def reset(writer):
    sock = writer.get_extra_info("socket")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


async def main():
    listen, target = int(sys.argv[1]), int(sys.argv[2])
    proxy = Proxy(target)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", listen)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        command = line.strip()
        if command == "cut":
            proxy.cut()
        elif command == "pause":
            proxy.paused.clear()
        elif command == "resume":
            proxy.paused.set()
        elif command == "refuse":
            proxy.refusing = True
        elif command == "accept":
            proxy.refusing = False
        print("ok " + command, flush=True)
    server.close()
    proxy.cut()


if __name__ == "__main__":
    asyncio.run(main())
