"""The multimodal base of the GUI envs (Web, Desktop): every observation is text plus a screenshot.

`GuiToolEnv` keeps `ToolEnv`'s whole contract (tool calls as actions, limits, grading) and changes only
what an observation is: `{"text": str, "screenshot": uint8 array H x W x 3}`, declared as a Gymnasium
`Dict` of `AnyText` and `Box`, so `check_env` and the vector envs (shared memory included) hold it.
`info["instruction"]` stays the text alone. A subclass supplies `_screenshot()`; whatever size it returns
is fitted to the declared one (cropped, or padded with black), so every observation is in the space.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from orchard_envs.envs.spaces import AnyText
from orchard_envs.envs.tool_env import ToolEnv
from orchard_envs.errors import ConfigError

DEFAULT_SIZE = (1280, 720)  # width, height


class GuiToolEnv(ToolEnv):
    """A tool env whose observations are `dict(text=..., screenshot=HxWx3 uint8)`."""

    def __init__(
        self, *, max_steps: int | None, render_mode: str | None, screen_size: tuple[int, int] = DEFAULT_SIZE
    ) -> None:
        super().__init__(max_steps=max_steps, render_mode=render_mode)
        width, height = _size(screen_size)
        self.screen_size = (width, height)
        self.observation_space = spaces.Dict(
            {
                "text": AnyText(self.max_observation),
                "screenshot": spaces.Box(0, 255, (height, width, 3), np.uint8),
            }
        )

    def _screenshot(self) -> np.ndarray:
        """The screen now, H x W x 3 uint8 (any size: it is fitted to `screen_size`)."""
        raise NotImplementedError

    def _observe(self, text: str) -> dict[str, Any]:
        return {"text": text, "screenshot": fit_image(self._screenshot(), self.screen_size)}


def _size(screen_size: Any) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in screen_size)
    except (TypeError, ValueError):
        raise ConfigError(f"screen_size must be (width, height), not {screen_size!r}") from None
    if not (16 <= width <= 8192 and 16 <= height <= 8192):
        raise ConfigError(f"screen_size {screen_size!r} is outside 16..8192 pixels a side")
    return width, height


def fit_image(image: np.ndarray, screen_size: tuple[int, int]) -> np.ndarray:
    """`image` as exactly height x width x 3 uint8: RGBA loses alpha, grey gains channels, a larger image
    is cropped at the right and bottom, a smaller one padded with black there. Always a new array."""
    width, height = screen_size
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    array = array[:height, :width, :3].astype(np.uint8, copy=False)
    if array.shape == (height, width, 3):
        return array.copy()  # a new array per observation: callers keep (and may change) each one
    out = np.zeros((height, width, 3), np.uint8)
    out[: array.shape[0], : array.shape[1]] = array
    return out


def blank_screen(screen_size: tuple[int, int]) -> np.ndarray:
    """A black screen (before anything is shown, or after the display went away)."""
    width, height = screen_size
    return np.zeros((height, width, 3), np.uint8)
