"""Orchard's Gymnasium environments, registered by versioned id with string entry points.

Registration imports no environment module: `gym.make` loads one when it is asked for.
"""

from __future__ import annotations

ENVIRONMENTS: dict[str, str] = {
    "orchard/SWE-v0": "orchard_envs.envs.swe:SWEEnv",
    "orchard/Claw-v0": "orchard_envs.envs.claw:ClawEnv",
}


def register_envs() -> None:
    """Register every Orchard env with Gymnasium (idempotent, so re-imports do not warn)."""
    from gymnasium.envs.registration import register, registry

    for env_id, entry_point in ENVIRONMENTS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=entry_point, disable_env_checker=True)
