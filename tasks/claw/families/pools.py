"""Word lists the task families draw from, one pool per split, so test tasks meet names unseen in training.

All names, companies and places are made up; any resemblance is accidental.
"""

from __future__ import annotations

import datetime as dt

FIRST_NAMES = {
    "train": [
        "Dana",
        "Priya",
        "Marcus",
        "Elena",
        "Tomas",
        "Aisha",
        "Jonas",
        "Mei",
        "Rafael",
        "Ingrid",
        "Kwame",
        "Sofia",
        "Lucas",
        "Hana",
        "Oren",
        "Beatriz",
        "Felix",
        "Nadia",
        "Victor",
        "Yuki",
    ],
    "test": [
        "Greta",
        "Idris",
        "Lena",
        "Mateo",
        "Noor",
        "Pavel",
        "Rosa",
        "Sanjay",
        "Talia",
        "Umar",
        "Vera",
        "Wes",
        "Ximena",
        "Yannick",
        "Zora",
        "Anton",
        "Bianca",
        "Cyrus",
        "Delia",
        "Emil",
    ],
}
LAST_NAMES = {
    "train": [
        "Okafor",
        "Lindqvist",
        "Reyes",
        "Novak",
        "Haddad",
        "Brennan",
        "Castillo",
        "Nakamura",
        "Petrov",
        "Walsh",
        "Adeyemi",
        "Moreau",
        "Kowalski",
        "Sato",
        "Fischer",
        "Duarte",
    ],
    "test": [
        "Abara",
        "Bergstrom",
        "Cortez",
        "Dvorak",
        "Eriksen",
        "Farouk",
        "Gallagher",
        "Hoshino",
        "Ivanova",
        "Jensen",
        "Kiplagat",
        "Laurent",
        "Mancini",
        "Nyberg",
        "Ortega",
        "Quinn",
    ],
}
# (company, mail domain) of outside organisations: vendors, partners, new employers.
COMPANIES = {
    "train": [
        ("Brightline Supplies", "brightline.io"),
        ("Northwind Freight", "northwind-freight.com"),
        ("Cobalt Cloud", "cobaltcloud.net"),
        ("Pinecrest Catering", "pinecrest.co"),
        ("Harbor Analytics", "harboranalytics.com"),
        ("Tallgrass Media", "tallgrass.media"),
        ("Kestrel Labs", "kestrel-labs.com"),
        ("Orchid Travel", "orchidtravel.com"),
    ],
    "test": [
        ("Bluefin Logistics", "bluefin-log.com"),
        ("Quarry Software", "quarrysoft.io"),
        ("Meridian Print", "meridianprint.com"),
        ("Saltmarsh Events", "saltmarsh.events"),
        ("Vantage Ledger", "vantageledger.com"),
        ("Copperleaf Studio", "copperleaf.studio"),
        ("Ridgeway Air", "ridgewayair.com"),
        ("Lumen Grid", "lumengrid.net"),
    ],
}
TOPICS = {
    "train": [
        "Q2 budget review",
        "vendor onboarding",
        "roadmap sync",
        "hiring plan",
        "launch retro",
        "pricing update",
        "security audit prep",
        "customer survey results",
    ],
    "test": [
        "data migration plan",
        "partner renewal",
        "office move",
        "quarterly forecast",
        "support backlog",
        "brand refresh",
        "compliance checklist",
        "intern program",
    ],
}
TEAMS = {
    "train": ["Platform", "Growth", "Finance", "Design", "Sales"],
    "test": ["Infrastructure", "Marketing", "Legal", "Research", "Support"],
}
STREETS = {
    "train": ["14 Elm Row", "220 Harbour Street", "7 Mill Lane", "88 Station Road"],
    "test": ["31 Quayside Walk", "5 Orchard Close", "160 Beacon Avenue", "9 Tannery Yard"],
}
CITIES = {
    "train": ["Leeds", "Porto", "Gdansk", "Lyon"],
    "test": ["Bergen", "Valencia", "Brno", "Ghent"],
}
# Mondays of the weeks a split's tasks happen in ("today" is that Monday).
WEEKS = {
    "train": [dt.date(2026, 3, 2), dt.date(2026, 3, 9), dt.date(2026, 3, 16), dt.date(2026, 3, 23)],
    "test": [dt.date(2026, 4, 13), dt.date(2026, 4, 20), dt.date(2026, 4, 27), dt.date(2026, 5, 4)],
}
# Colleague mail that is nobody's target: (subject, body).
CHATTER = [
    ("Lunch on Thursday?", "A few of us are trying the new noodle place. Want to join?"),
    ("Notes from standup", "Quick recap: deploy moved to Wednesday, nothing else changed."),
    ("Parking garage closed Friday", "Facilities says the garage is shut for repairs all day Friday."),
    ("Re: slide template", "I dropped the updated template in the shared drive, use v3."),
    ("Birthday card for Sam", "Please sign the card at reception before Wednesday."),
    ("Desk move", "We're moving to the third floor next month; pack your desk by the 20th."),
]
