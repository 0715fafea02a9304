"""Orchard: Gymnasium environments, sandboxes, harnesses and trainers for agentic modeling.

Importing this package registers the Gymnasium env ids (so `gym.make("orchard_envs:orchard/SWE-v0")`
works) and does nothing else: envs, backends, torch, docker and playwright load where used.
"""

from orchard_envs.envs import register_envs
from orchard_envs.errors import OrchardError

register_envs()

__all__ = ["OrchardError", "__version__"]
__version__ = "0.1.0"
