"""Orchard's Gymnasium environments, registered by versioned id with string entry points.

Registration imports no environment module: `gym.make` loads one when it is asked for. Every env is
registered with `GradeOnTruncation` as its outermost wrapper, so an episode that Gymnasium's `TimeLimit`
cuts (`gym.make(..., max_episode_steps=N)`) is graded like one the env's own `max_steps` cuts.
"""

from __future__ import annotations

ENVIRONMENTS: dict[str, str] = {
    "orchard/SWE-v0": "orchard_envs.envs.swe:SWEEnv",
    "orchard/Claw-v0": "orchard_envs.envs.claw:ClawEnv",
    "orchard/Desktop-v0": "orchard_envs.envs.desktop:DesktopEnv",
    "orchard/Web-v0": "orchard_envs.envs.web:WebEnv",
}
GRADE_ON_TRUNCATION = "orchard_envs.envs.tool_env:GradeOnTruncation"


def register_envs() -> None:
    """Register every Orchard env with Gymnasium (idempotent, so re-imports do not warn)."""
    from gymnasium.envs.registration import WrapperSpec, register, registry

    grade = WrapperSpec(name="GradeOnTruncation", entry_point=GRADE_ON_TRUNCATION, kwargs={})
    for env_id, entry_point in ENVIRONMENTS.items():
        if env_id not in registry:
            register(
                id=env_id, entry_point=entry_point, disable_env_checker=True, additional_wrappers=(grade,)
            )
