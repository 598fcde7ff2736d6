from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from actors.llm_memory import STATE_DIR_ENV
from bus.proxy import run_proxy
from bus.sockets import BusAddress


@pytest.fixture(autouse=True, scope="session")
def _state_of_the_session(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Conversation memory of the sets module fixtures launch goes to a folder of this run, not ./logs."""
    os.environ[STATE_DIR_ENV] = str(tmp_path_factory.mktemp("state"))


@pytest.fixture
def set_dir() -> Iterator[Path]:
    """A folder for a set a test launches (bus sockets, logs); afterwards any process still naming it is
    killed, even when the test failed before its supervisor stopped, and the folder is removed."""
    from tests.helpers import processes_mentioning

    folder = Path(tempfile.mkdtemp(prefix="rr-set-"))
    try:
        yield folder
    finally:
        for pid in processes_mentioning(str(folder)):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _state_of_the_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's own actors remember only that test's conversation."""
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "state"))


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
