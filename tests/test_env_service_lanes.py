"""The service's job lanes: per-sandbox order and the pending-job count a 503 is decided on."""

from __future__ import annotations

import threading

import pytest

from orchard_envs.env_service.jobs import Lanes, Overloaded


def test_a_finished_job_frees_its_slot_before_its_waiter_wakes() -> None:
    # regression: the waiter used to wake first and its next submit could see a full service (503)
    lanes = Lanes(max_workers=1, max_pending=1)
    pending_when_woken: list[int] = []
    try:
        gate = threading.Event()
        future = lanes.submit("sandbox", lambda: gate.wait(5) and "done")
        future.add_done_callback(lambda _: pending_when_woken.append(lanes.pending))
        gate.set()
        assert future.result(timeout=5) == "done"
        assert pending_when_woken == [0]
        assert lanes.submit("sandbox", lambda: "next").result(timeout=5) == "next"
    finally:
        lanes.shutdown()


def test_a_lane_runs_in_order_and_errors_reach_their_own_future() -> None:
    lanes = Lanes(max_workers=2, max_pending=8)
    seen: list[int] = []
    gate = threading.Event()
    try:
        first = lanes.submit("a", lambda: (gate.wait(5), seen.append(1)))
        failing = lanes.submit("a", lambda: 1 / 0)
        last = lanes.submit("a", lambda: seen.append(3))
        gate.set()
        first.result(timeout=5)
        with pytest.raises(ZeroDivisionError):
            failing.result(timeout=5)
        last.result(timeout=5)
        assert seen == [1, 3] and lanes.pending == 0
    finally:
        lanes.shutdown()


def test_over_the_limit_is_overloaded_and_cancelled_jobs_free_their_slots() -> None:
    lanes = Lanes(max_workers=1, max_pending=2)
    gate = threading.Event()
    try:
        running = lanes.submit("a", lambda: gate.wait(5))
        queued = lanes.submit("a", lambda: "never")
        with pytest.raises(Overloaded, match="limit is 2"):
            lanes.submit("b", lambda: None)
        assert lanes.cancel_lane("a") == 1 and queued.cancelled()
        gate.set()
        assert running.result(timeout=5) is True
        assert lanes.submit("b", lambda: "ok").result(timeout=5) == "ok"
    finally:
        lanes.shutdown()
