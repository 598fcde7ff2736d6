"""The logger forgets satellites lost long ago: every closed browser tab is one that never comes back."""

from __future__ import annotations

from actors.link import FORGET_LOST_AFTER_S, LinkWatch, forget_long_lost


def test_a_long_lost_link_is_forgotten_and_a_live_or_recent_one_kept() -> None:
    watches = {name: LinkWatch(timeout_s=3.5) for name in ("live", "recently-lost", "long-lost", "never-beat")}
    watches["live"].beat(1000.0)
    watches["recently-lost"].beat(1000.0 - 10.0)
    watches["long-lost"].beat(1000.0 - FORGET_LOST_AFTER_S - 10.0)
    for watch in watches.values():
        watch.poll(1000.0)  # declares the two silent ones lost
    assert forget_long_lost(watches, 1000.0) == ["long-lost"]
    assert sorted(watches) == ["live", "never-beat", "recently-lost"]
    watches["recently-lost"].beat(1001.0)  # a tab back in time keeps its watch
    assert forget_long_lost(watches, 1000.0 + FORGET_LOST_AFTER_S) == []
