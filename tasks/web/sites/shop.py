"""The shop (DeepShop-style): catalogue search with filters, sorting and pages, product pages with an
add-to-cart modal and reviews fetched as JSON, cart, checkout with validation, orders, account."""

from __future__ import annotations

import math
import re

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from orchard_envs.tasks.web.sites import shop_data
from orchard_envs.tasks.web.sites.common import (
    Site,
    SiteDB,
    as_float,
    as_int,
    errors_html,
    esc,
    field_html,
    form_of,
    page,
    redirect,
    select_html,
)

SCHEMA = """
CREATE TABLE products(id INTEGER PRIMARY KEY, name TEXT, category TEXT, brand TEXT, color TEXT, price REAL,
  rating REAL, stock INTEGER, description TEXT);
CREATE TABLE reviews(id INTEGER PRIMARY KEY, product_id INTEGER, author TEXT, stars INTEGER, text TEXT);
CREATE TABLE cart(id INTEGER PRIMARY KEY, product_id INTEGER, quantity INTEGER);
CREATE TABLE orders(id INTEGER PRIMARY KEY, name TEXT, street TEXT, city TEXT, postcode TEXT, shipping TEXT,
  payment TEXT, total REAL, status TEXT, created TEXT);
CREATE TABLE order_items(id INTEGER PRIMARY KEY, order_id INTEGER, product_id INTEGER, quantity INTEGER,
  price REAL);
CREATE TABLE account(id INTEGER PRIMARY KEY, name TEXT, email TEXT, phone TEXT, street TEXT, city TEXT,
  postcode TEXT);
"""
PAGE_SIZE = 8
SORTS = [
    ("relevance", "Relevance"),
    ("price_asc", "Price: low to high"),
    ("price_desc", "Price: high to low"),
    ("rating", "Customer rating"),
]
SHIPPING = [("standard", "Standard (3-5 days)"), ("express", "Express (1-2 days)"), ("next_day", "Next day")]
PAYMENT = [("card", "Credit card"), ("paypal", "PayPal"), ("invoice", "Invoice")]
POSTCODE = re.compile(r"^[A-Za-z0-9 ]{4,8}$")
NAV = [("Search", "/search"), ("Cart", "/cart"), ("Orders", "/orders"), ("Account", "/account")]
SQL_ORDER = {
    "relevance": "id",
    "price_asc": "price, id",
    "price_desc": "price DESC, id",
    "rating": "rating DESC, id",
}


def _search_sql(params: dict[str, str]) -> tuple[str, list[object]]:
    where, args = ["1=1"], []
    for word in params.get("q", "").lower().split():
        where.append("(lower(name) LIKE ? OR lower(category) LIKE ?)")
        args += [f"%{word}%", f"%{word}%"]
    for key in ("category", "brand", "color"):
        if params.get(key):
            where.append(f"{key} = ?")
            args.append(params[key])
    if (low := as_float(params.get("min_price"))) is not None:
        where.append("price >= ?")
        args.append(low)
    if (high := as_float(params.get("max_price"))) is not None:
        where.append("price <= ?")
        args.append(high)
    if (rating := as_float(params.get("min_rating"))) is not None:
        where.append("rating >= ?")
        args.append(rating)
    if params.get("in_stock"):
        where.append("stock > 0")
    return " AND ".join(where), args


def _filters_form(db: SiteDB, params: dict[str, str]) -> str:
    brands = [row["brand"] for row in db.all("SELECT DISTINCT brand FROM products ORDER BY brand")]
    categories = [(key, title) for key, (title, _, _) in shop_data.CATEGORIES.items()]
    ratings = [("", "Any rating"), ("4", "4 stars & up"), ("4.5", "4.5 stars & up"), ("3", "3 stars & up")]
    checked = " checked" if params.get("in_stock") else ""
    return (
        '<form method="get" action="/search" aria-label="Search and filters" class="card">'
        + field_html("Search products", "q", params.get("q", ""), "search")
        + select_html(
            "Category", "category", [("", "All categories"), *categories], params.get("category", "")
        )
        + select_html(
            "Brand", "brand", [("", "All brands"), *[(b, b) for b in brands]], params.get("brand", "")
        )
        + select_html(
            "Color",
            "color",
            [("", "Any color"), *[(c, c.title()) for c in shop_data.COLORS]],
            params.get("color", ""),
        )
        + field_html("Min price", "min_price", params.get("min_price", ""), "number", step="0.01", min="0")
        + field_html("Max price", "max_price", params.get("max_price", ""), "number", step="0.01", min="0")
        + select_html("Minimum rating", "min_rating", ratings, params.get("min_rating", ""))
        + f'<label><input type="checkbox" name="in_stock" value="1"{checked}> In stock only</label>'
        + select_html("Sort by", "sort", SORTS, params.get("sort", "relevance"))
        + '<button type="submit">Apply filters</button></form>'
    )


def _result_card(product: dict) -> str:
    stock = "In stock" if product["stock"] > 0 else "Out of stock"
    return (
        f'<li class="card"><a href="/product/{product["id"]}">{esc(product["name"])}</a> '
        f"<span>${product['price']:.2f}</span> <span>{product['rating']} stars</span> "
        f"<span>{esc(product['color'])}</span> <span>{stock}</span></li>"
    )


def _pager(params: dict[str, str], current: int, pages: int) -> str:
    def href(number: int) -> str:
        query = "&".join(f"{k}={esc(v)}" for k, v in params.items() if k != "page" and v)
        return f"/search?{query}&page={number}"

    links = [f'<a href="{href(current - 1)}">Previous page</a>'] if current > 1 else []
    links += [
        f'<a href="{href(n)}" aria-label="Page {n}"{" aria-current=page" if n == current else ""}>{n}</a>'
        for n in range(1, pages + 1)
    ]
    links += [f'<a href="{href(current + 1)}">Next page</a>'] if current < pages else []
    return f'<nav aria-label="Pages">{" ".join(links)}</nav>'


def routes(db: SiteDB) -> list[Route]:
    """The shop's pages and JSON endpoints over its database."""

    async def home(request: Request) -> Response:
        categories = "".join(
            f'<li><a href="/search?category={esc(key)}">{esc(title)}</a></li>'
            for key, (title, _, _) in shop_data.CATEGORIES.items()
        )
        body = _filters_form(db, {}) + f"<h2>Shop by category</h2><ul>{categories}</ul>"
        return page(SITE, "Welcome to the Orchard Shop", body, NAV)

    async def search(request: Request) -> Response:
        params = {k: v.strip() for k, v in request.query_params.items()}
        where, args = _search_sql(params)
        total = db.one(f"SELECT count(*) AS n FROM products WHERE {where}", args)["n"]
        pages = max(1, math.ceil(total / PAGE_SIZE))
        current = min(max(1, as_int(params.get("page"), 1) or 1), pages)
        order = SQL_ORDER.get(params.get("sort", ""), "id")
        found = db.all(
            f"SELECT * FROM products WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
            [*args, PAGE_SIZE, (current - 1) * PAGE_SIZE],
        )
        listing = "".join(map(_result_card, found)) or "<li>No products match.</li>"
        body = (
            f'<div class="grid"><aside>{_filters_form(db, params)}</aside><section aria-label="Results">'
            f'<p role="status">{total} results, page {current} of {pages}</p><ul>{listing}</ul>'
            f"{_pager(params, current, pages)}</section></div>"
        )
        return page(SITE, "Search results", body, NAV)

    async def product(request: Request) -> Response:
        item = db.one("SELECT * FROM products WHERE id = ?", [as_int(request.path_params["pid"], 0)])
        if item is None:
            return page(SITE, "Product not found", "<p>No such product.</p>", NAV)
        return page(SITE, item["name"], _product_body(item), NAV)

    async def reviews(request: Request) -> Response:
        rows = db.all(
            "SELECT author, stars, text FROM reviews WHERE product_id = ? ORDER BY id",
            [as_int(request.path_params["pid"], 0)],
        )
        return JSONResponse(rows)

    async def api_cart(request: Request) -> Response:
        data = await request.json()
        error = _add_to_cart(db, as_int(data.get("product_id"), 0), as_int(data.get("quantity"), 0))
        count = db.one("SELECT coalesce(sum(quantity), 0) AS n FROM cart")["n"]
        return JSONResponse({"error": error, "count": count}, status_code=400 if error else 200)

    async def cart_add(request: Request) -> Response:
        form = await form_of(request)
        _add_to_cart(db, as_int(form.get("product_id"), 0), as_int(form.get("quantity"), 0))
        return redirect("/cart")

    async def cart_remove(request: Request) -> Response:
        db.run("DELETE FROM cart WHERE id = ?", [as_int((await form_of(request)).get("line"), 0)])
        return redirect("/cart")

    async def cart(request: Request) -> Response:
        return _cart_page(db)

    return [
        Route("/", home),
        Route("/search", search),
        Route("/product/{pid}", product),
        Route("/api/product/{pid}/reviews", reviews),
        Route("/api/cart", api_cart, methods=["POST"]),
        Route("/cart/add", cart_add, methods=["POST"]),
        Route("/cart/remove", cart_remove, methods=["POST"]),
        Route("/cart", cart),
        *_order_routes(db),
    ]


PRODUCT_JS = """
<script>
const form = document.getElementById('add-form');
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const data = {product_id: form.product_id.value, quantity: form.quantity.value};
  const reply = await fetch('/api/cart', {method: 'POST', headers: {'content-type': 'application/json'},
                                          body: JSON.stringify(data)});
  const body = await reply.json();
  const dialog = document.getElementById('added');
  document.getElementById('added-text').textContent =
    body.error ? body.error : 'Added to your cart. Items in cart: ' + body.count;
  dialog.showModal();
});
document.getElementById('continue').addEventListener('click', () => document.getElementById('added').close());
fetch('/api/product/' + form.product_id.value + '/reviews').then(r => r.json()).then(rows => {
  const list = document.getElementById('reviews');
  list.innerHTML = '';
  for (const row of rows) {
    const item = document.createElement('li');
    item.textContent = row.author + ' (' + row.stars + ' stars): ' + row.text;
    list.appendChild(item);
  }
});
</script>"""


def _product_body(item: dict) -> str:
    stock = f"{item['stock']} in stock" if item["stock"] > 0 else "Out of stock"
    facts = [
        ("Brand", item["brand"]),
        ("Category", item["category"]),
        ("Color", item["color"]),
        ("Price", f"${item['price']:.2f}"),
        ("Rating", f"{item['rating']} out of 5"),
        ("Availability", stock),
    ]
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    return (
        f'<table aria-label="Product details">{table}</table><p>{esc(item["description"])}</p>'
        f'<form id="add-form" method="post" action="/cart/add" class="card">'
        f'<input type="hidden" name="product_id" value="{item["id"]}">'
        + field_html("Quantity", "quantity", 1, "number", min="1", max="10")
        + '<button type="submit">Add to cart</button></form>'
        '<dialog id="added" aria-label="Added to cart"><p id="added-text"></p>'
        '<a href="/cart">Go to cart</a> '
        '<button type="button" id="continue">Continue shopping</button></dialog>'
        "<h2>Customer reviews</h2>"
        '<ul id="reviews" aria-label="Customer reviews"><li>Loading reviews...</li></ul>' + PRODUCT_JS
    )


def _add_to_cart(db: SiteDB, product_id: int | None, quantity: int | None) -> str:
    """Add to the cart; returns an error sentence ('' when it worked)."""
    item = db.one("SELECT * FROM products WHERE id = ?", [product_id])
    if item is None:
        return "No such product."
    if quantity is None or not 1 <= quantity <= 10:
        return "Quantity must be between 1 and 10."
    in_cart = db.one("SELECT id, quantity FROM cart WHERE product_id = ?", [product_id])
    total = quantity + (in_cart["quantity"] if in_cart else 0)
    if item["stock"] == 0:
        return "This product is out of stock."
    if total > item["stock"]:
        return f"Only {item['stock']} left in stock."
    if in_cart:
        db.run("UPDATE cart SET quantity = ? WHERE id = ?", [total, in_cart["id"]])
    else:
        db.run("INSERT INTO cart(product_id, quantity) VALUES (?, ?)", [product_id, quantity])
    return ""


def _cart_lines(db: SiteDB) -> list[dict]:
    return db.all(
        "SELECT cart.id AS line, cart.quantity, products.* FROM cart JOIN products "
        "ON products.id = cart.product_id ORDER BY cart.id"
    )


def _cart_page(db: SiteDB) -> HTMLResponse:
    lines = _cart_lines(db)
    rows = "".join(
        f"<tr><td>{esc(line['name'])}</td><td>{line['quantity']}</td><td>${line['price']:.2f}</td><td>"
        f'<form method="post" action="/cart/remove"><input type="hidden" name="line" value="{line["line"]}">'
        f'<button type="submit" aria-label="Remove {esc(line["name"])}">Remove</button></form></td></tr>'
        for line in lines
    )
    if not lines:
        return page(SITE, "Your cart", "<p>Your cart is empty.</p>", NAV)
    total = sum(line["price"] * line["quantity"] for line in lines)
    body = (
        f'<table aria-label="Cart"><tr><th>Product</th><th>Quantity</th><th>Price</th><th></th></tr>{rows}'
        f'</table><p>Total: ${total:.2f}</p><a href="/checkout">Proceed to checkout</a>'
    )
    return page(SITE, "Your cart", body, NAV)


def _checkout_form(values: dict[str, str], errors: list[str]) -> str:
    return (
        errors_html(errors)
        + '<form method="post" action="/checkout" class="card" aria-label="Checkout">'
        + field_html("Full name", "name", values.get("name", ""), required="required")
        + "<br>"
        + field_html("Street address", "street", values.get("street", ""), required="required")
        + "<br>"
        + field_html("City", "city", values.get("city", ""), required="required")
        + "<br>"
        + field_html("Postcode", "postcode", values.get("postcode", ""), required="required")
        + "<br>"
        + select_html("Shipping", "shipping", SHIPPING, values.get("shipping", "standard"))
        + "<br>"
        + select_html("Payment method", "payment", PAYMENT, values.get("payment", "card"))
        + "<br>"
        + '<button type="submit">Place order</button></form>'
    )


def _checkout_errors(db: SiteDB, form: dict[str, str]) -> list[str]:
    errors = [
        f"{label} is required."
        for key, label in [
            ("name", "Full name"),
            ("street", "Street address"),
            ("city", "City"),
            ("postcode", "Postcode"),
        ]
        if not form.get(key)
    ]
    if form.get("postcode") and not POSTCODE.match(form["postcode"]):
        errors.append("Postcode must be 4 to 8 letters, digits or spaces.")
    if form.get("shipping") not in dict(SHIPPING) or form.get("payment") not in dict(PAYMENT):
        errors.append("Choose a shipping option and a payment method.")
    if not _cart_lines(db):
        errors.append("Your cart is empty.")
    return errors


def _order_routes(db: SiteDB) -> list[Route]:
    async def checkout(request: Request) -> Response:
        if request.method == "GET":
            account = db.one("SELECT * FROM account WHERE id = 1") or {}
            values = {k: str(account.get(k, "")) for k in ("name", "street", "city", "postcode")}
            return page(SITE, "Checkout", _checkout_form(values, []), NAV)
        form = await form_of(request)
        errors = _checkout_errors(db, form)
        if errors:
            return page(SITE, "Checkout", _checkout_form(form, errors), NAV)
        lines = _cart_lines(db)
        total = round(sum(line["price"] * line["quantity"] for line in lines), 2)
        order_id = db.run(
            "INSERT INTO orders(name, street, city, postcode, shipping, payment, total, status, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'processing', '2026-06-01')",
            [
                form["name"],
                form["street"],
                form["city"],
                form["postcode"],
                form["shipping"],
                form["payment"],
                total,
            ],
        )
        for line in lines:
            db.run(
                "INSERT INTO order_items(order_id, product_id, quantity, price) VALUES (?, ?, ?, ?)",
                [order_id, line["id"], line["quantity"], line["price"]],
            )
            db.run("UPDATE products SET stock = stock - ? WHERE id = ?", [line["quantity"], line["id"]])
        db.run("DELETE FROM cart")
        return redirect(f"/orders/{order_id}")

    async def orders(request: Request) -> Response:
        rows = db.all("SELECT * FROM orders ORDER BY id DESC")
        items = "".join(
            f'<li><a href="/orders/{o["id"]}">Order #{o["id"]}</a> {esc(o["created"])} '
            f"{esc(o['status'])} ${o['total']:.2f}</li>"
            for o in rows
        )
        return page(SITE, "Your orders", f"<ul>{items}</ul>", NAV)

    async def order(request: Request) -> Response:
        oid = as_int(request.path_params["oid"], 0)
        row = db.one("SELECT * FROM orders WHERE id = ?", [oid])
        if row is None:
            return page(SITE, "Order not found", "<p>No such order.</p>", NAV)
        if request.method == "POST" and row["status"] == "processing":
            db.run("UPDATE orders SET status = 'cancelled' WHERE id = ?", [oid])
            return redirect(f"/orders/{oid}")
        return page(SITE, f"Order #{oid}", _order_body(db, row), NAV)

    async def account(request: Request) -> Response:
        return await _account(db, request)

    return [
        Route("/checkout", checkout, methods=["GET", "POST"]),
        Route("/orders", orders),
        Route("/orders/{oid}", order, methods=["GET", "POST"]),
        Route("/account", account, methods=["GET", "POST"]),
    ]


def _order_body(db: SiteDB, row: dict) -> str:
    items = db.all(
        "SELECT order_items.*, products.name FROM order_items JOIN products ON "
        "products.id = order_items.product_id WHERE order_id = ?",
        [row["id"]],
    )
    lines = "".join(
        f"<li>{item['quantity']} x {esc(item['name'])} at ${item['price']:.2f}</li>" for item in items
    )
    cancel = (
        '<form method="post"><button type="submit">Cancel order</button></form>'
        if row["status"] == "processing"
        else ""
    )
    return (
        f'<p class="ok" role="status">Status: {esc(row["status"])}</p><ul>{lines}</ul>'
        f"<p>Ship to {esc(row['name'])}, {esc(row['street'])}, {esc(row['city'])} {esc(row['postcode'])} "
        f"by {esc(row['shipping'])}; total ${row['total']:.2f}</p>{cancel}"
    )


ACCOUNT_FIELDS = [
    ("name", "Full name"),
    ("email", "Email"),
    ("phone", "Phone"),
    ("street", "Street address"),
    ("city", "City"),
    ("postcode", "Postcode"),
]


async def _account(db: SiteDB, request: Request) -> Response:
    notice, errors = "", []
    values = db.one("SELECT * FROM account WHERE id = 1") or {}
    if request.method == "POST":
        form = await form_of(request)
        errors = [f"{label} is required." for key, label in ACCOUNT_FIELDS if not form.get(key)]
        if form.get("email") and "@" not in form["email"]:
            errors.append("Email must contain @.")
        if not errors:
            db.run(
                "UPDATE account SET name=?, email=?, phone=?, street=?, city=?, postcode=? WHERE id = 1",
                [form[key] for key, _ in ACCOUNT_FIELDS],
            )
            notice = '<p class="ok" role="status">Your details were saved.</p>'
        values = form
    fields = "<br>".join(field_html(label, key, values.get(key, "")) for key, label in ACCOUNT_FIELDS)
    body = (
        notice + errors_html(errors) + '<form method="post" class="card" aria-label="Account details">'
        f'{fields}<br><button type="submit">Save changes</button></form>'
    )
    return page(SITE, "Your account", body, NAV)


SITE = Site(
    name="shop",
    title="Orchard Shop",
    schema=SCHEMA,
    rows=shop_data.rows,
    routes=routes,
    state_tables=("products", "cart", "orders", "order_items", "account"),
)
