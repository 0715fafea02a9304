"""The web-mini suite: its size and splits, the generator's determinism, the graders on known states, and
the oracle agent's step resolution on a rendered AX tree."""

from __future__ import annotations

import collections
import json
import random

import pytest

from orchard_envs.agents.web_oracle import WebOracleAgent, observation_text, step_action
from orchard_envs.errors import ConfigError
from orchard_envs.tasks.web.catalog import load_suite
from orchard_envs.tasks.web.families import FAMILIES
from orchard_envs.tasks.web.families.common import SEEDS
from orchard_envs.tasks.web.generate import generate_suite
from orchard_envs.tasks.web.grading import answer_matches, grade_state, normalise
from orchard_envs.tasks.web.sites import shop_data
from orchard_envs.tasks.web.task import WebTask, dumps
from orchard_envs.web.axtree import AXNode, render_axtree


def test_suite_size_splits_and_infeasible_share():
    tasks = load_suite("web-mini")
    assert len(tasks) >= 120
    assert len({t.task_id for t in tasks}) == len(tasks)
    per_family = collections.Counter((t.family, t.split) for t in tasks)
    for family in FAMILIES:
        assert per_family[(family, "train")] >= 1 and per_family[(family, "test")] >= 1, family
    assert {t.site for t in tasks} == {"shop", "mail", "travel", "wiki"}
    infeasible = [t for t in tasks if t.infeasible]
    assert 10 <= len(infeasible) < len(tasks) / 3
    assert all(t.oracle[-1]["do"] == "infeasible" for t in infeasible)
    assert all(t.oracle[-1]["do"] == "done" for t in tasks if not t.infeasible)
    assert len(load_suite("web-mini", split="test")) + len(load_suite("web-mini", split="train")) == len(
        tasks
    )


def test_bundled_suite_is_what_the_generator_writes():
    bundled = [dumps(t) for t in load_suite("web-mini")]
    assert [dumps(t) for t in generate_suite(0)] == bundled
    assert [dumps(t) for t in generate_suite(1)] != bundled


def test_train_and_test_differ_in_values_and_phrasing():
    tasks = load_suite("web-mini")
    train = [t for t in tasks if t.split == "train"]
    test = [t for t in tasks if t.split == "test"]
    assert {t.seed for t in train} <= set(SEEDS["train"]) and {t.seed for t in test} <= set(SEEDS["test"])
    assert not {t.instruction for t in train} & {t.instruction for t in test}
    first_words = collections.defaultdict(lambda: collections.defaultdict(set))
    for t in tasks:
        first_words[t.family][t.split].add(" ".join(t.instruction.split()[:2]))
    # each family's test phrasings start differently from its train ones (templates are split-specific)
    overlapping = [f for f, by in first_words.items() if by["train"] & by["test"]]
    assert len(overlapping) <= 3, overlapping


def test_to_info_hides_the_grader_data():
    task = load_suite("web-mini")[0]
    info = task.to_info()
    assert {"task_id", "suite", "split"} <= set(info)
    assert not {"expected", "oracle", "wrong"} & set(info)
    json.dumps(info)
    assert WebTask.from_record(task.record()) == task
    with pytest.raises(ConfigError, match="unknown keys"):
        WebTask.from_record({**task.record(), "bogus": 1})
    with pytest.raises(ConfigError, match="unknown web suite"):
        load_suite("web-mni")


def test_answer_normalisation_and_distractors():
    assert normalise("It costs $1,234.50.") == ["it", "costs", "1234.50"]
    assert answer_matches("The price is $1,234.50", ["1234.50"])
    assert not answer_matches("1234.50 or maybe 99.00", ["1234.50"], ["99.00"]), "listing candidates fails"
    assert not answer_matches("12345.50", ["1234.50"]), "a number is matched whole, not as a substring"
    assert not answer_matches(None, ["x"])


def _order_state(seed: int, product: dict, quantity: int, **order) -> dict:
    rows = shop_data.rows(seed)
    new = {"id": 4, "status": "processing", **order}
    return {
        "products": rows["products"],
        "orders": [*rows["orders"], new],
        "account": rows["account"],
        "order_items": [
            *rows["order_items"],
            {"order_id": 4, "product_id": product["id"], "quantity": quantity},
        ],
    }


def test_order_grader_checks_every_constraint():
    task = next(t for t in load_suite("web-mini") if t.family == "shop_constrained_buy")
    exp = task.expected
    good = next(
        p
        for p in shop_data.products(task.seed)
        if shop_data.matches(p, {**exp["constraints"], "in_stock": True})
    )
    bad = next(
        p
        for p in shop_data.products(task.seed)
        if p["category"] == exp["constraints"]["category"] and not shop_data.matches(p, exp["constraints"])
    )
    verdict = grade_state(
        task,
        _order_state(task.seed, good, exp["quantity"], **exp["order"]),
        answer="",
        infeasible_reason=None,
    )
    assert verdict.reward == 1.0 and verdict.resolved
    wrong_product = grade_state(
        task, _order_state(task.seed, bad, exp["quantity"], **exp["order"]), answer="", infeasible_reason=None
    )
    assert wrong_product.reward == 0.0 and wrong_product.breakdown["constraints"] == 0.0
    wrong_qty = grade_state(
        task,
        _order_state(task.seed, good, exp["quantity"] + 1, **exp["order"]),
        answer="",
        infeasible_reason=None,
    )
    assert wrong_qty.reward == 0.0 and "quantity" in wrong_qty.reason
    untouched = grade_state(
        task, {**shop_data.rows(task.seed), "cart": []}, answer="", infeasible_reason=None
    )
    assert untouched.reward == 0.0, "noop scores 0"
    reported = grade_state(
        task,
        _order_state(task.seed, good, exp["quantity"], **exp["order"]),
        answer="",
        infeasible_reason="cannot",
    )
    assert reported.reward == 0.0, "a feasible task reported infeasible fails"


def test_infeasible_tasks_pass_only_by_report():
    task = next(t for t in load_suite("web-mini") if t.family == "shop_infeasible")
    state = {**shop_data.rows(task.seed), "cart": []}
    assert grade_state(task, state, answer=None, infeasible_reason="no such product").reward == 1.0
    assert grade_state(task, state, answer="done", infeasible_reason=None).reward == 0.0
    product = shop_data.products(task.seed)[0]
    ordered = _order_state(task.seed, product, 1, name="x")
    assert grade_state(task, ordered, answer=None, infeasible_reason="no").reward == 0.0, "nothing may change"


def test_oracle_step_resolution_on_a_rendered_tree():
    nodes = [
        AXNode("", "main", "", 0),
        AXNode("a1", "searchbox", "Search products", 1),
        AXNode("a2", "button", "Apply filters", 1),
        AXNode("a3", "checkbox", "In stock only", 1, {"checked": "true"}),
        AXNode("a4", "combobox", "Brand", 1, {"value": "All brands"}),
        AXNode("a5", "button", "Pay now", 1, {"disabled": "true"}),
    ]
    text = "URL: http://127.0.0.1:5000/search?q=x\nTabs: 0*\n" + render_axtree(nodes)
    assert step_action(
        {"do": "fill", "role": "textbox", "name": "Search products", "text": "lamp"}, text
    ) == {"name": "fill", "arguments": {"bid": "a1", "text": "lamp"}}
    assert step_action({"do": "click", "role": "button", "name": "Apply filters"}, text)["arguments"] == {
        "bid": "a2"
    }
    assert step_action({"do": "check", "role": "checkbox", "name": "In stock only"}, text) == {}
    assert step_action({"do": "select", "role": "combobox", "name": "Brand", "option": "Nexa"}, text) == {
        "name": "select_option",
        "arguments": {"bid": "a4", "option": "Nexa"},
    }
    assert step_action({"do": "click", "role": "button", "name": "Pay now"}, text) is None, "disabled"
    assert (
        step_action({"do": "goto", "path": "/cart"}, text)["arguments"]["url"] == "http://127.0.0.1:5000/cart"
    )
    parts = [{"role": "tool", "content": [{"type": "text", "text": text}, {"type": "image_url"}]}]
    assert observation_text(parts) == text


def test_oracle_agent_waits_then_gives_up():
    class Context:
        task = load_suite("web-mini")[0]
        encode = staticmethod(lambda action: action)

    agent = WebOracleAgent()
    agent.start(Context)  # type: ignore[arg-type]
    empty = [{"role": "user", "content": "URL: http://127.0.0.1:1/\n"}]
    turns = [agent.act(empty, []) for _ in range(8)]
    assert [t["name"] for t in turns[:6]] == ["wait"] * 6
    assert turns[6]["name"] == "done" and "oracle: no" in turns[6]["arguments"]["answer"]


def test_families_are_deterministic():
    for name, build in FAMILIES.items():
        one = build(random.Random(f"x:{name}"), "test", 2)
        two = build(random.Random(f"x:{name}"), "test", 2)
        assert one == two, name


class ScriptedJudge:
    """An agent endpoint stand-in that always replies the same."""

    def __init__(self, reply: str) -> None:
        self.reply, self.seen = reply, []

    def act(self, messages, tools):
        from orchard_envs.agents.base import AssistantTurn

        self.seen.append(messages)
        return AssistantTurn(content=self.reply)


def test_llm_judge_adds_a_check_and_never_passes_alone():
    from orchard_envs.tasks.web.grading import with_judge
    from orchard_envs.tasks.web.judge import WebJudge

    task = next(t for t in load_suite("web-mini") if t.family == "wiki_fact")
    assert not any(t.expected.get("judge") for t in load_suite("web-mini")), (
        "no bundled task leans on a judge"
    )
    passed = grade_state(task, {}, answer=task.expected["accept"][0], infeasible_reason=None)
    failed = grade_state(task, {}, answer="no idea", infeasible_reason=None)
    yes, no = WebJudge(ScriptedJudge("fine.\nVERDICT: PASS")), WebJudge(ScriptedJudge("VERDICT: FAIL"))
    assert with_judge(passed, *yes.judge(task, "x", "page")).reward == 1.0
    assert with_judge(passed, *no.judge(task, "x", "page")).reward == 0.0
    assert with_judge(failed, *yes.judge(task, "x", "page")).reward == 0.0, (
        "the judge cannot rescue a failure"
    )
    assert WebJudge(ScriptedJudge("looks good")).judge(task, "x", "page")[0] is False, "no verdict line: FAIL"
    assert task.instruction in yes.agent.seen[0][1]["content"]


def test_wiki_answers_accept_the_usual_ways_of_writing_a_value():
    from orchard_envs.tasks.web.families.wiki import forms

    assert answer_matches("It is 108 meters above sea level", forms("108 m"))
    assert answer_matches("about 12,300,000 people", forms("12.3 million"))
    assert not answer_matches("1080 m", forms("108 m"))
