"""pi/install.sh for real, in a fresh Debian chroot (pi/check_install.sh): the path a Pi takes, minus the Pi.

The arm64 test is the Pi's own userland run through qemu-user: .ci/run installs qemu-user-static,
binfmt-support and mmdebstrap and registers qemu-aarch64; elsewhere it skips and says what is missing.
Cost on the 2-core development box: see the README's test section (cold: bootstrap included; warm: the
bootstrapped userland comes from ~/.cache/rocky-relay/rootfs/).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
ARM64_LIMIT_S = 900
"""CI's budget for the stage is 12 min; past 15 the run is stopped (and cleaned up) as a failure."""

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="builds a chroot: needs root")
needs_mmdebstrap = pytest.mark.skipif(shutil.which("mmdebstrap") is None or shutil.which("arch-test") is None,
                                      reason="needs mmdebstrap and arch-test (apt-get install mmdebstrap arch-test)")


def binfmt_enabled() -> bool:
    try:
        return BINFMT.read_text().splitlines()[0] == "enabled"
    except (OSError, IndexError):
        return False


def check_install(*args: str, timeout_s: float) -> tuple[int, str]:
    """pi/check_install.sh ARGS; its exit status and output. Past the timeout it gets SIGTERM (its trap
    then stops what runs in the chroot and unmounts it), SIGKILL only if that hangs too."""
    proc = subprocess.Popen([str(ROOT / "pi" / "check_install.sh"), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, cwd=ROOT)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        out += f"\n(stopped after {timeout_s:.0f} s)"
    finally:
        if proc.poll() is None:  # pytest-timeout or Ctrl-C interrupted the wait: still clean up
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(120)
    return proc.returncode, out


@needs_root
@needs_mmdebstrap
def test_install_sh_in_a_fresh_debian_chroot() -> None:
    rc, out = check_install(timeout_s=1200)
    assert rc == 0, out
    assert out.strip().splitlines()[-1] == "check_install: ok", out


@needs_root
@needs_mmdebstrap
@pytest.mark.skipif(not binfmt_enabled(), reason=f"no emulated arm64: {BINFMT} is not enabled (apt-get install "
                    "qemu-user-static binfmt-support; update-binfmts --enable qemu-aarch64; .ci/run does both)")
@pytest.mark.timeout(ARM64_LIMIT_S + 180)
def test_install_sh_on_emulated_arm64_then_the_pi_set_serves_turns_over_curve() -> None:
    then = f"cd {ROOT} && {sys.executable} -m tests.pi_chroot_turns"
    rc, out = check_install("--arch", "arm64", "--then", then, timeout_s=ARM64_LIMIT_S)
    print(out)  # pytest -s shows what each step took and the turns
    assert rc == 0, out
    assert "pi_chroot_turns: 3 of 3 turns ok" in out, out
    assert out.strip().splitlines()[-1] == "check_install: ok", out
