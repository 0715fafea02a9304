"""web_research: answer two facts about an invented place or thing from the bundled search corpus.

Everything is made up, so the facts cannot come from a model's memory. A second page about something
with the same name (a tunnel beside the bridge, a festival in another town) carries different numbers; the
wrong plan reads that page and reports its facts.
"""

from __future__ import annotations

import random

from orchard_envs.tasks.claw.families.common import act, build_task, call_made, component, finish, template
from orchard_envs.tasks.claw.families.pools import CITIES
from orchard_envs.tasks.claw.task import ClawTask

TEMPLATES = {
    "main": {
        "train": [
            "Use the web search to find out {question} Please give me both facts.",
            "Quick research question: {question} Look it up and answer with both numbers.",
        ],
        "test": [
            "I need two facts from the web: {question} Reply with both.",
            "Can you search online and tell me {question} Both details, please.",
        ],
    }
}
NAMES = {
    "train": ["Larkspur", "Quillon", "Ashgrove", "Brindle", "Corvane", "Dunmere", "Elsworth", "Fallowby"],
    "test": [
        "Gorsefield",
        "Hollin",
        "Ivybridge",
        "Juniper Vale",
        "Kestermoor",
        "Loxley",
        "Marrowdale",
        "Nettlecombe",
    ],
}


# Each kind: (page title, page text, question per split, answer) with {name}, {city}, {x}, {y} filled in.
KINDS = {
    "bridge": (
        "{name} Bridge ({city})",
        "The {name} Bridge carries the ring road over the river in {city}. It opened to traffic in {x} and "
        "is {y} metres long, which made it the longest span in the region at the time.",
        {
            "train": "when the {name} Bridge in {city} opened and how long it is in metres.",
            "test": "the opening year of the {name} Bridge in {city} and its length in metres.",
        },
        "The {name} Bridge opened in {x} and is {y} metres long.",
    ),
    "festival": (
        "{name} Lantern Festival",
        "The {name} Lantern Festival in {city} was first held in {x}. The most recent edition drew around "
        "{y} visitors over three evenings.",
        {
            "train": "the year the {name} Lantern Festival in {city} started and how many visitors it had "
            "most recently.",
            "test": "in which year the {name} Lantern Festival ({city}) was first held and its latest "
            "visitor count.",
        },
        "The {name} Lantern Festival started in {x} and recently drew about {y} visitors.",
    ),
    "company": (
        "{name} Robotics - company profile",
        "{name} Robotics is a maker of warehouse robots based in {city}. It was founded in {x} and today "
        "employs {y} people across two sites.",
        {
            "train": "when {name} Robotics was founded and how many people it employs.",
            "test": "the founding year of {name} Robotics and its current headcount.",
        },
        "{name} Robotics was founded in {x} and employs {y} people.",
    ),
}
# The look-alike page for each kind: same name, different subject and numbers.
LOOKALIKES = {
    "bridge": ("{name} Tunnel ({city})", "The {name} Tunnel in {city} opened in {x}; it is {y} metres long."),
    "festival": ("{name} Music Festival", "The {name} Music Festival began in {x} and sold {y} tickets."),
    "company": (
        "{name} Robotics Club",
        "The {name} Robotics Club, a school team, was founded in {x} and has {y} members.",
    ),
}
FILLER = [
    (
        "Opening hours of public libraries",
        "Most branch libraries open at 9:00 and close at 18:00 on weekdays.",
    ),
    ("How to descale a kettle", "Boil a mix of water and white vinegar, leave it for an hour, then rinse."),
    ("Train strikes this month", "Regional services run a reduced timetable on the affected days."),
    ("Best houseplants for low light", "Snake plants and pothos tolerate shade and irregular watering."),
    ("Guide to the city marathon", "The route passes the old harbour twice; water stations every 5 km."),
]


def _fill(text: str, **values: object) -> str:
    return text.format(**values)


def build(rng: random.Random, split: str, index: int) -> ClawTask:
    """One task; deterministic for a given `rng` state (the suites are generated from seeds)."""
    kind = rng.choice(sorted(KINDS))
    name, city = rng.choice(NAMES[split]), rng.choice(CITIES[split])
    title, text, questions, answer = KINDS[kind]
    x, y = rng.randrange(1950, 2015), rng.randrange(120, 9000)
    lx, ly = x + rng.randrange(3, 30), y + rng.randrange(50, 900)
    while str(x) in f"{lx} {ly}" or str(y) in f"{lx} {ly}":  # the wrong answer must not hold a right fact
        lx, ly = x + rng.randrange(3, 30), y + rng.randrange(50, 900)
    other_city = rng.choice([c for c in CITIES[split] if c != city])
    look_title, look_text = LOOKALIKES[kind]
    pages = [
        {"title": _fill(title, name=name, city=city), "text": _fill(text, name=name, city=city, x=x, y=y)},
        {
            "title": _fill(look_title, name=name, city=other_city),
            "text": _fill(look_text, name=name, city=other_city, x=lx, y=ly),
        },
        *(
            {"title": filler_title, "text": filler_text}
            for filler_title, filler_text in rng.sample(FILLER, 3)
        ),
    ]
    source, lookalike = pages[0], pages[1]
    rng.shuffle(pages)
    for number, page in enumerate(pages, 1):
        slug = "-".join(page["title"].lower().replace("(", "").replace(")", "").split())
        page.update(id=f"p{number}", url=f"https://wiki.example.org/{slug}")
    right, wrong_page = source["id"], lookalike["id"]
    pages = [{"id": p["id"], "url": p["url"], "title": p["title"], "text": p["text"]} for p in pages]
    question = _fill(questions[split], name=name, city=city)
    components = [
        component("first_fact", 2, {"type": "answer_contains", "all": [str(x)]}),
        component("second_fact", 2, {"type": "answer_contains", "all": [str(y)]}),
        component("read_the_source", 1, call_made("web_open", id=right)),
    ]
    query = f"{name} {kind}"
    oracle = [
        act("web_search", query=query),
        act("web_open", id=right),
        finish(_fill(answer, name=name, x=x, y=y)),
    ]
    wrong = [
        act("web_search", query=name),
        act("web_open", id=wrong_page),
        finish(_fill(answer, name=name, x=lx, y=ly)),
    ]
    return build_task(
        "web_research",
        split,
        index,
        prompt=template(TEMPLATES["main"], rng, split, question=question),
        tools=["web_search", "web_open"],
        fixtures={"search": {"pages": pages}},
        components=components,
        oracle=oracle,
        wrong=wrong,
        fault_at="web_open",
    )
