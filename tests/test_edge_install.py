"""The Pi path: the CLI and the pi set with only the edge packages, and keys a service user can read."""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from bus.key_access import service_gid
from bus.keys import add_client, init_store, install_bundle, load_keys

ROOT = Path(__file__).resolve().parents[1]
NOBODY = 65534
"""uid and gid of Debian's nobody / nogroup: a user who is not root and owns nothing here."""


def _name(requirement: str) -> str:
    return re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _closure(names: set[str]) -> set[str]:
    """`names` and every distribution they require (installed ones; optional extras not followed)."""
    seen: set[str] = set()
    todo = [n.lower().replace("_", "-") for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            if "extra ==" not in line:
                todo.append(_name(line))
    return seen


def server_only_modules() -> set[str]:
    """Top-level modules that only the `server` extra brings: what an edge install does not have."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    edge = _closure({_name(r) for r in [*project["dependencies"], *project["optional-dependencies"]["pi"]]})
    server = _closure({_name(r) for r in project["optional-dependencies"]["server"]}) - edge
    return {module for module, dists in metadata.packages_distributions().items()
            if all(d.lower().replace("_", "-") in server for d in dists)}


BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (not in an edge install)", name=name)
        return None
sys.meta_path.insert(0, Block())
"""


def run_edge_only(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """`rocky-relay ARGV` in a fresh interpreter where no server-only module can be imported."""
    blocked = server_only_modules()
    assert {"psutil", "faster_whisper", "llama_cpp"} <= blocked, sorted(blocked)  # the list is derived right
    code = f"BLOCKED = {sorted(blocked)!r}\n{BLOCKER}\nfrom launch.cli import main\nsys.exit(main({list(argv)!r}))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env=env)


def test_the_cli_starts_and_the_pi_set_builds_with_only_the_edge_packages(tmp_path: Path) -> None:
    result = run_edge_only("--help")
    assert result.returncode == 0 and "launch" in result.stdout, result.stderr[-2000:]
    edge = (ROOT / "pi" / "edge.toml").read_text()  # as pi/install.sh installs it, no keys yet
    (tmp_path / "edge.toml").write_text(edge)
    result = run_edge_only("--config", str(tmp_path / "edge.toml"), "launch", "--check", "pi", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "mic, player, button, leds import and configure" in result.stderr


def test_a_command_that_needs_a_server_package_names_the_extra(tmp_path: Path) -> None:
    result = run_edge_only("soak", "--turns", "1", cwd=tmp_path)
    assert result.returncode == 2 and "rocky-relay[server]" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


@pytest.fixture
def store() -> Iterator[tuple[Path, Path]]:
    """A server key store and a satellite bundle, under a folder any user may traverse (as /etc is)."""
    folder = Path(tempfile.mkdtemp(prefix="rr-keys-"))
    os.chmod(folder, 0o755)
    try:
        init_store(folder / "server")
        yield folder, add_client(folder / "server", "kitchen")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def python_for_nobody() -> list[str]:
    """The system interpreter, which user nobody may run (ours may live under /root, closed to others)."""
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not system.is_file():
        pytest.skip(f"{system} is missing: no interpreter of this version that user nobody can run")
    return [str(system)]


def load_as_nobody(keys: Path) -> subprocess.CompletedProcess[str]:
    site = next(p for p in sys.path if p.endswith("site-packages"))
    code = ("import sys\nfrom bus.keys import load_keys\nfrom bus.security import BusSecurityError\n"
            f"try:\n    print(load_keys({str(keys)!r}).name)\n"
            "except BusSecurityError as exc:\n    print(exc, file=sys.stderr); sys.exit(2)\n")
    return subprocess.run([*python_for_nobody(), "-c", code], capture_output=True, text=True, timeout=60, cwd="/",
                          user=NOBODY, group=NOBODY, extra_groups=[],
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{site}"})


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="installs keys for another user: needs root")


@needs_root
def test_keys_installed_by_root_for_the_service_group_are_readable_by_it(store: tuple[Path, Path]) -> None:
    folder, bundle = store
    keys = folder / "etc-keys"
    assert install_bundle(bundle, keys, gid=NOBODY) == "kitchen"
    assert (keys.stat().st_mode & 0o777, keys.stat().st_gid) == (0o750, NOBODY)
    secret = keys / "kitchen.key_secret"
    assert (secret.stat().st_mode & 0o777, secret.stat().st_uid, secret.stat().st_gid) == (0o640, 0, NOBODY)
    result = load_as_nobody(keys)
    assert result.returncode == 0 and result.stdout.strip() == "kitchen", result.stderr[-2000:]
    assert load_keys(keys).name == "kitchen"


@needs_root
def test_a_service_user_who_may_not_read_the_keys_is_told_what_to_run(store: tuple[Path, Path]) -> None:
    folder, bundle = store
    keys = folder / "etc-keys"
    install_bundle(bundle, keys)  # the owner (root) only
    result = load_as_nobody(keys)
    assert result.returncode == 2, (result.stdout, result.stderr[-2000:])
    assert "may not read" in result.stderr and "install --group" in result.stderr
    assert "Traceback" not in result.stderr and "PermissionError" not in result.stderr


@needs_root
def test_keys_install_as_root_defaults_to_the_service_group_when_it_exists() -> None:
    import grp

    try:
        expected = grp.getgrnam("rocky-relay").gr_gid
    except KeyError:
        expected = -1
    assert service_gid(None) == expected
    assert service_gid("") == -1
    assert service_gid("nogroup") == NOBODY
    with pytest.raises(ValueError, match="no such group"):
        service_gid("no-such-group-here")


def test_the_unit_runs_as_the_group_keys_install_uses() -> None:
    from bus.key_access import SERVICE_GROUP

    unit = (ROOT / "pi" / "rocky-relay-edge.service").read_text()
    assert f"Group={SERVICE_GROUP}\n" in unit


