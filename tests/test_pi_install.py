"""pi/install.sh for real, in a fresh Debian chroot (pi/check_install.sh): the path a Pi takes, minus the Pi."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(os.geteuid() != 0, reason="builds a chroot: needs root")
@pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="needs mmdebstrap (apt-get install mmdebstrap)")
def test_install_sh_in_a_fresh_debian_chroot() -> None:
    result = subprocess.run([str(ROOT / "pi" / "check_install.sh")], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "check_install: ok", result.stdout
