"""The AX tree text format (render/parse are inverses) and the GUI observation base, without a browser."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchard_envs.envs.gui import GuiToolEnv, fit_image
from orchard_envs.envs.tools import ToolCall, function_tool
from orchard_envs.envs.verdict import Verdict
from orchard_envs.harnesses.base import observation_text
from orchard_envs.web.axtree import AXNode, parse_axtree, render_axtree

keys = st.sampled_from(["value", "checked", "selected", "disabled", "focused", "expanded", "url"])
nodes = st.builds(
    AXNode,
    bid=st.from_regex(r"[a-z0-9]{0,4}", fullmatch=True),
    role=st.from_regex(r"[A-Za-z]{1,12}", fullmatch=True),
    name=st.text(st.characters(blacklist_categories=["Cs"]), max_size=20),
    depth=st.integers(0, 6),
    properties=st.dictionaries(keys, st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)),
)


@given(st.lists(nodes, max_size=8))
def test_render_and_parse_are_inverses(tree):
    assert parse_axtree(render_axtree(tree)) == tree


def test_the_format_is_as_documented_and_other_lines_are_skipped():
    tree = [
        AXNode("", "RootWebArea", "Shop", 0),
        AXNode("12", "textbox", 'Say "hi"', 1, {"value": "two words", "focused": "true"}),
        AXNode("a3", "link", "Home", 2, {"url": "/home"}),
    ]
    text = render_axtree(tree)
    assert text.splitlines() == [
        '[] RootWebArea "Shop"',
        '  [12] textbox "Say \\"hi\\"" value="two words" focused=true',
        '    [a3] link "Home" url=/home',
    ]
    assert parse_axtree(f"URL: http://127.0.0.1/\nError: none\n{text}\n") == tree


class _Screen(GuiToolEnv):
    ending_tools = frozenset({"done"})

    def __init__(self, max_steps: int | None = None) -> None:
        super().__init__(max_steps=max_steps, render_mode=None, screen_size=(32, 16))

    def _begin(self, task_id):
        self._tools = [function_tool("done", "end", {}, [])]
        return "instruction", {}

    def _run_tool(self, call: ToolCall, info):
        return "ok"

    def _grade(self, ending_call):
        return Verdict(status="passed", reward=1.0, resolved=True)

    def _screenshot(self):
        return np.full((40, 10, 4), 7, np.uint8)  # wrong size and RGBA: fitted to the space


def test_gui_observations_are_text_plus_a_screenshot_in_the_space():
    env = _Screen()
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and obs["text"] == info["instruction"] == "instruction"
    assert obs["screenshot"].shape == (16, 32, 3) and obs["screenshot"][0, 0, 0] == 7
    assert obs["screenshot"][0, 20, 0] == 0  # padded
    obs, reward, terminated, _, _ = env.step({"name": "done", "arguments": {}})
    assert terminated and reward == 1.0 and env.observation_space.contains(obs)
    assert observation_text(obs) == "ok" and observation_text("plain") == "plain"


@pytest.mark.parametrize("shape", [(5, 5), (100, 100, 3), (16, 32, 3)])
def test_fit_image_always_gives_the_declared_shape_in_a_new_array(shape):
    image = np.ones(shape, np.uint8)
    fitted = fit_image(image, (32, 16))
    assert fitted.shape == (16, 32, 3) and not np.shares_memory(fitted, image)  # check_env demands it
