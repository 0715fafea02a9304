"""Harnesses: the scaffold between a model and an env. Filled in by the harness/agent issue."""
