"""How the turn driver (the CLI's wait for a turn) ends when no record comes: it says what happened."""

from __future__ import annotations

import pytest

from bus.messages import LlmDone, TurnError
from bus.sockets import BusAddress
from launch.config import load_config
from launch.turns import ERROR_GRACE_S, RECORD_MARGIN_S, TurnDriver, record_wait_s


def test_the_driver_waits_longer_than_the_logger() -> None:
    config = load_config(None, ["logger.turn_timeout_s=30"])
    assert record_wait_s(config) == 30 + RECORD_MARGIN_S
    assert record_wait_s(config) > config.section("logger").turn_timeout_s > config.section("logger").stage_timeout_s


def test_a_stage_error_with_no_record_is_reported_by_the_driver(bus_address: BusAddress) -> None:
    """A logger that never saw the turn begin writes no record of its error: the driver says the error."""
    driver = TurnDriver(bus_address, wait_s=60)
    try:
        turn = driver._type("hello")  # no logger on this bus
        driver.client.publish(TurnError(session="local", turn=turn, stage="tts", reason="tts failed: boom"))
        record = driver.wait_record(turn)
        assert record["status"] == "error" and record["local_only"]
        assert record["error"]["stage"] == "tts"
        assert record["error"]["reason"].startswith("tts failed: boom (the logger wrote no record")
        assert f"{ERROR_GRACE_S:g} s" in record["error"]["reason"]
    finally:
        driver.close()


def test_no_record_at_all_is_a_timeout_naming_the_last_news(bus_address: BusAddress) -> None:
    driver = TurnDriver(bus_address, wait_s=1.0)
    try:
        turn = driver._type("hello")
        driver.client.publish(LlmDone(session="local", turn=turn, text="hi", tokens=1))
        with pytest.raises(TimeoutError, match=r"no record from the logger 1 s after the last news of the turn "
                                               r"\(last heard: llm\.done.*\).*logs/actors/logger\.log"):
            driver.wait_record(turn)
    finally:
        driver.close()
