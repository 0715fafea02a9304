"""Desktop tasks (`desktop-mini`): OSWorld-style configs and evaluators over real Debian apps."""
