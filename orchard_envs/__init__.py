"""Orchard: Gymnasium environments, sandboxes, harnesses and trainers for agentic modeling.

Importing this package does no work: backends, torch, docker and playwright load where used.
"""

from orchard_envs.errors import OrchardError

__all__ = ["OrchardError", "__version__"]
__version__ = "0.1.0"
