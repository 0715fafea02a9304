"""Shop families (DeepShop-style): constrained and cheapest purchases, price lookups, cancelling an order,
updating the account, and purchases no product can satisfy (infeasible)."""

from __future__ import annotations

import math
import random
from typing import Any

from orchard_envs.tasks.web.families.common import (
    STREETS,
    TOWNS,
    check,
    click,
    done,
    fill,
    goto,
    infeasible,
    make_task,
    person,
    phrase,
    seed_for,
    select,
)
from orchard_envs.tasks.web.sites import shop_data
from orchard_envs.tasks.web.task import WebTask

EARLIER = 3  # orders in every seeded shop (shop_data.earlier_orders)
SHIPPING = {"standard": "Standard (3-5 days)", "express": "Express (1-2 days)", "next_day": "Next day"}
RATINGS = {4.0: "4 stars & up", 4.5: "4.5 stars & up", 3.0: "3 stars & up"}
TEMPLATES = {
    "constrained": {
        "train": [
            "Buy {qty} {desc}. Send it {ship} to {address}.",
            "I want {qty} {desc}; ship {ship} to {address}.",
        ],
        "test": [
            "Please order {qty} {desc} and have it delivered {ship} to {address}.",
            "Get me {qty} {desc}, delivery {ship}, address: {address}.",
        ],
    },
    "cheapest": {
        "train": [
            "Order one of the cheapest in-stock {color} {category} to my saved address, standard shipping.",
            "Buy the lowest-priced {color} {category} that is in stock; use my saved address.",
        ],
        "test": [
            "Find the least expensive {color} {category} you can actually buy and order one to my address "
            "on file.",
            "Purchase a single unit of the cheapest available {color} {category} (saved address).",
        ],
    },
    "lookup": {
        "train": ["What does the {name} cost?", "How much is the {name} in the shop?"],
        "test": ["Tell me the current price of the {name}.", "Look up the price of the {name}."],
    },
    "cancel": {
        "train": ["Cancel my order for the {name}.", "I no longer need the {name}; cancel that order."],
        "test": ["Please call off the order containing the {name}.", "Stop my {name} order from shipping."],
    },
    "account": {
        "train": [
            "Change the phone number on my shop account to {phone} and my city to {city}.",
            "Update my account: phone {phone}, city {city}.",
        ],
        "test": [
            "My details changed: new phone {phone}, and I now live in {city}. Update the account.",
            "Set my account's phone to {phone} and its city to {city}.",
        ],
    },
    "impossible": {
        "train": ["Buy a {color} {category} from {brand}.", "Order one {color} {category} made by {brand}."],
        "test": [
            "I'd like a {brand} {category} in {color}; please buy one.",
            "Purchase any {color} {brand} {category}.",
        ],
    },
}


def _desc(constraints: dict[str, Any]) -> str:
    parts = [constraints.get("color", ""), shop_data.CATEGORIES[constraints["category"]][0].lower()]
    text = " ".join(p for p in parts if p)
    if "brand" in constraints:
        text += f" from {constraints['brand']}"
    if "max_price" in constraints:
        text += f" costing at most ${constraints['max_price']:.0f}"
    if "min_rating" in constraints:
        text += f" rated {constraints['min_rating']:g} stars or more"
    return text


def _filter_steps(constraints: dict[str, Any], sort: str = "Price: low to high") -> list[dict[str, Any]]:
    steps = [select("Category", shop_data.CATEGORIES[constraints["category"]][0])]
    if "brand" in constraints:
        steps.append(select("Brand", constraints["brand"]))
    if "color" in constraints:
        steps.append(select("Color", constraints["color"].title()))
    if "max_price" in constraints:
        steps.append(fill("spinbutton", "Max price", f"{constraints['max_price']:g}"))
    if "min_rating" in constraints:
        steps.append(select("Minimum rating", RATINGS[constraints["min_rating"]]))
    return [*steps, check("In stock only"), select("Sort by", sort), click("button", "Apply filters")]


def _buy_steps(
    product: dict, qty: int, address: dict[str, str] | None, shipping: str
) -> list[dict[str, Any]]:
    steps = [
        click("link", product["name"]),
        fill("spinbutton", "Quantity", str(qty)),
        click("button", "Add to cart"),
        click("link", "Go to cart"),
        click("link", "Proceed to checkout"),
    ]
    for label, key in [
        ("Full name", "name"),
        ("Street address", "street"),
        ("City", "city"),
        ("Postcode", "postcode"),
    ]:
        if address is not None:
            steps.append(fill("textbox", label, address[key]))
    return [
        *steps,
        select("Shipping", SHIPPING[shipping]),
        click("button", "Place order"),
        done("Order placed."),
    ]


def _matching(seed: int, constraints: dict[str, Any]) -> list[dict]:
    found = [p for p in shop_data.products(seed) if shop_data.matches(p, {**constraints, "in_stock": True})]
    return sorted(found, key=lambda p: (p["price"], p["id"]))


def _constrained(rng: random.Random, split: str, index: int) -> WebTask:
    seed = seed_for(rng, split)
    target = rng.choice([p for p in shop_data.products(seed) if p["stock"] >= 3])
    constraints: dict[str, Any] = {"category": target["category"]}
    for key in rng.sample(["brand", "color", "max_price", "min_rating"], 3):
        if key == "max_price":
            constraints[key] = float(math.ceil(target["price"] / 10) * 10)
        elif key == "min_rating":
            constraints[key] = next((r for r in (4.5, 4.0, 3.0) if target["rating"] >= r), None)
        else:
            constraints[key] = target[key]
    constraints = {k: v for k, v in constraints.items() if v is not None}
    pick = _matching(seed, constraints)[0]
    qty = rng.randint(1, min(3, pick["stock"]))
    town, postcode = rng.choice(TOWNS[split])
    address = {
        "name": person(rng, split),
        "street": rng.choice(STREETS[split]),
        "city": town,
        "postcode": postcode,
    }
    shipping = rng.choice(["express", "next_day", "standard"])
    bad = rng.choice(
        [
            p
            for p in shop_data.products(seed)
            if p["category"] == target["category"]
            and p["stock"] >= 3
            and not shop_data.matches(p, constraints)
        ]
    )
    ship_text = {"express": "by express", "next_day": "next day", "standard": "by standard shipping"}[
        shipping
    ]
    instruction = phrase(
        TEMPLATES["constrained"],
        rng,
        split,
        qty=qty,
        desc=_desc(constraints),
        ship=ship_text,
        address=f"{address['name']}, {address['street']}, {town} {postcode}",
    )
    expected = {
        "kind": "order",
        "earlier_orders": EARLIER,
        "constraints": constraints,
        "quantity": qty,
        "order": {**address, "shipping": shipping},
    }
    return make_task(
        "shop_constrained_buy",
        split,
        index,
        site="shop",
        seed=seed,
        instruction=instruction,
        expected=expected,
        oracle=[*_filter_steps(constraints), *_buy_steps(pick, qty, address, shipping)],
        wrong=[goto(f"/product/{bad['id']}"), *_buy_steps(bad, qty, address, shipping)[1:]],
    )


def _cheapest(rng: random.Random, split: str, index: int) -> WebTask:
    seed = seed_for(rng, split)
    category, color = rng.choice(
        [(p["category"], p["color"]) for p in shop_data.products(seed) if p["stock"]]
    )
    constraints = {"category": category, "color": color}
    ranked = _matching(seed, constraints)
    pick = ranked[0]
    others = [
        p
        for p in shop_data.products(seed)
        if p["category"] == category and p["id"] != pick["id"] and p["stock"]
    ]
    decoy = ranked[1] if len(ranked) > 1 else rng.choice(others)
    instruction = phrase(
        TEMPLATES["cheapest"], rng, split, color=color, category=shop_data.CATEGORIES[category][0].lower()
    )
    expected = {
        "kind": "order",
        "earlier_orders": EARLIER,
        "constraints": constraints,
        "product_id": pick["id"],
        "quantity": 1,
        "order": {"shipping": "standard"},
    }
    plan = [fill("searchbox", "Search products", category), *_filter_steps(constraints)]
    return make_task(
        "shop_cheapest_buy",
        split,
        index,
        site="shop",
        seed=seed,
        instruction=instruction,
        expected=expected,
        oracle=[*plan, *_buy_steps(pick, 1, None, "standard")],
        wrong=[goto(f"/product/{decoy['id']}"), *_buy_steps(decoy, 1, None, "standard")[1:]],
    )


def _lookup(rng: random.Random, split: str, index: int) -> WebTask:
    seed = seed_for(rng, split)
    products = shop_data.products(seed)
    item = rng.choice(products)
    others = [p for p in products if p["category"] == item["category"] and p["price"] != item["price"]]
    reject = [f"{p['price']:.2f}" for p in rng.sample(others, 5)]
    instruction = phrase(TEMPLATES["lookup"], rng, split, name=item["name"])
    expected = {"kind": "answer", "accept": [f"{item['price']:.2f}"], "reject": reject}
    plan = [
        fill("searchbox", "Search products", item["name"]),
        click("button", "Apply filters"),
        click("link", item["name"]),
    ]
    return make_task(
        "shop_price_lookup",
        split,
        index,
        site="shop",
        seed=seed,
        instruction=instruction,
        expected=expected,
        oracle=[*plan, done(f"${item['price']:.2f}")],
        wrong=[*plan, done(f"${reject[0]}")],
    )


def _cancel(rng: random.Random, split: str, index: int) -> WebTask:
    seed = seed_for(rng, split)
    orders = shop_data.earlier_orders(seed)
    names = {p["id"]: p["name"] for p in shop_data.products(seed)}
    target, other = rng.sample([o for o in orders if o["status"] == "processing"], 2)
    name = names[target["items"][0]["product_id"]]
    expected = {
        "kind": "cancel",
        "order_id": target["id"],
        "statuses": {str(o["id"]): o["status"] for o in orders},
    }

    def plan(order: dict) -> list[dict[str, Any]]:
        return [
            click("link", "Orders"),
            click("link", f"Order #{order['id']}"),
            click("button", "Cancel order"),
            done(f"Cancelled order #{order['id']}."),
        ]

    return make_task(
        "shop_cancel_order",
        split,
        index,
        site="shop",
        seed=seed,
        instruction=phrase(TEMPLATES["cancel"], rng, split, name=name),
        expected=expected,
        oracle=plan(target),
        wrong=plan(other),
    )


def _account(rng: random.Random, split: str, index: int) -> WebTask:
    seed = seed_for(rng, split)
    phone = f"555-{rng.randint(1000, 9999)}"
    city = rng.choice(TOWNS[split])[0]
    expected = {"kind": "account", "fields": {"phone": phone, "city": city}}
    steps = [click("link", "Account"), fill("textbox", "Phone", phone)]
    return make_task(
        "shop_update_account",
        split,
        index,
        site="shop",
        seed=seed,
        instruction=phrase(TEMPLATES["account"], rng, split, phone=phone, city=city),
        expected=expected,
        oracle=[*steps, fill("textbox", "City", city), click("button", "Save changes"), done("Saved.")],
        wrong=[*steps, click("button", "Save changes"), done("Saved.")],
    )


def _impossible(rng: random.Random, split: str, index: int) -> WebTask:
    seed = seed_for(rng, split)
    products = shop_data.products(seed)
    while True:
        category = rng.choice(sorted(shop_data.CATEGORIES))
        brand, color = rng.choice(shop_data.CATEGORIES[category][2]), rng.choice(shop_data.COLORS)
        constraints = {"category": category, "brand": brand, "color": color}
        if not any(shop_data.matches(p, constraints) for p in products):
            break
    near = rng.choice([p for p in products if p["category"] == category and p["stock"] >= 1])
    instruction = phrase(
        TEMPLATES["impossible"],
        rng,
        split,
        color=color,
        brand=brand,
        category=shop_data.CATEGORIES[category][0].lower().rstrip("s"),
    )
    search = [
        select("Category", shop_data.CATEGORIES[category][0]),
        select("Brand", brand),
        select("Color", color.title()),
        click("button", "Apply filters"),
    ]
    return make_task(
        "shop_infeasible",
        split,
        index,
        site="shop",
        seed=seed,
        instruction=instruction,
        expected={"kind": "infeasible", "earlier_orders": EARLIER},
        is_infeasible=True,
        oracle=[*search, infeasible(f"The shop has no {color} {category} from {brand}.")],
        wrong=[goto(f"/product/{near['id']}"), *_buy_steps(near, 1, None, "standard")[1:]],
    )


FAMILIES = {
    "shop_constrained_buy": _constrained,
    "shop_cheapest_buy": _cheapest,
    "shop_price_lookup": _lookup,
    "shop_cancel_order": _cancel,
    "shop_update_account": _account,
    "shop_infeasible": _impossible,
}
