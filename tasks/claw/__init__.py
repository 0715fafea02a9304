"""Claw: tool-use tasks over simulated office services, graded on the state the agent leaves behind."""
