"""A toy actor added the way the README says: one row for the table and its class (run by test_table.py).

`python -m tests.toy_actor` registers the row, then goes through the real config loader, the process
builder and a real bus, and prints what it saw as JSON.
"""

from __future__ import annotations

import json
import tempfile
import threading
from dataclasses import asdict, dataclass
from typing import ClassVar

import zmq

from actors.base import Actor
from actors.table import ActorSpec, register
from bus.codec import Envelope
from bus.messages import ButtonEvent, Say
from bus.proxy import run_proxy
from bus.sockets import BusAddress


@dataclass
class ToySettings:
    greeting: str = "hello"
    """What the toy says when the button goes down."""


class ToyActor(Actor):
    name: ClassVar[str] = "toy"
    topics = ("button",)

    def __init__(self, settings: ToySettings) -> None:
        super().__init__()
        self.settings = settings

    def handle(self, env: Envelope) -> None:
        if isinstance(env.msg, ButtonEvent) and env.msg.pressed:
            self.publish(Say(session=env.msg.session, turn=env.msg.turn, text=self.settings.greeting, index=0))


def main() -> None:
    register(ActorSpec("toy", "tests.toy_actor:ToyActor", ToySettings, (ButtonEvent,), (Say,), "server",
                       sets=("local",)))
    # Imported only now: the config reads the table once.
    from launch.actor_main import build_actor
    from launch.config import DEFAULT_SETS, load_config
    from tests.helpers import of_type, run_actor

    config = load_config(None, ["toy.greeting=hi there"])
    actor = build_actor("toy", config)
    folder = tempfile.mkdtemp(prefix="rr-toy-")
    address = BusAddress(pub_addr=f"ipc://{folder}/pub", sub_addr=f"ipc://{folder}/sub")
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    ready = threading.Event()
    threading.Thread(target=run_proxy, args=(address, ctx, ready), daemon=True).start()
    if not ready.wait(5):
        raise SystemExit("proxy did not bind")
    got = run_actor(actor, address, [ButtonEvent(turn=7, pressed=True)], expect=[Say], listen=["say"])
    print(json.dumps({"said": [m.text for m in of_type(got, Say)], "in_local_set": "toy" in DEFAULT_SETS["local"],
                      "config": asdict(config.section("toy"))}))


if __name__ == "__main__":
    main()
