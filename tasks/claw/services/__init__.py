"""The simulated Claw services (mail, calendar, contacts, docs, todo, shop, search), one module each."""
