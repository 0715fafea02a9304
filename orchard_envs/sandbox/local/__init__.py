"""The `local` sandbox backend (bubblewrap)."""

from orchard_envs.sandbox.local.sandbox import LocalBackend, LocalSandbox

__all__ = ["LocalBackend", "LocalSandbox"]
