"""SWE tasks: the instance format, suites, the repository cache, grading and the instance builder."""

from orchard_envs.tasks.swe.instance import GitSource, PyPISource, SWEInstance, load_suite

__all__ = ["GitSource", "PyPISource", "SWEInstance", "load_suite"]
