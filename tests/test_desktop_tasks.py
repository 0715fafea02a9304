"""desktop-mini's catalog and the OSWorld-style subset: no X server needed."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from orchard_envs.agents.desktop_oracle import plan
from orchard_envs.desktop import osworld
from orchard_envs.errors import ConfigError
from orchard_envs.tasks.desktop.catalog import load_suite
from orchard_envs.tasks.desktop.families import FAMILIES


def test_the_suite_has_sixty_tasks_or_more_in_every_family_and_both_splits():
    tasks = load_suite("desktop-mini")
    assert len(tasks) >= 60 and len({t.task_id for t in tasks}) == len(tasks)
    by_split = Counter((t.family, t.split) for t in tasks)
    for family in FAMILIES:
        assert by_split[(family, "train")] and by_split[(family, "test")]
    assert len(load_suite("desktop-mini", "train")) + len(load_suite("desktop-mini", "test")) == len(tasks)


def test_tasks_are_osworld_json_and_hide_the_grader_from_the_agent():
    for task in load_suite("desktop-mini"):
        document = json.loads(json.dumps(task.to_osworld()))
        assert set(document) == {"id", "instruction", "config", "evaluator"}
        assert "evaluator" not in task.to_info() and "oracle" not in task.to_info()
        assert task.infeasible == (task.evaluator["func"] == "infeasible")


def test_every_oracle_plan_ends_with_done_or_fail_and_uses_real_input_tools():
    for task in load_suite("desktop-mini"):
        actions = plan(task, ["click", "typing", "hotkey", "press", "wait", "done", "fail"])
        assert actions[-1]["name"] == ("fail" if task.infeasible else "done")
        coded = plan(task, ["run_code", "wait", "done", "fail"])
        assert {a["name"] for a in coded} <= {"run_code", "wait", "done", "fail"}


def test_unknown_steps_and_metrics_are_refused_with_the_close_match():
    with pytest.raises(ConfigError, match="did you mean 'execute'"):
        osworld.check_task([{"type": "execut", "parameters": {}}], {"func": "infeasible"})
    with pytest.raises(ConfigError, match="unknown metric"):
        osworld.check_task([], {"func": "compare_table"})
    with pytest.raises(ConfigError, match="unknown desktop suite"):
        load_suite("desktop-maxi")


def test_metrics_on_known_inputs():
    assert osworld.compare_text_file(b"a\r\nb\n\n", {"text": "a\nb"})[0] == 1.0
    assert osworld.compare_text_file(b"a b", {"text": "a\nb"})[0] == 0.0
    assert osworld.compare_text_file(None, {"text": ""})[0] == 0.0
    assert osworld.check_cells({"B1": "15"}, {"cells": {"B1": "15.0"}})[0] == 1.0
    assert osworld.check_cells({"B1": "16"}, {"cells": {"B1": "15"}})[0] == 0.0
    assert osworld.check_dir(["b.txt"], {"present": ["b.txt"], "absent": ["a.txt"]})[0] == 1.0
    assert osworld.check_dir(["a.txt", "b.txt"], {"present": ["b.txt"], "absent": ["a.txt"]})[0] == 0.0
    assert [osworld.column_name(i) for i in (0, 25, 26, 27)] == ["A", "Z", "AA", "AB"]


def test_infeasible_scores_one_only_on_fail_and_fail_scores_zero_elsewhere():
    assert osworld.evaluate({"func": "infeasible"}, None, None, failed=True)[0] == 1.0
    assert osworld.evaluate({"func": "infeasible"}, None, None, failed=False)[0] == 0.0
    feasible = {"func": "compare_text_file", "result": {"type": "vm_file", "path": "x"}}
    assert osworld.evaluate(feasible, None, None, failed=True)[0] == 0.0
