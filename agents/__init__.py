"""Agents (policies): messages + tools -> an assistant turn. Filled in by the harness/agent issue."""
