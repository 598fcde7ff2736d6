from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator

import pytest
import zmq

from bus.sockets import BusAddress, run_proxy


@pytest.fixture
def bus_address() -> Iterator[BusAddress]:
    """A real XSUB/XPUB proxy on ipc:// sockets in a fresh temp dir, torn down after the test."""
    folder = tempfile.mkdtemp(prefix="rr-bus-")
    address = BusAddress(pub_addr=f"ipc://{folder}/pub", sub_addr=f"ipc://{folder}/sub")
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    ready = threading.Event()
    thread = threading.Thread(target=run_proxy, args=(address, ctx, ready), daemon=True)
    thread.start()
    assert ready.wait(5), "proxy did not bind"
    try:
        yield address
    finally:
        # term() returns once the proxy's sockets are closed; a hang here means a leaked socket.
        terminator = threading.Thread(target=ctx.term, daemon=True)
        terminator.start()
        terminator.join(5)
        thread.join(5)
        shutil.rmtree(folder, ignore_errors=True)
        assert not thread.is_alive(), "bus proxy did not stop"
