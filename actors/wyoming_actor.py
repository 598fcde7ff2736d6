"""The wyoming actor: Home Assistant's front door. A Wyoming server (TCP, the `wyoming` library's protocol)
offering our STT (`asr`), our voice (`tts`) and Rocky as a conversation agent (`handle`), announced over
mDNS as `_wyoming._tcp.local.` so Home Assistant discovers it.

The actor's own loop reads the bus (the turns of `wyoming-*` sessions) and hands their messages to an
asyncio loop in a thread of its own, which serves the clients (actors/wyoming_server.py) and publishes
through its own socket (actors/wyoming_turns.py). A bad client closes its own connection only.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import socket
import threading
from typing import Any, ClassVar

import zmq

from actors.base import Actor, on
from actors.wyoming_protocol import build_info
from actors.wyoming_server import WyomingHandler
from actors.wyoming_settings import SESSION_PREFIX, WyomingSettings
from actors.wyoming_turns import Door, Gate
from bus.codec import Envelope
from bus.handshake import prove_path
from bus.messages import AudioChunk, Interrupt, LlmDone, Message, Ping, Ready, Say, Transcript, TurnError
from bus.sockets import BusAddress, BusClient

START_TIMEOUT_S = 20.0
MDNS_GROUP = "224.0.0.251"


def _version() -> str:
    try:
        return importlib.metadata.version("rocky-relay")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def lan_address() -> str:
    """This machine's address on the interface that routes to the mDNS group (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((MDNS_GROUP, 5353))
        return str(probe.getsockname()[0])


class WyomingActor(Actor):
    name: ClassVar[str] = "wyoming"
    # Every message of an interrupted turn too: its TurnError (the logger's, after a stall) must reach the
    # client waiting on it, and the interrupt itself is news for it (`on_interrupt`).
    delivered_when_cancelled = (Transcript, Say, AudioChunk, LlmDone, TurnError)

    def __init__(self, settings: WyomingSettings) -> None:
        super().__init__()
        self.settings = settings
        self.address: BusAddress | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.gate: Gate | None = None
        self.port = settings.port
        """The port it listens on (the one taken, when the setting is 0)."""
        self.thread: threading.Thread | None = None
        self.started = threading.Event()
        self.start_error = ""
        self.server: asyncio.Server | None = None
        self.zeroconf: Any = None
        self.clients: set[asyncio.Task[None]] = set()
        self.door: Door | None = None

    def run(self, address: BusAddress) -> None:
        self.address = address
        super().run(address)

    def on_start(self) -> None:
        s = self.settings
        if not 0 <= s.port <= 65535 or s.max_connections < 1 or min(s.op_timeout_s, s.idle_timeout_s) <= 0:
            raise ValueError(f"wyoming: port {s.port} (0-65535), max_connections {s.max_connections} (at least 1) "
                             "and the timeouts (above 0) are out of range")
        self.thread = threading.Thread(target=self._serve, name="wyoming-server", daemon=True)
        self.thread.start()
        if not self.started.wait(START_TIMEOUT_S) or self.start_error:
            raise RuntimeError(f"wyoming server did not start: {self.start_error or 'timeout'}")

    def backend(self) -> str:
        return f"wyoming tcp://{self.settings.host}:{self.port}"

    @on(Transcript, Say, AudioChunk, LlmDone, TurnError)
    def _news(self, msg: Message, payload: bytes) -> None:
        if self.gate is not None and msg.session.startswith(SESSION_PREFIX):
            self.gate.deliver(msg, payload)

    def on_interrupt(self, msg: Interrupt) -> None:
        if self.gate is not None and msg.session.startswith(SESSION_PREFIX):
            self.gate.deliver(msg, b"")

    def on_control(self, env: Envelope) -> None:
        if isinstance(env.msg, Ready) and self.gate is not None:  # what `info` names as our models
            self.gate.backends[env.msg.actor.split("-")[0]] = env.msg.backend

    def on_stop(self) -> None:
        loop = self.loop
        if loop is not None and self.thread is not None and self.thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout=5)
            except Exception:  # stopping must go on: the process ends either way
                self.log.exception("wyoming_close_failed")
            loop.call_soon_threadsafe(loop.stop)
            self.thread.join(timeout=5)

    # --- the server thread -------------------------------------------------------------------
    def _serve(self) -> None:
        assert self.address is not None
        publisher = BusClient(self.address, name="wyoming-out")
        loop = asyncio.new_event_loop()
        try:
            prove_path(publisher)
            publisher.sub.setsockopt(zmq.UNSUBSCRIBE, b"ctl.ping")  # it only publishes
            asyncio.set_event_loop(loop)
            self.gate = Gate(loop, publisher)
            loop.run_until_complete(self._open(self.gate))
        except (OSError, TimeoutError) as exc:
            self.start_error = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, OSError) and exc.errno == 98:
                self.start_error = f"port {self.settings.port} on {self.settings.host} is in use (wyoming.port)"
            self.started.set()
            loop.close()
            publisher.close()
            return
        self.loop = loop
        self.started.set()
        try:
            loop.run_forever()
        finally:
            loop.close()
            publisher.close()

    async def _open(self, gate: Gate) -> None:
        self.door = door = Door(self.settings, gate, _version())
        door.info = lambda: build_info(self.settings, gate.backends, door.version).event()

        def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.get_running_loop().create_task(WyomingHandler(door, reader, writer).run())
            self.clients.add(task)
            task.add_done_callback(self.clients.discard)

        self.server = await asyncio.start_server(connected, host=self.settings.host, port=self.settings.port)
        self.port = self.server.sockets[0].getsockname()[1]
        self.log.info("listening", host=self.settings.host, port=self.port)
        gate.publish(Ping())  # every actor answers Ready with its backend: the models `info` names
        if self.settings.zeroconf:
            await self._announce()

    async def _announce(self) -> None:
        """Register `_wyoming._tcp.local.`; a machine without multicast still serves, it is only not found."""
        try:
            from zeroconf import IPVersion
            from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

            address = self.settings.zeroconf_address or lan_address()
            info = AsyncServiceInfo("_wyoming._tcp.local.", f"{self.settings.zeroconf_name}._wyoming._tcp.local.",
                                    addresses=[socket.inet_aton(address)], port=self.port,
                                    properties={"version": _version()})
            self.zeroconf = AsyncZeroconf(interfaces=[address], ip_version=IPVersion.V4Only)
            await self.zeroconf.async_register_service(info)
            self.zeroconf_info = info
            self.log.info("zeroconf_registered", name=info.name, address=address, port=self.port)
        except (OSError, ValueError, RuntimeError) as exc:
            self.log.warning("zeroconf_failed", reason=str(exc), hint="set wyoming.zeroconf_address, or "
                             "wyoming.zeroconf = false and add the server in Home Assistant by host and port")
            self.zeroconf = None

    async def _close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in [*self.clients, *(self.door.holds if self.door else ())]:
            task.cancel()
        if self.zeroconf is not None:
            await self.zeroconf.async_unregister_all_services()
            await self.zeroconf.async_close()
