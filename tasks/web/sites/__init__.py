"""The four self-hosted sites; each module exposes `SITE`, a `Site` (schema, seeded rows, routes)."""

SITE_NAMES = ("shop", "mail", "travel", "wiki")
