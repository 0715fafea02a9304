"""The web-mini task families, by name: `build(rng, split, index) -> WebTask` each, per site."""

from __future__ import annotations

from orchard_envs.tasks.web.families import mail, shop, travel, wiki

FAMILIES = {**shop.FAMILIES, **mail.FAMILIES, **travel.FAMILIES, **wiki.FAMILIES}
