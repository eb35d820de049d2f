"""The runner's "N scheduled runs skipped (at capacity)" line, repeated at every poll while more
runs are due than the runner limit, is shown once a minute instead of once a second."""

from __future__ import annotations

import inspect
import logging

import pytest
from prefect.runner import _scheduled_run_poller

from hitl.prefect_env import RUNNER_AT_CAPACITY, RepeatThrottle, throttle_runner_capacity_messages


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_template_is_the_one_prefect_logs() -> None:
    # If Prefect rewords the line, the throttle would silently stop matching it.
    assert f'"{RUNNER_AT_CAPACITY}"' in inspect.getsource(_scheduled_run_poller)


def test_repeats_pass_once_per_period_and_other_lines_always(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    logger = logging.getLogger("prefect.runner")
    throttle = RepeatThrottle(RUNNER_AT_CAPACITY, 60, clock)
    logger.addFilter(throttle)
    try:
        with caplog.at_level(logging.INFO, logger="prefect.runner"):
            for second in range(150):  # a poll each second for two and a half minutes
                clock.now = 1000.0 + second
                logger.info(RUNNER_AT_CAPACITY, 52 - second // 3)
                if second % 50 == 0:
                    logger.info("Runner 'x' submitting flow run '%s'", second)
    finally:
        logger.removeFilter(throttle)
    capacity = [r.getMessage() for r in caplog.records if "at capacity" in r.getMessage()]
    assert capacity == [
        "52 scheduled runs skipped (at capacity)",  # at 0 s
        "32 scheduled runs skipped (at capacity)",  # at 60 s
        "12 scheduled runs skipped (at capacity)",  # at 120 s
    ]
    assert sum("submitting" in r.getMessage() for r in caplog.records) == 3


def test_throttle_is_attached_to_the_runner_logger(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("prefect.runner")
    throttle = throttle_runner_capacity_messages(every=3600)
    try:
        with caplog.at_level(logging.INFO, logger="prefect.runner"):
            for _ in range(5):
                logger.info(RUNNER_AT_CAPACITY, 7)
    finally:
        logger.removeFilter(throttle)
    assert [r.getMessage() for r in caplog.records] == ["7 scheduled runs skipped (at capacity)"]
