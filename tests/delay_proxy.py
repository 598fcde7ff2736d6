"""A userspace TCP proxy that delays every chunk by a fixed time in each direction.

The kernel here has no `netem`, so latency is injected in userspace: each chunk read from one side is
stamped on arrival and written to the other side `delay_ms` later. Chunks of one direction keep their order
and are pipelined (a burst is delayed once, not once per chunk), so a request/response round trip gains
exactly 2 x delay_ms. One listening port, one upstream connection per accepted connection (ZeroMQ opens one
per socket); when either side closes or fails, what is already in flight is delivered, then both close.

    python -m tests.delay_proxy --listen 127.0.0.1:0 --target 10.231.0.1:7750 --delay-ms 20
    # prints "listening 127.0.0.1:PORT" on stdout once bound; SIGTERM/SIGINT stop it with exit code 0

    with DelayProxy("127.0.0.1:0", ("10.0.0.1", 7750), delay_ms=20) as proxy:   # a background thread
        connect_to(proxy.port)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Sequence

import structlog

log = structlog.get_logger("delay_proxy")

Address = tuple[str, int]
CHUNK_BYTES = 65536
# Bounds memory per direction when the receiver is slower than the sender (TCP backpressure then applies).
MAX_CHUNKS_IN_FLIGHT = 256
CONNECT_TIMEOUT_S = 5.0
DESCRIPTION = "A userspace TCP proxy that delays every chunk by a fixed time in each direction."


def parse_address(text: str | Address) -> Address:
    """`HOST:PORT`, `[v6]:PORT` or a (host, port) tuple -> (host, port)."""
    if isinstance(text, tuple):
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _nodelay(writer: asyncio.StreamWriter) -> None:
    # Without TCP_NODELAY, Nagle plus delayed ACKs add up to ~40 ms to small messages and hide the delay we set.
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class ProxyCore:
    """The asyncio part, shared by the thread (`DelayProxy`) and the command line."""

    def __init__(self, listen: Address, target: Address, delay_ms: float) -> None:
        if delay_ms < 0:
            raise ValueError("delay_ms must be >= 0")
        self.listen = listen
        self.target = target
        self.delay_s = delay_ms / 1000.0
        self.bound: Address | None = None
        self.active_connections = 0
        self.total_connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> Address:
        self._server = await asyncio.start_server(self._on_accept, self.listen[0], self.listen[1],
                                                  reuse_address=True, backlog=256)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.bound = (str(host), int(port))
        log.info("proxy_listening", listen=f"{host}:{port}", target=f"{self.target[0]}:{self.target[1]}",
                 delay_ms=self.delay_s * 1000.0)
        return self.bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        log.info("proxy_stopped", total_connections=self.total_connections)

    def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._connection(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connection(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        peer = client_writer.get_extra_info("peername")
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.target), CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            log.warning("proxy_upstream_failed", peer=str(peer), error=repr(exc))
            client_writer.close()
            return
        _nodelay(client_writer)
        _nodelay(upstream_writer)
        self.active_connections += 1
        self.total_connections += 1
        log.info("proxy_connection_opened", peer=str(peer), active=self.active_connections,
                 total=self.total_connections)
        pumps = [asyncio.create_task(self._pump(client_reader, upstream_writer)),
                 asyncio.create_task(self._pump(upstream_reader, client_writer))]
        try:
            # One side closing ends the connection: half-open relays would keep ZeroMQ peers waiting forever.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for writer in (client_writer, upstream_writer):
                writer.close()
            self.active_connections -= 1
            log.info("proxy_connection_closed", peer=str(peer), active=self.active_connections,
                     total=self.total_connections)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy reader -> writer, each chunk written `delay_s` after it was read. b"" in the queue is the end."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(MAX_CHUNKS_IN_FLIGHT)

        async def read_side() -> None:
            try:
                while data := await reader.read(CHUNK_BYTES):
                    await queue.put((loop.time() + self.delay_s, data))
            except OSError:
                pass  # a reset ends the stream like EOF; chunks already queued are still delivered
            await queue.put((loop.time() + self.delay_s, b""))

        reading = asyncio.create_task(read_side())
        try:
            while True:
                due, data = await queue.get()
                wait_s = due - loop.time()
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
                if not data:
                    return
                writer.write(data)
                await writer.drain()
        except OSError:
            return
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading


class DelayProxy:
    """`ProxyCore` on its own event loop in a background thread. `start()` returns once bound."""

    def __init__(self, listen: str | Address, target: str | Address, delay_ms: float) -> None:
        self.core = ProxyCore(parse_address(listen), parse_address(target), delay_ms)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def address(self) -> Address:
        if self.core.bound is None:
            raise RuntimeError("proxy not started")
        return self.core.bound

    @property
    def port(self) -> int:
        return self.address[1]

    def start(self, timeout_s: float = 5.0) -> DelayProxy:
        self._thread = threading.Thread(target=self._run, name="delay-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError("delay proxy did not bind in time")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may close between the check and the call
                loop.call_soon_threadsafe(stopped.set)
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise TimeoutError("delay proxy thread did not stop")

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        try:
            await self.core.start()
        except BaseException as exc:  # handed to start() in the caller's thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stopped.wait()
        await self.core.stop()


async def _serve_until_signal(core: ProxyCore) -> None:
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    host, port = await core.start()
    # The one line on stdout: callers in another namespace learn the bound port from it (listen port 0).
    print(f"listening {host}:{port}", flush=True)
    await stopped.wait()
    await core.stop()


def main(argv: Sequence[str] | None = None) -> int:
    from launch.logsetup import configure_logging  # entry point only: the library part never configures logging

    parser = argparse.ArgumentParser(prog="python -m tests.delay_proxy", description=DESCRIPTION)
    parser.add_argument("--listen", required=True, help="HOST:PORT to accept on (port 0: pick a free one)")
    parser.add_argument("--target", required=True, help="HOST:PORT to forward to")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="delay added in each direction")
    parser.add_argument("--json-logs", action="store_true", help="JSON log lines on stderr")
    args = parser.parse_args(argv)
    configure_logging(json_output=args.json_logs)
    try:
        core = ProxyCore(parse_address(args.listen), parse_address(args.target), args.delay_ms)
        asyncio.run(_serve_until_signal(core))
    except (OSError, ValueError) as exc:
        print(f"delay_proxy: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
