"""Scripted conversations about facts that change, generated from templates.

Six kinds, each a few turns with dates and the questions asked afterwards:

- ``update``: a fact is replaced by a new one ("I moved to Berlin last month").
- ``correction``: the user says an earlier statement was wrong (the old value never held).
- ``cascade``: a change makes a second, dependent fact obsolete (new city → the old gym).
- ``absence``: a fact ends with no successor ("I don't have a dog anymore").
- ``expiry``: a short-lived fact ("I'm in Oslo this week") is recalled inside its window only.
- ``as_of``: a question about the past ("where did I live before Berlin?") must bring the old
  fact back, marked as past.

Every turn carries the extraction a perfect model would return (``extraction``), written in
terms of the stored items' text (``match``) rather than of numbers: the scripted runner finds
the numbers in the prompt the extraction call actually received, so an item that the call was
not shown cannot be changed. Each question names what its recalled block must hold
(``must``: current, not marked past), must not hold (``must_not``) and must hold marked as past
(``past``). The content comes from pools of people, cities, jobs, pets and habits drawn with a
fixed seed, so the set is the same on every run and is not 80 copies of one sentence.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

__all__ = ["KINDS", "Question", "Scenario", "Step", "scenarios"]

KINDS = ("update", "correction", "cascade", "absence", "expiry", "as_of")
PER_KIND = 14


@dataclass(frozen=True)
class Step:
    """One turn: its date, the exchange, and the extraction a perfect model returns."""

    date: str
    user: str
    assistant: str
    extraction: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Question:
    """A question asked on ``date`` after the turns, and what its recalled block must show."""

    date: str
    text: str
    must: list[str] = field(default_factory=list)
    must_not: list[str] = field(default_factory=list)
    past: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Scenario:
    id: str
    kind: str
    turns: list[Step]
    questions: list[Question]
    #: Unrelated memories stored (direct API) on ``background_date``, between the turns: the
    #: newest items, so a cascade's dependent fact is shown to extraction only as an item
    #: related to the changed one, not as one of the latest.
    background: list[str] = field(default_factory=list)
    background_date: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- content pools ------------------------------------------------------------------------------

CITIES = [
    "Lisbon", "Berlin", "Oslo", "Madrid", "Toronto", "Nairobi", "Kyoto", "Porto", "Vienna",
    "Dublin", "Seoul", "Lima", "Warsaw", "Melbourne", "Montreal", "Bogota", "Tallinn", "Accra",
    "Lyon", "Austin",
]  # fmt: skip
COMPANIES = [
    "Netflix", "Stripe", "Spotify", "Shopify", "Airbus", "Siemens", "Canva", "Atlassian",
    "Zalando", "Klarna", "Adyen", "Datadog", "Ikea", "Lego",
]  # fmt: skip
PEOPLE = [
    "Ana", "Ines", "Priya", "Tomas", "Kofi", "Mei", "Lars", "Sofia", "Omar", "Yuki", "Elena",
    "Marco", "Nadia", "Hugo", "Zara", "Felix",
]  # fmt: skip
PETS = ["dog", "cat", "parrot", "rabbit", "hamster", "tortoise"]
PET_NAMES = ["Rex", "Luna", "Milo", "Bella", "Pip", "Nova", "Olive", "Toby", "Mochi", "Biscuit"]
SPORTS = ["tennis", "climbing", "rowing", "fencing", "squash", "volleyball", "badminton", "judo"]
CARS = ["Golf", "Corolla", "Clio", "Civic", "Prius", "Fiesta", "Octavia", "Mazda3"]
LANGUAGES = ["Japanese", "Portuguese", "German", "Korean", "Swahili", "Italian", "Finnish"]
DRINKS = ["espresso", "green tea", "matcha", "hot chocolate", "rooibos", "chai"]
GYMS = ["Iron Temple", "Pulse Fitness", "Atlas Gym", "Core Club", "Summit Boulders"]
STREETS = ["Maple Street", "Harbour Road", "Station Lane", "Mill Avenue", "Quarry Close"]
ALLERGENS = ["peanuts", "shellfish", "penicillin", "pollen", "latex", "sesame"]
SERVICES = ["Netflix", "Audible", "Duolingo Plus", "Spotify Premium", "the New Yorker"]
CLUBS = ["chess", "book", "hiking", "photography", "running", "choir"]
MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]  # fmt: skip
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _iso(day: date) -> str:
    return day.isoformat()


def _when(rng: random.Random, today: date) -> tuple[str, date]:
    """A relative time phrase and the date it resolves to, against ``today``."""
    options = [
        ("last week", today - timedelta(days=7)),
        ("yesterday", today - timedelta(days=1)),
        ("two weeks ago", today - timedelta(days=14)),
        ("at the start of this month", today.replace(day=1)),
        (f"in {MONTHS[today.month - 1]}", today.replace(day=1)),
        ("today", today),
    ]
    return rng.choice(options)


def _pick(rng: random.Random, pool: list[str], n: int) -> list[str]:
    return rng.sample(pool, n)


# -- topics that change: (first statement, stored text, change, new text, question, past q) --

# Each returns the pieces of one changing fact; ``a`` is the old value, ``b`` the new one.
_UPDATE_TOPICS: list[dict[str, str]] = [
    {
        "pool": "CITIES",
        "say": "I live in {a}.",
        "memory": "The user lives in {a}.",
        "change": "I moved to {b} {when}.",
        "new": "The user lives in {b}.",
        "ask": "Which city do I live in?",
        "ask_past": "Which city did I live in before {b}?",
    },
    {
        "pool": "COMPANIES",
        "say": "I work at {a} as an engineer.",
        "memory": "The user works at {a}.",
        "change": "I left {a} and started working at {b} {when}.",
        "new": "The user works at {b}.",
        "ask": "Which company do I work at?",
        "ask_past": "Where did I use to work before {b}?",
    },
    {
        "pool": "SPORTS",
        "say": "I play {a} every weekend.",
        "memory": "The user plays {a} every weekend.",
        "change": "I gave up {a}; I've been doing {b} every weekend since {when}.",
        "new": "The user does {b} every weekend.",
        "ask": "What do I do every weekend?",
        "ask_past": "What did I use to do every weekend?",
    },
    {
        "pool": "CARS",
        "say": "I drive a {a}.",
        "memory": "The user drives a {a}.",
        "change": "I sold the {a} and bought a {b} {when}.",
        "new": "The user drives a {b}.",
        "ask": "Which car do I drive?",
        "ask_past": "Which car did I drive before the {b}?",
    },
    {
        "pool": "LANGUAGES",
        "say": "I'm learning {a}.",
        "memory": "The user is learning {a}.",
        "change": "I stopped learning {a} and started learning {b} {when}.",
        "new": "The user is learning {b}.",
        "ask": "Which language am I learning?",
        "ask_past": "Which language was I learning before {b}?",
    },
    {
        "pool": "DRINKS",
        "say": "I drink {a} every morning.",
        "memory": "The user drinks {a} every morning.",
        "change": "I switched from {a} to {b} in the morning {when}.",
        "new": "The user drinks {b} every morning.",
        "ask": "What do I drink every morning?",
        "ask_past": "What did I use to drink every morning?",
    },
]

_CORRECTION_TOPICS: list[dict[str, str]] = [
    {
        "pool": "PEOPLE",
        "say": "My sister is called {a}.",
        "memory": "The user's sister is called {a}.",
        "fix": "Sorry, I got that wrong: my sister's name is {b}.",
        "new": "The user's sister is called {b}.",
        "ask": "What is my sister called?",
    },
    {
        "pool": "STREETS",
        "say": "I live on {a}.",
        "memory": "The user lives on {a}.",
        "fix": "Correction: I live on {b}, I mixed it up.",
        "new": "The user lives on {b}.",
        "ask": "Which street do I live on?",
    },
    {
        "pool": "ALLERGENS",
        "say": "I'm allergic to {a}.",
        "memory": "The user is allergic to {a}.",
        "fix": "I misspoke earlier: my allergy is to {b}.",
        "new": "The user is allergic to {b}.",
        "ask": "What am I allergic to?",
    },
    {
        "pool": "PEOPLE",
        "say": "My manager is {a}.",
        "memory": "The user's manager is {a}.",
        "fix": "Wait, that was wrong: my manager is {b}.",
        "new": "The user's manager is {b}.",
        "ask": "Who is my manager?",
    },
    {
        "pool": "PET_NAMES",
        "say": "My cat is called {a}.",
        "memory": "The user's cat is called {a}.",
        "fix": "Oops, my cat's name is {b}, I typed the wrong name.",
        "new": "The user's cat is called {b}.",
        "ask": "What is my cat called?",
    },
]

_POOLS = {
    "CITIES": CITIES,
    "COMPANIES": COMPANIES,
    "SPORTS": SPORTS,
    "CARS": CARS,
    "LANGUAGES": LANGUAGES,
    "DRINKS": DRINKS,
    "PEOPLE": PEOPLE,
    "STREETS": STREETS,
    "ALLERGENS": ALLERGENS,
    "PET_NAMES": PET_NAMES,
}

_ACK = "Got it, thanks for telling me."

# Unrelated memories; none shares a content word with a scenario's turns or facts.
FILLERS = [
    "The user likes jazz.",
    "The user has two siblings.",
    "The user enjoys hiking in autumn.",
    "The user reads science fiction.",
    "The user is afraid of spiders.",
    "The user's favourite colour is green.",
    "The user collects stamps.",
    "The user cooks pasta on Fridays.",
    "The user watches football on Sundays.",
    "The user was born in April.",
    "The user prefers window seats.",
    "The user dislikes cilantro.",
]


def _start(rng: random.Random) -> date:
    """A first-turn date between 2024-01 and 2025-12."""
    return date(2024, 1, 1) + timedelta(days=rng.randrange(0, 700))


def _update(rng: random.Random, n: int, *, as_of: bool) -> Scenario:
    topic = _UPDATE_TOPICS[n % len(_UPDATE_TOPICS)]
    a, b = _pick(rng, _POOLS[topic["pool"]], 2)
    d1 = _start(rng)
    d2 = d1 + timedelta(days=rng.randrange(90, 400))
    phrase, since = _when(rng, d2)
    old = topic["memory"].format(a=a)
    new = topic["new"].format(b=b)
    turns = [
        Step(_iso(d1), topic["say"].format(a=a), _ACK, {"add": [{"content": old}]}),
        Step(
            _iso(d2),
            topic["change"].format(a=a, b=b, when=phrase),
            "Thanks, noted.",
            {"supersede": [{"match": a, "content": new, "valid_from": _iso(since)}]},
        ),
    ]
    later = d2 + timedelta(days=rng.randrange(3, 30))
    kind = "as_of" if as_of else "update"
    if as_of:
        questions = [Question(_iso(later), topic["ask_past"].format(b=b), past=[a])]
    else:
        questions = [Question(_iso(later), topic["ask"], must=[b], must_not=[a])]
    return Scenario(f"{kind}-{n:02d}", kind, turns, questions)


def _as_of_year(rng: random.Random, n: int) -> Scenario:
    """A job held over a known span, asked about by year ("where did I work in 2024?")."""
    a, b = _pick(rng, COMPANIES, 2)
    year = rng.choice([2023, 2024])
    d1 = date(year - 1, rng.randrange(1, 12), rng.randrange(1, 28))
    d2 = date(year + 1, rng.randrange(2, 12), rng.randrange(1, 28))
    month = MONTHS[d2.month - 1]
    turns = [
        Step(
            _iso(d1),
            f"I just joined {a} as a designer.",
            _ACK,
            {"add": [{"content": f"The user works at {a}.", "valid_from": _iso(d1)}]},
        ),
        Step(
            _iso(d2),
            f"I left {a} and I've been at {b} since {month}.",
            "Congratulations on the new job.",
            {
                "supersede": [
                    {
                        "match": a,
                        "content": f"The user works at {b}.",
                        "valid_from": _iso(d2.replace(day=1)),
                    }
                ]
            },
        ),
    ]
    asked = d2 + timedelta(days=rng.randrange(10, 60))
    question = Question(_iso(asked), f"Which company did I work at in {year}?", past=[a])
    return Scenario(f"as_of-{n:02d}", "as_of", turns, [question])


def _correction(rng: random.Random, n: int) -> Scenario:
    topic = _CORRECTION_TOPICS[n % len(_CORRECTION_TOPICS)]
    a, b = _pick(rng, _POOLS[topic["pool"]], 2)
    d1 = _start(rng)
    d2 = d1 + timedelta(days=rng.randrange(0, 20))
    old = topic["memory"].format(a=a)
    turns = [
        Step(_iso(d1), topic["say"].format(a=a), _ACK, {"add": [{"content": old}]}),
        Step(
            _iso(d2),
            topic["fix"].format(a=a, b=b),
            "Thanks for the correction.",
            {"update": [{"match": a, "content": topic["new"].format(b=b)}]},
        ),
    ]
    asked = d2 + timedelta(days=rng.randrange(1, 60))
    questions = [Question(_iso(asked), topic["ask"], must=[b], must_not=[a])]
    return Scenario(f"correction-{n:02d}", "correction", turns, questions)


def _cascade(rng: random.Random, n: int) -> Scenario:
    d1 = _start(rng)
    d2 = d1 + timedelta(days=rng.randrange(60, 300))
    phrase, since = _when(rng, d2)
    variant = n % 3
    if variant == 0:
        a, b = _pick(rng, CITIES, 2)
        gym = rng.choice(GYMS)
        say, also = f"I live in {a}.", f"I train at {gym}, a gym near my flat in {a}."
        main, dependent = f"The user lives in {a}.", f"The user trains at {gym} in {a}."
        change = f"I live in {b} now, since {phrase}."
        new = f"The user lives in {b}."
        questions = [
            Question("", "Which city do I live in?", must=[b], must_not=[a]),
            Question("", "Which gym do I train at?", must_not=[gym]),
        ]
    elif variant == 1:
        a, b = _pick(rng, COMPANIES, 2)
        boss = rng.choice(PEOPLE)
        say, also = f"I work at {a}.", f"My manager at {a} is {boss}."
        main, dependent = f"The user works at {a}.", f"The user's manager at {a} is {boss}."
        change = f"I changed jobs: I work at {b} now, since {phrase}."
        new = f"The user works at {b}."
        questions = [
            Question("", "Which company do I work at?", must=[b], must_not=[a]),
            Question("", "Who is my manager?", must_not=[boss]),
        ]
    else:
        a, b = _pick(rng, CARS, 2)
        street = rng.choice(STREETS)
        say, also = f"I drive a {a}.", f"I park the {a} in the garage on {street}."
        main = f"The user drives a {a}."
        dependent = f"The user parks the {a} in a garage on {street}."
        change = f"I drive a {b} now, I got it {phrase}."
        new = f"The user drives a {b}."
        questions = [
            Question("", "Which car do I drive?", must=[b], must_not=[a]),
            Question("", "Where do I park my car?", must_not=[street]),
        ]
    # The dependent fact comes in a later conversation, so nothing but its relation to the
    # changed fact (a shared name) brings it in front of extraction when the change comes.
    d1b = d1 + timedelta(days=rng.randrange(1, 20))
    turns = [
        Step(_iso(d1), say, _ACK, {"add": [{"content": main}]}),
        Step(_iso(d1b), also, _ACK, {"add": [{"content": dependent}]}),
        Step(
            _iso(d2),
            change,
            "Thanks for the update.",
            {
                "supersede": [{"match": main, "content": new, "valid_from": _iso(since)}],
                "close": [{"match": dependent, "valid_to": _iso(since)}],
            },
        ),
    ]
    asked = _iso(d2 + timedelta(days=rng.randrange(2, 40)))
    questions = [Question(asked, q.text, q.must, q.must_not, q.past) for q in questions]
    between = _iso(d1b + (d2 - d1b) / 2)
    return Scenario(f"cascade-{n:02d}", "cascade", turns, questions, FILLERS[:10], between)


def _absence(rng: random.Random, n: int) -> Scenario:
    d1 = _start(rng)
    d2 = d1 + timedelta(days=rng.randrange(30, 400))
    phrase, since = _when(rng, d2)
    variant = n % 5
    if variant == 0:
        pet, name = rng.choice(PETS), rng.choice(PET_NAMES)
        say, memory = f"I have a {pet} named {name}.", f"The user has a {pet} named {name}."
        end = f"Sad news: {name} died {phrase}. I don't have a {pet} anymore."
        ask, gone = "Do I have any pets?", name
    elif variant == 1:
        sport = rng.choice(SPORTS)
        say, memory = f"I play {sport} on Tuesdays.", f"The user plays {sport} on Tuesdays."
        end = f"I quit {sport} {phrase}; my Tuesdays are free now."
        ask, gone = "What do I do on Tuesdays?", sport
    elif variant == 2:
        service = rng.choice(SERVICES)
        say, memory = f"I subscribe to {service}.", f"The user subscribes to {service}."
        end = f"I cancelled {service} {phrase}."
        ask, gone = "Which subscriptions do I pay for?", service
    elif variant == 3:
        club = rng.choice(CLUBS)
        say = f"I'm a member of a {club} club."
        memory = f"The user is a member of a {club} club."
        end = f"I left the {club} club {phrase}, I'm not a member any more."
        ask, gone = "Which club am I a member of?", f"{club} club"
    else:
        partner = rng.choice(PEOPLE)
        say, memory = (
            f"My partner {partner} is a chef.",
            f"The user's partner is {partner}, a chef.",
        )
        end = f"{partner} and I broke up {phrase}."
        ask, gone = "Who is my partner?", partner
    turns = [
        Step(_iso(d1), say, _ACK, {"add": [{"content": memory}]}),
        Step(
            _iso(d2),
            end,
            "I'm sorry to hear that.",
            {"close": [{"match": memory, "valid_to": _iso(since)}]},
        ),
    ]
    asked = d2 + timedelta(days=rng.randrange(2, 40))
    return Scenario(
        f"absence-{n:02d}", "absence", turns, [Question(_iso(asked), ask, must_not=[gone])]
    )


def _expiry(rng: random.Random, n: int) -> Scenario:
    d1 = _start(rng)
    variant = n % 5
    if variant == 0:
        city = rng.choice(CITIES)
        say = f"I'm in {city} this week for a conference."
        memory = f"The user is in {city} this week for a conference."
        ends = d1 + timedelta(days=7 - d1.weekday())  # next Monday
        ask, keyword = "Which city am I in this week?", city
    elif variant == 1:
        weekday = rng.randrange(0, 5)
        say = f"I'm on call until {WEEKDAYS[weekday]}."
        memory = f"The user is on call until {WEEKDAYS[weekday]}."
        ends = d1 + timedelta(days=(weekday - d1.weekday()) % 7 + 1)
        ask, keyword = "Am I on call?", "on call"
    elif variant == 2:
        say = "I have a cold today, so keep it short."
        memory = "The user has a cold today."
        ends = d1 + timedelta(days=1)
        ask, keyword = "Do I have a cold?", "cold"
    elif variant == 3:
        guest = rng.choice(PEOPLE)
        say = f"My friend {guest} is staying with me until Sunday."
        memory = f"The user's friend {guest} is staying with the user until Sunday."
        ends = d1 + timedelta(days=(6 - d1.weekday()) % 7 + 1)
        ask, keyword = "Who is staying with me?", guest
    else:
        city = rng.choice(CITIES)
        say = f"I'm working remotely from {city} this month."
        memory = f"The user is working remotely from {city} this month."
        ends = (d1.replace(day=1) + timedelta(days=32)).replace(day=1)
        ask, keyword = "Where am I working remotely from this month?", city
    turns = [
        Step(
            _iso(d1),
            say,
            _ACK,
            {"add": [{"content": memory, "expires_at": _iso(ends)}]},
        )
    ]
    questions = [
        Question(_iso(d1), ask, must=[keyword]),
        Question(_iso(ends + timedelta(days=rng.randrange(1, 20))), ask, must_not=[keyword]),
    ]
    return Scenario(f"expiry-{n:02d}", "expiry", turns, questions)


def scenarios(seed: int = 12) -> list[Scenario]:
    """The benchmark's scenarios: ``PER_KIND`` of each kind, the same for a given seed."""
    rng = random.Random(seed)
    out: list[Scenario] = []
    for n in range(PER_KIND):
        out.append(_update(rng, n, as_of=False))
    for n in range(PER_KIND):
        out.append(_correction(rng, n))
    for n in range(PER_KIND):
        out.append(_cascade(rng, n))
    for n in range(PER_KIND):
        out.append(_absence(rng, n))
    for n in range(PER_KIND):
        out.append(_expiry(rng, n))
    for n in range(PER_KIND):
        out.append(_as_of_year(rng, n) if n % 3 == 2 else _update(rng, n, as_of=True))
    return out
