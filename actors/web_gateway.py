"""The browser gateway: one page and a WebSocket onto the bus, each connected tab a satellite of its own.

The actor's loop (this process's main thread) reads the bus and routes each message to the one tab whose
session it carries; an asyncio thread runs the `websockets` server, which serves the page's few static files
over the same port (HTTP or, with `web.https` or off loopback, HTTPS) and one `Tab` (actors/web_tab.py) per
socket. That thread owns its own publishing bus client, so whatever a tab publishes leaves in order.

Admission, before any bus access: a socket's first frame must be `{"type": "hello"}`, carrying the pairing
token when the gateway is secure (compared in constant time; the token is never logged); a WebSocket from a
page of another origin is refused at the handshake (another site open in the same browser must not drive
the assistant); tabs beyond `max_tabs` are refused. A tab whose page stops answering heartbeats is closed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from actors.base import Actor
from actors.link import LinkWatch
from actors.web_http import answer, load_pages
from actors.web_settings import SESSION_PREFIX, WebSettings, certificate, pairing_token, token_matches
from actors.web_tab import MAX_AUDIO_MESSAGE, Tab
from bus.codec import Envelope
from bus.handshake import prove_path
from bus.messages import Heartbeat, TurnError, TurnRecord, now
from bus.sockets import BusAddress, BusClient

HELLO_TIMEOUT_S = 5.0
QUEUE_LIMIT = 2000
"""Frames waiting for a slow tab; past it the tab is closed rather than the gateway growing without end."""
REFUSED_TOKEN = 4401
REFUSED_BUSY = 4429
CLOSED_SILENT = 4408


class Gateway:
    """The asyncio side: the server, the tabs, and the bus client they publish through."""

    def __init__(self, settings: WebSettings, address: BusAddress, log: Any, link_timeout_s: float) -> None:
        self.settings = settings
        self.address = address
        self.log = log
        self.link_timeout_s = link_timeout_s
        self.token = pairing_token(settings) if settings.secure() else ""
        self.ssl: ssl.SSLContext | None = None
        cert: Path | None = None
        if settings.secure():
            cert, key = certificate(settings)
            self.ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ssl.load_cert_chain(cert, key)
        self.pages = load_pages(cert)
        self.tabs: dict[str, Tab] = {}
        self.sockets: dict[str, ServerConnection] = {}
        self.closing: set[asyncio.Future[None]] = set()
        """Closes under way (held so the loop does not drop them half done)."""
        self.loop: asyncio.AbstractEventLoop | None = None
        self.out: BusClient | None = None
        self.server: Server | None = None
        self.port = settings.port
        """The port it listens on (the one the system chose when the setting is 0)."""
        self.started = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="web-gateway", daemon=True)

    # --- from the actor's thread -------------------------------------------------------
    def start(self, timeout_s: float = 20.0) -> None:
        self.thread.start()
        if not self.started.wait(timeout_s):
            raise RuntimeError(f"web gateway did not start within {timeout_s:g} s")
        if self.error is not None:
            raise RuntimeError(f"web gateway could not start: {self.error}") from self.error

    def deliver(self, env: Envelope) -> None:
        self._call(self._route, env)

    def server_beat(self, beat: Heartbeat) -> None:
        """Each tab answers the server's beat for its session, so the logger watches it as a satellite."""
        self._call(self._each, lambda tab: tab.server_beat(beat))

    def server_link(self, up: bool) -> None:
        self._call(self._each, lambda tab: tab.server_link(up))

    def _each(self, work: Callable[[Tab], None]) -> None:
        for tab in list(self.tabs.values()):
            self._safely(tab, lambda t=tab: work(t))

    def stop(self) -> None:
        if self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self._shutdown)
            self.thread.join(10)

    def _call(self, fn: Any, arg: Any) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, arg)

    # --- the asyncio thread --------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start(); after start the actor's log has it
            self.error = exc
            self.log.exception("web_gateway_failed")
        finally:
            self.started.set()
            if self.out is not None:
                self.out.close()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.out = BusClient(self.address, name="web-out")
        prove_path(self.out)
        async with serve(self._connection, self.settings.host, self.settings.port, ssl=self.ssl,
                         process_request=self._http, max_size=MAX_AUDIO_MESSAGE + 1024,
                         ping_interval=None, server_header="rocky-relay") as server:
            self.server = server
            self.port = server.sockets[0].getsockname()[1]
            self.started.set()
            beats = asyncio.create_task(self._beats())
            await server.wait_closed()
            beats.cancel()

    def _shutdown(self) -> None:
        if self.server is not None:
            self.server.close()

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        return answer(connection, request, self.pages, self.log, loopback_only=not self.token)

    def _route(self, env: Envelope) -> None:
        tab = self.tabs.get(env.msg.session)
        if tab is not None:
            self._safely(tab, lambda: tab.from_bus(env))

    def _safely(self, tab: Tab, work: Any) -> None:
        try:
            work()
        except OverflowError as exc:  # it cannot keep up: close it rather than hold its backlog
            self.log.warning("web_tab_too_slow", session=tab.session, error=str(exc))
            self._close_later(tab.session, REFUSED_BUSY, "this tab reads too slowly")
        except Exception:  # one tab's bad luck is logged; the gateway and the other tabs go on
            self.log.exception("web_tab_failed", session=tab.session)

    def _close_later(self, session: str, code: int, reason: str) -> None:
        """Close a tab's socket without waiting here for its closing handshake (up to 10 s with a dead peer):
        the caller serves every other tab."""
        ws = self.sockets.get(session)
        if ws is not None and ws.state is State.OPEN:  # once: a silent tab stays silent while it closes
            task = asyncio.ensure_future(ws.close(code, reason))
            self.closing.add(task)
            task.add_done_callback(self.closing.discard)

    async def _beats(self) -> None:
        """Each tab's heartbeat; a page silent for the link timeout is gone (a phone that slept, a lost
        Wi-Fi): its socket is closed, which ends what it had under way."""
        while True:
            await asyncio.sleep(1.0)
            for session, tab in list(self.tabs.items()):
                if tab.last_answer_age() > self.link_timeout_s:
                    self.log.warning("web_tab_silent", session=session)
                    self._close_later(session, CLOSED_SILENT, "no answer to heartbeats")
                else:
                    self._safely(tab, tab.beat)

    async def _admit(self, ws: ServerConnection) -> bool:
        """The hello (and token) before anything else; a refusal closes the socket with the reason."""
        if len(self.tabs) >= self.settings.max_tabs:
            await ws.close(REFUSED_BUSY, f"{self.settings.max_tabs} tabs are connected already")
            return False
        try:
            first = await asyncio.wait_for(ws.recv(), HELLO_TIMEOUT_S)
            hello = json.loads(first) if isinstance(first, str) else None
        except (TimeoutError, ConnectionClosed, json.JSONDecodeError, RecursionError):
            hello = None
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            await ws.close(REFUSED_TOKEN, "the first frame must be the page's hello")
            return False
        if self.token and not token_matches(hello.get("token"), self.token):
            self.log.warning("web_socket_refused", why="pairing token missing or wrong", peer=_peer(ws))
            await ws.close(REFUSED_TOKEN, "pairing token missing or wrong")
            return False
        return True

    async def _connection(self, ws: ServerConnection) -> None:
        if not await self._admit(ws):
            return
        session = SESSION_PREFIX + secrets.token_hex(8)
        queue: asyncio.Queue[str | bytes] = asyncio.Queue()

        def to_page(frame: str | bytes) -> None:
            if queue.qsize() >= QUEUE_LIMIT:
                raise OverflowError(f"tab {session} reads too slowly")
            queue.put_nowait(frame)

        assert self.out is not None
        tab = Tab(session, self.out, to_page, self.settings, peer=_peer(ws))
        writer = asyncio.create_task(self._write(ws, queue))
        self.tabs[session], self.sockets[session] = tab, ws
        self.log.info("web_tab_open", session=session, peer=_peer(ws), tabs=len(self.tabs))
        to_page(json.dumps({"type": "hello", "session": session, "rate": 16000}))
        try:
            async for frame in ws:
                if isinstance(frame, bytes):
                    self._safely(tab, lambda f=frame: tab.from_page_audio(f))
                else:
                    self._safely(tab, lambda f=frame: tab.from_page_text(f))
        except ConnectionClosed:
            pass
        finally:
            del self.tabs[session], self.sockets[session]
            self._safely(tab, tab.close)
            writer.cancel()
            self.log.info("web_tab_closed", session=session, tabs=len(self.tabs))

    async def _write(self, ws: ServerConnection, queue: asyncio.Queue[str | bytes]) -> None:
        try:
            while True:
                await ws.send(await queue.get())
        except ConnectionClosed:
            pass


def _peer(ws: ServerConnection) -> str:
    address = ws.remote_address
    return str(address[0]) if address else ""


class WebGatewayActor(Actor):
    name: ClassVar[str] = "web"
    topics = ("stt.", "say", "audio.out", "turn.", "llm.tool")
    """Partial and final transcripts, spoken clauses, reply audio, errors, records and tools used (a timer
    ringing starts a turn the tab plays): of every session, routed here to the one tab whose session it is."""
    delivered_when_cancelled = (TurnRecord, TurnError)
    """A barge-in cancels the turn here too (the tab sent the interrupt), but the page still shows its end."""

    def __init__(self, settings: WebSettings) -> None:
        super().__init__()
        self.settings = settings
        self.address: BusAddress | None = None
        self.gateway: Gateway | None = None
        self.server_watch = LinkWatch(self.link_timeout_s)

    def run(self, address: BusAddress) -> None:
        self.address = address
        super().run(address)

    def on_start(self) -> None:
        assert self.address is not None
        self.gateway = Gateway(self.settings, self.address, self.log, self.link_timeout_s)
        self.gateway.start()

    def backend(self) -> str:
        scheme = "https" if self.settings.secure() else "http"
        port = self.gateway.port if self.gateway else self.settings.port
        return f"{scheme}://{self.settings.host}:{port}/"

    def watch_links(self, timeout_s: float) -> None:
        super().watch_links(timeout_s)
        self.server_watch.timeout_s = timeout_s

    def handle(self, env: Envelope) -> None:
        if self.gateway is not None and env.msg.session.startswith(SESSION_PREFIX):
            self.gateway.deliver(env)

    def on_control(self, env: Envelope) -> None:
        beat = env.msg
        if isinstance(beat, Heartbeat) and beat.role == "server" and self.gateway is not None:
            if self.server_watch.beat(now()):
                self.gateway.server_link(True)
            self.gateway.server_beat(beat)

    def on_idle(self) -> None:
        if self.server_watch.poll(now()) and self.gateway is not None:
            self.log.warning("server_link_lost")
            self.gateway.server_link(False)

    def on_stop(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
