"""The travel site: a flight search form with date inputs and validation errors, results sorted in the
page by JavaScript, and a three-step booking (passengers, extras, review) ending in a confirmation modal."""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchard_envs.tasks.web.sites import travel_data
from orchard_envs.tasks.web.sites.common import (
    Site,
    SiteDB,
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
CREATE TABLE cities(name TEXT PRIMARY KEY);
CREATE TABLE flights(id INTEGER PRIMARY KEY, code TEXT, airline TEXT, origin TEXT, destination TEXT,
  date TEXT, depart TEXT, arrive TEXT, duration INTEGER, stops INTEGER, economy INTEGER, business INTEGER);
CREATE TABLE drafts(id INTEGER PRIMARY KEY, flight_id INTEGER, cabin TEXT, passengers TEXT, email TEXT,
  bags INTEGER, seat TEXT, insurance INTEGER);
CREATE TABLE bookings(id INTEGER PRIMARY KEY, ref TEXT, flight_id INTEGER, cabin TEXT, passengers TEXT,
  email TEXT, bags INTEGER, seat TEXT, insurance INTEGER, total INTEGER);
"""
CABINS = [("economy", "Economy"), ("business", "Business")]
SEATS = [("none", "No preference"), ("window", "Window"), ("aisle", "Aisle")]
NAV = [("Search flights", "/"), ("My bookings", "/bookings")]
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.IGNORECASE)

SORT_JS = """
<script>
document.getElementById('f-sort').addEventListener('change', (event) => {
  const list = document.getElementById('results');
  const key = event.target.value;
  const items = [...list.children];
  items.sort((a, b) => (key === 'depart' ? a.dataset.depart.localeCompare(b.dataset.depart)
                                         : Number(a.dataset[key]) - Number(b.dataset[key])));
  items.forEach((item) => list.appendChild(item));
});
</script>"""


def _search_form(db: SiteDB, params: dict[str, str]) -> str:
    names = [row["name"] for row in db.all("SELECT name FROM cities ORDER BY name")]
    days = travel_data.dates()
    checked = " checked" if params.get("nonstop") else ""
    return (
        '<form method="get" action="/flights" class="card" aria-label="Flight search">'
        + select_html(
            "From", "origin", [("", "Choose a city"), *[(c, c) for c in names]], params.get("origin", "")
        )
        + select_html(
            "To",
            "destination",
            [("", "Choose a city"), *[(c, c) for c in names]],
            params.get("destination", ""),
        )
        + field_html("Departure date", "date", params.get("date", ""), "date", min=days[0], max=days[-1])
        + field_html("Passengers", "passengers", params.get("passengers", "1"), "number", min="1", max="4")
        + select_html("Cabin", "cabin", CABINS, params.get("cabin", "economy"))
        + f'<label><input type="checkbox" name="nonstop" value="1"{checked}> Nonstop only</label>'
        + '<button type="submit">Search flights</button></form>'
    )


def _search_errors(params: dict[str, str]) -> list[str]:
    errors = []
    if not params.get("origin") or not params.get("destination"):
        errors.append("Choose where you fly from and to.")
    elif params["origin"] == params["destination"]:
        errors.append("The destination must differ from the origin.")
    if not params.get("date"):
        errors.append("Enter a departure date.")
    elif params["date"] not in travel_data.dates():
        days = travel_data.dates()
        errors.append(f"Flights are scheduled from {days[0]} to {days[-1]} only.")
    if as_int(params.get("passengers", "1")) not in (1, 2, 3, 4):
        errors.append("Passengers must be between 1 and 4.")
    return errors


def _result(flight: dict, params: dict[str, str]) -> str:
    cabin = params.get("cabin", "economy") if params.get("cabin") in dict(CABINS) else "economy"
    stops = "Nonstop" if flight["stops"] == 0 else "1 stop"
    return (
        f'<li class="card" data-price="{flight[cabin]}" data-depart="{flight["depart"]}" '
        f'data-duration="{flight["duration"]}">{esc(flight["code"])} {esc(flight["airline"])}: '
        f"departs {flight['depart']}, arrives {flight['arrive']}, "
        f"{travel_data.duration_text(flight['duration'])}, "
        f"{stops}, ${flight[cabin]} "
        f'<form method="get" action="/book/{flight["id"]}" style="display:inline">'
        f'<input type="hidden" name="passengers" value="{esc(params.get("passengers", "1"))}">'
        f'<input type="hidden" name="cabin" value="{esc(cabin)}">'
        f'<button type="submit">Select {esc(flight["code"])}</button></form></li>'
    )


def routes(db: SiteDB) -> list[Route]:
    """The travel site's pages."""

    async def home(request: Request) -> Response:
        return page(SITE, "Find a flight", _search_form(db, {}), NAV)

    async def results(request: Request) -> Response:
        params = {k: v.strip() for k, v in request.query_params.items()}
        errors = _search_errors(params)
        body = errors_html(errors) + _search_form(db, params)
        if not errors:
            sql = "SELECT * FROM flights WHERE origin = ? AND destination = ? AND date = ?"
            sql += " AND stops = 0" if params.get("nonstop") else ""
            found = db.all(
                sql + " ORDER BY depart", [params["origin"], params["destination"], params["date"]]
            )
            sort = select_html(
                "Sort by",
                "sort",
                [("depart", "Departure time"), ("price", "Price"), ("duration", "Duration")],
            )
            items = "".join(_result(f, params) for f in found)
            none = f"<p>No flights found from {esc(params['origin'])} to {esc(params['destination'])}.</p>"
            body += (
                f'<div class="card">{sort}</div><ul id="results" aria-label="Flights">{items}</ul>{SORT_JS}'
                if found
                else none
            )
        return page(SITE, "Flights", body, NAV)

    async def book(request: Request) -> Response:
        return await _passengers_step(db, request)

    async def extras(request: Request) -> Response:
        return await _extras_step(db, request)

    async def review(request: Request) -> Response:
        return await _review_step(db, request)

    async def bookings(request: Request) -> Response:
        rows = db.all("SELECT bookings.*, flights.code FROM bookings JOIN flights ON flights.id = flight_id")
        items = "".join(
            f"<li>{esc(b['ref'])}: flight {esc(b['code'])}, {esc(b['cabin'])}, ${b['total']}</li>"
            for b in rows
        )
        return page(SITE, "My bookings", f"<ul>{items or '<li>No bookings yet.</li>'}</ul>", NAV)

    return [
        Route("/", home),
        Route("/flights", results),
        Route("/book/{fid}", book, methods=["GET", "POST"]),
        Route("/draft/{did}/extras", extras, methods=["GET", "POST"]),
        Route("/draft/{did}/review", review, methods=["GET", "POST"]),
        Route("/bookings", bookings),
    ]


def _passenger_errors(form: dict[str, str], count: int, flight_date: str) -> list[str]:
    errors = []
    for n in range(1, count + 1):
        if not form.get(f"name{n}"):
            errors.append(f"Passenger {n}: enter the full name.")
        try:
            born = dt.date.fromisoformat(form.get(f"dob{n}", ""))
        except ValueError:
            errors.append(f"Passenger {n}: enter the date of birth as a date.")
            continue
        age = (dt.date.fromisoformat(flight_date) - born).days / 365.25
        if age < 0:
            errors.append(f"Passenger {n}: the date of birth is in the future.")
        elif n == 1 and age < 18:
            errors.append("Passenger 1 must be an adult (18 or over).")
    if not EMAIL.match(form.get("email", "")):
        errors.append("Enter a valid contact email.")
    return errors


async def _passengers_step(db: SiteDB, request: Request) -> Response:
    flight = db.one("SELECT * FROM flights WHERE id = ?", [as_int(request.path_params["fid"], 0)])
    if flight is None:
        return page(SITE, "Flight not found", "<p>No such flight.</p>", NAV)
    form = await form_of(request) if request.method == "POST" else dict(request.query_params)
    count = min(max(as_int(form.get("passengers"), 1) or 1, 1), 4)
    cabin = form.get("cabin") if form.get("cabin") in dict(CABINS) else "economy"
    errors = _passenger_errors(form, count, flight["date"]) if request.method == "POST" else []
    if request.method == "POST" and not errors:
        people = [{"name": form[f"name{n}"], "dob": form[f"dob{n}"]} for n in range(1, count + 1)]
        did = db.run(
            "INSERT INTO drafts(flight_id, cabin, passengers, email, bags, seat, insurance) "
            "VALUES (?, ?, ?, ?, 0, 'none', 0)",
            [flight["id"], cabin, json.dumps(people), form["email"]],
        )
        return redirect(f"/draft/{did}/extras")
    fields = "".join(
        f"<fieldset><legend>Passenger {n}</legend>"
        + field_html(f"Passenger {n} full name", f"name{n}", form.get(f"name{n}", ""))
        + field_html(f"Passenger {n} date of birth", f"dob{n}", form.get(f"dob{n}", ""), "date")
        + "</fieldset>"
        for n in range(1, count + 1)
    )
    body = (
        f"<p>Step 1 of 3. Flight {esc(flight['code'])} {esc(flight['origin'])} to "
        f"{esc(flight['destination'])} on {flight['date']} at {flight['depart']}.</p>"
        + errors_html(errors)
        + f'<form method="post" class="card" aria-label="Passengers"><input type="hidden" name="passengers" '
        f'value="{count}"><input type="hidden" name="cabin" value="{cabin}">{fields}'
        + field_html("Contact email", "email", form.get("email", ""), "email")
        + '<button type="submit">Continue</button></form>'
    )
    return page(SITE, "Passenger details", body, NAV)


async def _extras_step(db: SiteDB, request: Request) -> Response:
    draft = db.one("SELECT * FROM drafts WHERE id = ?", [as_int(request.path_params["did"], 0)])
    if draft is None:
        return page(SITE, "Booking not found", "<p>No such booking in progress.</p>", NAV)
    if request.method == "POST":
        form = await form_of(request)
        bags = min(max(as_int(form.get("bags"), 0) or 0, 0), 3)
        seat = form.get("seat") if form.get("seat") in dict(SEATS) else "none"
        db.run(
            "UPDATE drafts SET bags = ?, seat = ?, insurance = ? WHERE id = ?",
            [bags, seat, int(bool(form.get("insurance"))), draft["id"]],
        )
        return redirect(f"/draft/{draft['id']}/review")
    bags = [(str(n), f"{n} bag{'s' if n != 1 else ''} (${n * travel_data.BAG_PRICE})") for n in range(4)]
    body = (
        '<p>Step 2 of 3.</p><form method="post" class="card" aria-label="Extras">'
        + select_html("Checked bags", "bags", bags, str(draft["bags"]))
        + "<br>"
        + select_html("Seat preference", "seat", SEATS, draft["seat"])
        + "<br>"
        + '<label><input type="checkbox" name="insurance" value="1"> Travel insurance</label> '
        f"<span>(${travel_data.INSURANCE_PRICE} per passenger)</span><br>"
        '<button type="submit">Continue</button></form>'
    )
    return page(SITE, "Extras", body, NAV)


def _total(flight: dict, draft: dict) -> int:
    people = len(json.loads(draft["passengers"]))
    return (
        flight[draft["cabin"]] * people
        + draft["bags"] * travel_data.BAG_PRICE
        + draft["insurance"] * travel_data.INSURANCE_PRICE * people
    )


async def _review_step(db: SiteDB, request: Request) -> Response:
    draft = db.one("SELECT * FROM drafts WHERE id = ?", [as_int(request.path_params["did"], 0)])
    if draft is None:
        return page(SITE, "Booking not found", "<p>No such booking in progress.</p>", NAV)
    flight = db.one("SELECT * FROM flights WHERE id = ?", [draft["flight_id"]])
    total = _total(flight, draft)
    if request.method == "POST":
        ref = secrets.token_hex(3).upper()
        db.run(
            "INSERT INTO bookings(ref, flight_id, cabin, passengers, email, bags, seat, insurance, total) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                ref,
                flight["id"],
                draft["cabin"],
                draft["passengers"],
                draft["email"],
                draft["bags"],
                draft["seat"],
                draft["insurance"],
                total,
            ],
        )
        db.run("DELETE FROM drafts WHERE id = ?", [draft["id"]])
        return page(
            SITE,
            "Booking confirmed",
            f'<p class="ok" role="status">Your booking reference is {ref}.</p>',
            NAV,
        )
    people = ", ".join(f"{p['name']} ({p['dob']})" for p in json.loads(draft["passengers"]))
    body = (
        f'<p>Step 3 of 3.</p><div class="card"><p>Flight {esc(flight["code"])}: {esc(flight["origin"])} to '
        f"{esc(flight['destination'])}, {flight['date']} {flight['depart']}, {esc(draft['cabin'])}</p>"
        f"<p>Passengers: {esc(people)}</p><p>Bags: {draft['bags']}, seat: {esc(draft['seat'])}, insurance: "
        f"{'yes' if draft['insurance'] else 'no'}</p><p>Total: ${total}</p></div>"
        '<button type="button" onclick="document.getElementById(\'confirm\').showModal()">'
        "Confirm booking</button>"
        f'<dialog id="confirm" aria-label="Confirm payment"><p>Pay ${total} now?</p><form method="post">'
        '<button type="submit">Pay now</button> <button type="button" '
        "onclick=\"document.getElementById('confirm').close()\">Go back</button></form></dialog>"
    )
    return page(SITE, "Review your booking", body, NAV)


SITE = Site(
    name="travel",
    title="Orchard Travel",
    schema=SCHEMA,
    rows=travel_data.rows,
    routes=routes,
    state_tables=("bookings", "drafts"),
)
