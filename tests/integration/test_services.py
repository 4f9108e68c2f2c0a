"""Supervision of the worker and scheduler processes (worker.services, used by `crs-alert run`)."""

from __future__ import annotations

import os
import time

from tests.integration.helpers import wait_for
from worker.services import Services


def test_a_component_that_exits_is_started_again_then_given_up_on(tmp_path):
    """A scheduler given a bad flag exits at once (status 2): it is started again each time, until
    it has been restarted max_restarts times within the window; then it is reported, left stopped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRS_")}
    services = Services(env, components=("scheduler",), extra_args={"scheduler": ["--no-such-flag"]},
                        log_path=tmp_path / "services.log").start()
    try:
        first_pid = services.procs["scheduler"].pid
        for _ in range(2):
            wait_for(lambda: services.dead(), 30, what="the scheduler to exit")
            restarted, given_up = services.revive(max_restarts=2, window_s=60)
            assert restarted == {"scheduler": 2} and given_up == []
        assert services.procs["scheduler"].pid != first_pid
        wait_for(lambda: services.dead(), 30, what="the scheduler to exit a third time")
        restarted, given_up = services.revive(max_restarts=2, window_s=60)
        assert restarted == {} and given_up == ["scheduler"]
        # once the window has passed, it may be started again
        restarted, given_up = services.revive(max_restarts=2, window_s=60, now=time.monotonic() + 61)
        assert restarted == {"scheduler": 2} and given_up == []
    finally:
        services.stop(timeout=10)
    assert "unrecognized arguments: --no-such-flag" in (tmp_path / "services.log").read_text()
