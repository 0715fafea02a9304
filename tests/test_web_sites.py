"""The self-hosted web sites over HTTP (no browser): pages, forms and validation, per-episode reset from
the seeded snapshot, and the token guard on the host's control routes."""

from __future__ import annotations

import time

import httpx
import pytest

from orchard_envs.tasks.web.catalog import load_suite
from orchard_envs.tasks.web.host import SiteHost
from orchard_envs.tasks.web.sites import mail_data, shop_data, travel_data, wiki_data
from orchard_envs.tasks.web.sites.common import CONTROL_HEADER, SiteDB, StaleEpisode, _request_episode

PAGES = {
    "shop": [
        "/",
        "/search?q=laptop&sort=price_asc&page=2",
        "/product/5",
        "/api/product/5/reviews",
        "/cart",
        "/checkout",
        "/orders",
        "/orders/1",
        "/account",
    ],
    "mail": [
        "/folder/inbox",
        "/api/messages?folder=inbox",
        "/message/3",
        "/compose",
        "/compose?reply_to=3",
        "/compose?forward=3",
        "/contacts",
    ],
    "travel": ["/", "/flights?origin=A&destination=A&date=2026-07-01&passengers=1", "/bookings"],
    "wiki": ["/", "/search?q=river", "/all"],
}


@pytest.fixture(scope="module")
def host():
    with SiteHost().start() as started:
        yield started


@pytest.fixture
def client(host):
    """A client that sends, as the browser does, the current episode's id with every request."""

    def current_episode(request: httpx.Request) -> None:
        request.headers.update(host.headers())

    hooks = {"request": [current_episode]}
    with httpx.Client(trust_env=False, follow_redirects=True, timeout=10, event_hooks=hooks) as http:
        yield http


def task_of(site: str):
    return next(task for task in load_suite("web-mini") if task.site == site)


def test_every_page_answers(host, client):
    for site, paths in PAGES.items():
        for path in paths:
            response = client.get(host.urls[site] + path)
            assert response.status_code == 200, (site, path, response.text[-500:])


def test_control_routes_need_the_token(host, client):
    """The attack: a page (or an agent's goto) calls the grader's routes to read or reset the state."""
    shop = host.urls["shop"]
    assert client.get(f"{shop}/_control/state").status_code == 404
    assert client.get(f"{shop}/_control/state", headers={CONTROL_HEADER: "guess"}).status_code == 404
    assert client.post(f"{shop}/_control/reset", json={"seed": 1}).status_code == 404
    assert host.state("shop")["orders"], "the host itself, holding the token, still reads the state"


def test_checkout_places_an_order_and_reset_removes_it(host, client):
    task = task_of("shop")
    host.reset(task)
    shop = host.urls["shop"]
    product = next(p for p in shop_data.products(task.seed) if p["stock"] >= 2)
    client.post(f"{shop}/cart/add", data={"product_id": product["id"], "quantity": 2})
    form = {
        "name": "Ann Lee",
        "street": "1 High St",
        "city": "Leeds",
        "postcode": "LS1 1AA",
        "shipping": "express",
        "payment": "card",
    }
    page = client.post(f"{shop}/checkout", data=form)
    assert "Status: processing" in page.text
    orders = host.state("shop")["orders"]
    assert orders[-1]["shipping"] == "express" and len(orders) == 4
    began = time.perf_counter()
    host.reset(task)
    print(f"reset of all four sites: {(time.perf_counter() - began) * 1000:.2f} ms")
    assert len(host.state("shop")["orders"]) == 3
    assert host.state("shop")["cart"] == []


def test_validation_errors_are_shown(host, client):
    host.reset(task_of("shop"))
    bad = client.post(
        host.urls["shop"] + "/checkout",
        data={"name": "A", "postcode": "!!", "shipping": "standard", "payment": "card"},
    )
    assert 'role="alert"' in bad.text and "Postcode must be" in bad.text and "Your cart is empty" in bad.text
    mail = client.post(host.urls["mail"] + "/compose", data={"to": "not-an-address", "subject": ""})
    assert "not a valid email address" in mail.text and "subject is required" in mail.text
    city = travel_data.cities(0)[0]
    same = client.get(host.urls["travel"] + f"/flights?origin={city}&destination={city}&date=2026-09-01")
    assert "must differ" in same.text and "scheduled from 2026-07-01" in same.text


def test_travel_booking_steps(host, client):
    task = task_of("travel")
    host.reset(task)
    travel = host.urls["travel"]
    flight = travel_data.flights(task.seed)[0]
    child = client.post(
        f"{travel}/book/{flight['id']}",
        data={
            "passengers": "1",
            "cabin": "economy",
            "name1": "Kid",
            "dob1": "2020-01-01",
            "email": "k@example.net",
        },
    )
    assert "must be an adult" in child.text
    extras = client.post(
        f"{travel}/book/{flight['id']}",
        data={
            "passengers": "1",
            "cabin": "economy",
            "name1": "Ann Lee",
            "dob1": "1980-02-03",
            "email": "a@example.net",
        },
    )
    assert "/draft/" in str(extras.url)
    review = client.post(str(extras.url), data={"bags": "2", "seat": "aisle", "insurance": "1"})
    assert "Total: $" in review.text
    client.post(str(review.url))
    (booking,) = host.state("travel")["bookings"]
    assert booking["bags"] == 2 and booking["seat"] == "aisle" and booking["insurance"] == 1
    assert booking["total"] == flight["economy"] + 2 * travel_data.BAG_PRICE + travel_data.INSURANCE_PRICE


def test_mail_reply_is_threaded(host, client):
    task = task_of("mail")
    host.reset(task)
    mail = host.urls["mail"]
    source = mail_data.messages(task.seed)[0]
    client.post(
        f"{mail}/compose",
        data={"to": source["sender"], "subject": "Re: x", "body": "ok", "in_reply_to": str(source["id"])},
    )
    sent = [m for m in host.state("mail")["messages"] if m["folder"] == "sent"]
    assert sent[-1]["in_reply_to"] == source["id"] and sent[-1]["recipients"] == source["sender"]


def test_seeded_data_is_deterministic_and_differs_by_seed():
    for module in (shop_data, mail_data, travel_data, wiki_data):
        assert module.rows(3) == module.rows(3)
        assert module.rows(3) != module.rows(4)
    names = [p["name"] for p in shop_data.products(0)]
    assert len(names) == len(set(names)), "product names are link names: they must be unique"
    subjects = [m["subject"] for m in mail_data.messages(0)]
    assert len(subjects) == len(set(subjects))


def test_one_reset_clears_what_an_episode_wrote_on_every_site(host, client):
    """An episode on the wiki must not see the order or the mail an earlier episode left on other sites."""
    host.reset(task_of("shop"))
    client.post(host.urls["mail"] + "/compose", data={"to": "a@example.org", "subject": "leak", "body": "x"})
    client.post(
        host.urls["shop"] + "/account",
        data={
            "name": "X",
            "email": "x@y.z",
            "phone": "1",
            "street": "s",
            "city": "Leakville",
            "postcode": "AB12",
        },
    )
    assert any(m["subject"] == "leak" for m in host.state("mail")["messages"])
    host.reset(task_of("wiki"))
    assert not any(m["subject"] == "leak" for m in host.state("mail")["messages"])
    assert host.state("shop")["account"][0]["city"] != "Leakville"


def test_requests_of_an_ended_episode_are_refused_and_change_nothing(host, client):
    """A tab of the last episode that is still closing (a timer, a late POST) must not write into the
    state the next episode's reset just set: without the current episode's id a request gets 410."""
    host.reset(task_of("shop"))
    old = host.headers()
    host.reset(task_of("shop"))
    shop = host.urls["shop"]
    with httpx.Client(trust_env=False, timeout=10, headers=old) as stale:
        late = stale.post(f"{shop}/cart/add", data={"product_id": 1, "quantity": 1})
        assert late.status_code == 410 and "ended" in late.text
        assert stale.get(f"{shop}/cart").status_code == 410
    with httpx.Client(trust_env=False, timeout=10) as anonymous:
        assert anonymous.get(f"{shop}/").status_code == 410
    assert host.state("shop")["cart"] == []
    assert client.post(f"{shop}/cart/add", data={"product_id": 1, "quantity": 1}).status_code == 200
    assert len(host.state("shop")["cart"]) == 1


def test_a_write_begun_before_the_reset_is_refused_after_it():
    """A request that passed the door check and then waited (for its body, say) while the reset ran
    must not write into the new episode's database."""
    from orchard_envs.tasks.web.sites.shop import SITE

    db = SiteDB(SITE)
    db.reset(0, "first")
    token = _request_episode.set("first")
    try:
        db.run("DELETE FROM cart")  # its own episode: allowed
        db.reset(0, "second")
        with pytest.raises(StaleEpisode):
            db.run("DELETE FROM cart")
    finally:
        _request_episode.reset(token)
