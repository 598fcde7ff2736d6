"""`rocky-relay doctor` on this machine: every section reported, and real faults caught with their fix."""

from __future__ import annotations

import contextlib
import platform
import socket
from collections.abc import Iterator

import pytest

from bus.sockets import BusAddress
from launch.doctor import check_cpu
from tests.helpers import run_cli

SECTIONS = ("python", "audio", "models", "bus", "keys", "cpu", "llama", "disk")


@pytest.fixture(autouse=True)
def _no_bus_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROCKY_RELAY_BUS", raising=False)


def run_doctor(*argv: str) -> tuple[int, str]:
    """`rocky-relay --config EMPTY ARGV... doctor`: exit code and stdout."""
    return run_cli(*argv, "doctor")


def finding(output: str, status: str, *words: str) -> str:
    """The line of the first `status` finding that holds every word, with its fix line if any."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(status) and all(w in line for w in words):
            following = lines[i + 1] if i + 1 < len(lines) else ""
            return line + ("\n" + following if following.strip().startswith("fix:") else "")
    raise AssertionError(f"no {status} line with {words} in:\n{output}")


@contextlib.contextmanager
def listening_sockets(count: int) -> Iterator[list[int]]:
    """Plain TCP listeners on loopback: ports held by a program that is not a bus proxy."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        yield [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def test_doctor_on_this_machine_reports_every_section() -> None:
    code, output = run_doctor()
    headers = [ln[1:-1] for ln in output.splitlines() if ln.startswith("[")]
    assert headers == list(SECTIONS), output
    assert finding(output, "OK", "Python 3.")
    models = output.split("[models]\n")[1].split("\n[")[0]
    for key in ("stt  base", "llm  qwen2.5-1.5b", "tts  joe-medium"):
        assert key in models, output  # each configured model has its line (OK, or WARN when not prepared)
    summary = output.splitlines()[-1]
    assert summary.startswith("doctor: ") and summary.endswith(" fail")
    assert code == (1 if "\n  FAIL" in output else 0), output


def test_a_missing_model_path_fails_with_the_fix() -> None:
    code, output = run_doctor("--set", "llm.model=/nonexistent/rocky/model.gguf")
    assert code == 1
    line = finding(output, "FAIL", "/nonexistent/rocky/model.gguf", "does not exist")
    assert "fix: point llm.model at a good file, or drop the setting to use the default" in line


def test_a_bad_bus_address_fails() -> None:
    code, output = run_doctor("--set", "bus.pub=tcp://127.0.0.1:notaport")
    assert code == 1
    line = finding(output, "FAIL", "bus.pub", "expected tcp://HOST:PORT or ipc://PATH")
    assert "fix: --set bus.pub=tcp://127.0.0.1:7750" in line


def test_a_running_proxy_is_fine(bus_address: BusAddress) -> None:
    _code, output = run_doctor("--set", f"bus.pub={bus_address.pub_addr}", "--set", f"bus.sub={bus_address.sub_addr}")
    assert finding(output, "OK", "bus.pub", "a Rocky Relay proxy is running there")
    assert finding(output, "OK", "bus.sub", "a Rocky Relay proxy is running there")
    assert finding(output, "OK", "loopback bus: no keys needed")


def test_ports_held_by_another_program_fail() -> None:
    with listening_sockets(2) as (pub, sub):
        code, output = run_doctor("--set", f"bus.pub=tcp://127.0.0.1:{pub}", "--set", f"bus.sub=tcp://127.0.0.1:{sub}")
    assert code == 1
    line = finding(output, "FAIL", f"127.0.0.1:{pub}", "not a Rocky Relay proxy")
    assert f"sport = :{pub}" in line


def test_a_lan_bus_without_keys_fails() -> None:
    code, output = run_doctor("--set", "bus.pub=tcp://192.0.2.1:7750", "--set", "bus.sub=tcp://192.0.2.1:7751")
    assert code == 1
    assert "rocky-relay keys init" in finding(output, "FAIL", "without CURVE keys")


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 flags only")
def test_a_cpu_without_avx2_needs_a_rebuild() -> None:
    [bad] = check_cpu({"avx", "f16c", "sse4_2"})
    assert bad.status == "fail" and "avx2, fma" in bad.text
    assert "-DGGML_AVX2=OFF" in bad.fix and "--force-reinstall llama-cpp-python==" in bad.fix
    [good] = check_cpu({"avx", "avx2", "fma", "f16c"})
    assert good.status == "ok"
