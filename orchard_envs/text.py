"""Text helpers shared by envs and harnesses."""

from __future__ import annotations


def clip(text: str, limit: int) -> str:
    """Keep the head and the tail of a long text (errors tend to sit at the end), saying what was cut."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} characters omitted ...]\n{text[-half:]}"
