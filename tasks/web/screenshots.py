"""Screenshots of the four sites for docs/web-sites.md: `python -m orchard_envs.tasks.web.screenshots
--out docs/images` (needs Playwright and Chromium; `--chromium` names the binary)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from orchard_envs.tasks.web.catalog import load_suite
from orchard_envs.tasks.web.host import SiteHost

SHOTS = [  # (file, site, path, a button to click first or None)
    ("web-shop-search.png", "shop", "/search?category=headphones&sort=price_asc&in_stock=1", None),
    ("web-shop-product.png", "shop", "/product/31", "Add to cart"),
    ("web-mail-inbox.png", "mail", "/folder/inbox", None),
    (
        "web-travel-search.png",
        "travel",
        "/flights?origin={o}&destination={d}&date=2026-07-02&passengers=1",
        None,
    ),
    ("web-wiki-article.png", "wiki", "/all", None),
]


def main(argv: list[str] | None = None) -> None:
    """Write one small PNG per site view."""
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    from orchard_envs.tasks.web.sites import travel_data

    origin, destination = travel_data.routes(0)[0]
    with SiteHost().start() as host, sync_playwright() as playwright:
        host.reset(dataclasses.replace(load_suite("web-mini")[0], seed=0))
        browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 960, "height": 600}, extra_http_headers=host.headers())
        for name, site, path, button in SHOTS:
            page.goto(host.urls[site] + path.format(o=origin, d=destination))
            page.wait_for_load_state("networkidle")
            if site == "wiki":
                page.get_by_role("link").nth(8).click()
                page.wait_for_load_state("networkidle")
            if button:
                page.get_by_role("button", name=button, exact=True).click()
                page.wait_for_timeout(300)
            page.screenshot(path=str(args.out / name))
            print(args.out / name)
        browser.close()


if __name__ == "__main__":
    main()
