"""The shop's seeded catalogue: pure functions of the seed, shared by the site and the task families."""

from __future__ import annotations

import random
from typing import Any

CATEGORIES = {
    "laptop": ("Laptops", (399, 2200), ["Nexa", "Corvid", "Altura", "Pixel Forge", "Lumen"]),
    "headphones": ("Headphones", (19, 450), ["Sonique", "Bassline", "Nexa", "Aurora", "Quill"]),
    "backpack": ("Backpacks", (25, 180), ["Trailhead", "Urbanite", "Nomad", "Quill", "Ridge"]),
    "running shoes": ("Running shoes", (45, 240), ["Stride", "Velo", "Ridge", "Aurora", "Pace"]),
    "coffee maker": ("Coffee makers", (29, 650), ["Brewmaster", "Crema", "Lumen", "Kettle & Co", "Velo"]),
    "desk lamp": ("Desk lamps", (15, 160), ["Lumen", "Arcline", "Brightnook", "Quill", "Corvid"]),
}
COLORS = ["black", "white", "silver", "blue", "red", "green", "grey"]
MODELS = ["Aero", "Nova", "Pulse", "Orbit", "Zen", "Prime", "Flex", "Edge", "Terra", "Halo", "Vista", "Core"]
REVIEWERS = ["Ana", "Bram", "Chloe", "Dev", "Elif", "Femi", "Greta", "Hugo", "Ines", "Jonas"]
REVIEW_TEXTS = [
    "Does what it says.",
    "Great value for the price.",
    "Build quality could be better.",
    "Exactly as described.",
    "Arrived quickly, works well.",
    "Not bad, not great.",
]
PER_CATEGORY = 24
ACCOUNT = {
    "id": 1,
    "name": "Sam Rivera",
    "email": "sam.rivera@example.com",
    "phone": "555-0142",
    "street": "12 Orchard Lane",
    "city": "Springfield",
    "postcode": "SP1 2AB",
}


def products(seed: int) -> list[dict[str, Any]]:
    """Every product of the seed's catalogue, ids from 1, names unique."""
    rng = random.Random(f"shop:{seed}")
    rows: list[dict[str, Any]] = []
    for category, (_, (low, high), brands) in CATEGORIES.items():
        for number in range(PER_CATEGORY):
            brand = rng.choice(brands)
            rows.append(
                {
                    "id": len(rows) + 1,
                    "name": f"{brand} {rng.choice(MODELS)} {number + 2}{rng.choice('SXLM')} {category}",
                    "category": category,
                    "brand": brand,
                    "color": rng.choice(COLORS),
                    "price": round(rng.uniform(low, high), 2),
                    "rating": round(rng.uniform(2.5, 5.0), 1),
                    "stock": rng.choice([0, 0, 3, 5, 8, 12, 20, 40]),
                    "description": f"A {category} by {brand}. " + rng.choice(REVIEW_TEXTS),
                }
            )
    return rows


def rows(seed: int) -> dict[str, list[dict[str, Any]]]:
    """Every table's seeded rows: products, reviews, the account, two earlier orders."""
    catalogue = products(seed)
    rng = random.Random(f"shop-extra:{seed}")
    reviews = [
        {
            "product_id": product["id"],
            "author": rng.choice(REVIEWERS),
            "stars": rng.randint(2, 5),
            "text": rng.choice(REVIEW_TEXTS),
        }
        for product in catalogue
        for _ in range(rng.randint(1, 3))
    ]
    earlier = earlier_orders(seed)
    orders = [{k: v for k, v in order.items() if k != "items"} for order in earlier]
    items = [{"order_id": order["id"], **item} for order in earlier for item in order["items"]]
    return {
        "products": catalogue,
        "reviews": reviews,
        "account": [dict(ACCOUNT)],
        "orders": orders,
        "order_items": items,
    }


def earlier_orders(seed: int) -> list[dict[str, Any]]:
    """The account's orders placed before the episode: three, the last two still cancellable."""
    catalogue = products(seed)
    rng = random.Random(f"shop-orders:{seed}")
    picked = rng.sample(catalogue, 3)
    statuses = ["delivered", "processing", "processing"]
    return [
        {
            "id": number,
            "name": ACCOUNT["name"],
            "street": ACCOUNT["street"],
            "city": ACCOUNT["city"],
            "postcode": ACCOUNT["postcode"],
            "shipping": "standard",
            "payment": "card",
            "total": product["price"],
            "status": status,
            "created": f"2026-0{number + 2}-1{number}",
            "items": [{"product_id": product["id"], "quantity": 1, "price": product["price"]}],
        }
        for number, (product, status) in enumerate(zip(picked, statuses, strict=True), 1)
    ]


def matches(product: dict[str, Any], constraints: dict[str, Any]) -> bool:
    """Whether a product meets every constraint (category, brand, color, max_price, min_rating, in_stock)."""
    checks = {
        "category": lambda v: product["category"] == v,
        "brand": lambda v: product["brand"] == v,
        "color": lambda v: product["color"] == v,
        "max_price": lambda v: product["price"] <= v,
        "min_rating": lambda v: product["rating"] >= v,
        "in_stock": lambda v: (product["stock"] > 0) == v,
    }
    return all(checks[key](value) for key, value in constraints.items())
