"""Web episodes end to end through the runner: the `gui` harness (screenshots in, pixels out) and the
`tool-calling` harness (AX-tree text) on MiniWoB pages; screenshots stored as files beside the episode,
referenced by path and hash, and loaded back by `load_dataset(images=True)` as images."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from conftest import require

from orchard_envs.agents.base import Agent, AssistantTurn, EpisodeContext
from orchard_envs.episodes import EpisodeWriter, load_dataset, read_episodes
from orchard_envs.harnesses.gui import GuiHarness
from orchard_envs.harnesses.tool_calling import ToolCallingHarness
from orchard_envs.runner import run_episode
from orchard_envs.web.axtree import parse_axtree
from orchard_envs.web.runtime import find_chromium


@pytest.fixture(scope="module")
def env():
    require(find_chromium() is not None, "Chromium is not installed (apt-get install chromium)")
    try:
        import miniwob  # noqa: F401
    except ImportError:
        require(False, "the miniwob package is not installed (pip install miniwob)")
    from orchard_envs.envs.web import WebEnv

    web = WebEnv(suite="miniwob", task_ids=["miniwob.click-test"], action_timeout_ms=5000)
    yield web
    web.close()


def _parts(messages: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [p for m in messages if isinstance(m["content"], list) for p in m["content"] if p["type"] == kind]


class _PixelClicker(Agent):
    """Clicks the centre of the page's button by pixel (read from the page: a stand-in for a vision model)."""

    name = "pixel-clicker"

    def __init__(self, env) -> None:
        self.env = env
        self.seen: list[list[dict[str, Any]]] = []

    def start(self, context: EpisodeContext) -> None:
        self.encode = context.encode

    def act(self, messages, tools) -> AssistantTurn:
        self.seen.append(messages)
        box = self.env.session.page.locator("button").first.bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        return self.encode({"name": "click", "arguments": {"x": x, "y": y}})


class _BidClicker(Agent):
    """Reads the AX tree in the last message and clicks the button by bid (a text model's way)."""

    name = "bid-clicker"

    def start(self, context: EpisodeContext) -> None:
        self.encode = context.encode

    def act(self, messages, tools) -> AssistantTurn:
        bid = next(n.bid for n in parse_axtree(str(messages[-1]["content"])) if n.role == "button")
        return self.encode({"name": "click", "arguments": {"bid": bid}})


def test_gui_episode_stores_screenshots_as_files_and_loads_them_as_images(env, tmp_path):
    harness = GuiHarness()
    agent = _PixelClicker(env)
    episode = run_episode(env, harness, agent, seed=0)
    assert episode.metadata.reward == 1.0 and episode.metadata.status == "submitted"
    offered = [tool["function"]["name"] for tool in episode.tools]
    assert "click" in offered and "fill" not in offered  # a fill needs an element id: not offered
    click = next(t for t in episode.tools if t["function"]["name"] == "click")
    assert "bid" not in click["function"]["parameters"]["properties"]

    refs = _parts(episode.messages, "image_ref")
    assert len(refs) == 2  # the first screen, and the one after the click
    assert "base64" not in json.dumps(episode.messages)
    sent = agent.seen[0]  # what the model was sent: the screenshot as an OpenAI image part
    urls = [part["image_url"]["url"] for part in _parts(sent, "image_url")]
    assert len(urls) == 1 and urls[0].startswith("data:image/png;base64,")

    path = tmp_path / "episodes.jsonl"
    with EpisodeWriter(path) as writer:
        writer.write(episode)
    for ref in refs:
        stored = tmp_path / ref["path"]
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == ref["sha256"]
    assert next(read_episodes(path)).messages == episode.messages

    dataset = load_dataset(path, images=True, cache_dir=str(tmp_path / "cache"))
    images = dataset[0]["images"]
    assert len(images) == 2 and images[0].size == env.screen_size
    assert dataset[0]["messages"][2]["content"][1]["sha256"] == refs[0]["sha256"]


def test_text_harnesses_drive_the_web_env_through_its_tool_schemas(env):
    episode = run_episode(env, ToolCallingHarness(), _BidClicker(), seed=1)
    assert episode.metadata.reward == 1.0 and episode.metadata.status == "submitted"
    assert all(isinstance(m["content"], str) for m in episode.messages if m["role"] == "tool")
