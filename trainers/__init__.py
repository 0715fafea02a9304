"""Trainers that consume recorded episodes. Filled in by the trainer issues."""
