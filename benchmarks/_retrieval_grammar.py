#!/usr/bin/env python3
"""Deterministic grammar generator for the held-out (frozen) skill-retrieval set.

Scene: Franka Panda, a table, exactly three cubes (red, green, blue).
Each item is [step text, expected skill id or "missing"].

Written from the task description only, without looking at the retriever,
its alias tables or its tuning steps.  Python 3.11, stdlib only.

Usage:  python3 benchmarks/_retrieval_grammar.py [out.toml]   (default: benchmarks/retrieval_frozen.toml)
"""
from __future__ import annotations

import itertools
import json
import random
import sys
from collections import Counter
from pathlib import Path

SEED = 20261204
DATE = "2026-12-04"
OUT = str(Path(__file__).with_name("retrieval_frozen.toml"))

COLOURS = ("red", "green", "blue")
SYN = {
    "red": ["crimson", "scarlet", "ruby", "cherry"],
    "green": ["emerald", "lime", "olive", "jade"],
    "blue": ["navy", "azure", "cobalt", "sapphire", "sky-blue"],
}
NOUNS = ["block", "cube", "box", "brick", "piece"]

# quotas
Q_REACH = 24      # per colour
Q_GRASP = 24      # per colour
Q_LIFT = 24       # per colour
Q_PLACE = 17      # per ordered pair
Q_OPEN = 20
Q_HOME = 20
Q_TOWER = 20
Q_MISSING = 126

IMP_PREFIX = ["", "", "", "", "", "please ", "now ", "then ", "next, ", "the robot should ",
              "carefully ", "go ahead and ", "now, ", "I want you to ", "you should ", "first, "]
IMP_SUFFIX = ["", "", "", "", " please", " now", " carefully"]
DECL_PREFIX = ["", "", "", "now ", "then ", "next, ", "finally, "]

rng = random.Random(SEED)


# ------------------------------------------------------------------ helpers
def cword(c: str) -> str:
    """A word for colour c: canonical half of the time, else a synonym."""
    return c if rng.random() < 0.5 else rng.choice(SYN[c])


def np_(c: str, allow_one: bool = True) -> str:
    """Noun phrase naming the cube of colour c."""
    w = cword(c)
    r = rng.random()
    if allow_one and r < 0.15:
        return f"the {w} one"
    if r < 0.22:
        return f"that {w} {rng.choice(NOUNS)}"
    return f"the {w} {rng.choice(NOUNS)}"


def bare(c: str) -> str:
    return c if rng.random() < 0.6 else rng.choice(SYN[c])


def others(c: str):
    return [o for o in COLOURS if o != c]


def finish(core: str, kind: str) -> str:
    """Add filler / politeness, punctuation and case variety."""
    if kind == "imp":
        pre = rng.choice(IMP_PREFIX)
        suf = rng.choice(IMP_SUFFIX) if not pre else ""
        s = pre + core + suf
    elif kind == "decl":
        s = rng.choice(DECL_PREFIX) + core
    else:  # "raw": no fillers
        s = core
    if rng.random() < 0.3:
        s += "."
    if rng.random() < 0.2:
        s = s[0].upper() + s[1:]
    return s


def key(s: str) -> str:
    return " ".join(s.lower().rstrip(".!").replace(",", " ").split())


# ------------------------------------------------------------------ grammar
# Each template: (kind, callable(colour or pair) -> core text)
REACH = [
    ("imp", lambda c: f"approach {np_(c)}"),
    ("imp", lambda c: f"move to {np_(c)}"),
    ("imp", lambda c: f"go to {np_(c)}"),
    ("imp", lambda c: f"hover over {np_(c)}"),
    ("imp", lambda c: f"hover above {np_(c)}"),
    ("imp", lambda c: f"position the gripper above {np_(c)}"),
    ("imp", lambda c: f"bring the hand next to {np_(c)}"),
    ("imp", lambda c: f"move over {np_(c)}"),
    ("imp", lambda c: f"go above {np_(c)}"),
    ("imp", lambda c: f"move the gripper over {np_(c)}"),
    ("imp", lambda c: f"reach {np_(c)}"),
    ("imp", lambda c: f"move the end effector to {np_(c)}"),
    ("imp", lambda c: f"bring the gripper close to {np_(c)}"),
    ("imp", lambda c: f"put the gripper right above {np_(c)}"),
    ("imp", lambda c: f"place the hand over {np_(c)}"),
    ("imp", lambda c: f"align the gripper over {np_(c)}"),
    ("imp", lambda c: f"get close to {np_(c)}"),
    ("imp", lambda c: f"move the arm next to {np_(c)}"),
    ("imp", lambda c: f"reach {np_(c)} without grasping it"),
    ("imp", lambda c: f"approach {np_(c)} but do not touch it"),
    ("imp", lambda c: f"move the hand toward {np_(c)} and stop just above it"),
    ("decl", lambda c: f"the gripper should be positioned above {np_(c)}"),
    ("decl", lambda c: f"the hand should hover over {np_(c)}"),
]

GRASP = [
    ("imp", lambda c: f"grasp {np_(c)}"),
    ("imp", lambda c: f"grab {np_(c)}"),
    ("imp", lambda c: f"grip {np_(c)}"),
    ("imp", lambda c: f"take hold of {np_(c)}"),
    ("imp", lambda c: f"clutch {np_(c)}"),
    ("imp", lambda c: f"close the fingers on {np_(c)}"),
    ("imp", lambda c: f"seize {np_(c)}"),
    ("imp", lambda c: f"close the gripper around {np_(c)}"),
    ("imp", lambda c: f"get a grip on {np_(c)}"),
    ("imp", lambda c: f"clamp the gripper onto {np_(c)}"),
    ("imp", lambda c: f"secure {np_(c)} between the fingers"),
    ("imp", lambda c: f"grasp {np_(c)} without lifting it"),
    ("imp", lambda c: f"grab {np_(c)} but leave it on the table"),
    ("imp", lambda c: f"close the gripper on {np_(c)}"),
    ("imp", lambda c: f"pinch {np_(c)} between the fingers"),
    ("imp", lambda c: f"grip {np_(c)} firmly"),
    ("imp", lambda c: f"get hold of {np_(c)}"),
    ("imp", lambda c: f"grip {np_(c)} and keep it resting on the table"),
    ("decl", lambda c: f"{np_(c)} should be grasped"),
    ("decl", lambda c: f"the gripper should close around {np_(c)}"),
]

LIFT = [
    ("imp", lambda c: f"lift {np_(c)}"),
    ("imp", lambda c: f"pick up {np_(c)}"),
    ("imp", lambda c: f"pick {np_(c)} up"),
    ("imp", lambda c: f"raise {np_(c)}"),
    ("imp", lambda c: f"hoist {np_(c)}"),
    ("imp", lambda c: f"elevate {np_(c)}"),
    ("imp", lambda c: f"take {np_(c)} off the table"),
    ("imp", lambda c: f"lift {np_(c)} up"),
    ("imp", lambda c: f"lift up {np_(c)}"),
    ("imp", lambda c: f"lift {np_(c)} off the table"),
    ("imp", lambda c: f"raise {np_(c)} into the air"),
    ("imp", lambda c: f"raise {np_(c)} a few centimetres"),
    ("imp", lambda c: f"get {np_(c)} off the table"),
    ("imp", lambda c: f"pick up {np_(c)} and hold it in the air"),
    ("imp", lambda c: f"hoist {np_(c)} up off the table"),
    ("imp", lambda c: f"raise {np_(c)} above the table"),
    ("decl", lambda c: f"{np_(c)} should be lifted"),
    ("decl", lambda c: f"{np_(c)} should be picked up"),
    ("decl", lambda c: f"{np_(c)} needs to be raised off the table"),
]


def _pl(fmt):
    return lambda p: fmt(p[0], p[1])


PLACE = [
    ("imp", _pl(lambda x, y: f"put {np_(x)} on {np_(y)}")),
    ("imp", _pl(lambda x, y: f"put {np_(x)} on top of {np_(y)}")),
    ("imp", _pl(lambda x, y: f"set {np_(x)} on {np_(y)}")),
    ("imp", _pl(lambda x, y: f"place {np_(x)} onto {np_(y)}")),
    ("imp", _pl(lambda x, y: f"place {np_(x)} on top of {np_(y)}")),
    ("imp", _pl(lambda x, y: f"stack {np_(x)} on {np_(y)}")),
    ("imp", _pl(lambda x, y: f"stack {np_(x)} onto {np_(y)}")),
    ("imp", _pl(lambda x, y: f"move {np_(x)} onto {np_(y)}")),
    ("imp", _pl(lambda x, y: f"drop {np_(x)} onto {np_(y)}")),
    ("imp", _pl(lambda x, y: f"rest {np_(x)} on {np_(y)}")),
    ("imp", _pl(lambda x, y: f"lay {np_(x)} on top of {np_(y)}")),
    ("imp", _pl(lambda x, y: f"set {np_(x)} down on {np_(y)}")),
    ("imp", _pl(lambda x, y: f"put {np_(x)} atop {np_(y)}")),
    ("imp", _pl(lambda x, y: f"transfer {np_(x)} onto {np_(y)}")),
    ("imp", _pl(lambda x, y: f"place {np_(x)} so that it sits on {np_(y)}")),
    ("imp", _pl(lambda x, y: f"stack {bare(x)} on {bare(y)}")),
    ("raw", _pl(lambda x, y: f"onto {np_(y, False)}, place {np_(x)}")),
    ("raw", _pl(lambda x, y: f"on top of {np_(y, False)}, put {np_(x)}")),
    ("decl", _pl(lambda x, y: f"{bare(x)} on {bare(y)}")),
    ("decl", _pl(lambda x, y: f"{bare(x)} on top of {bare(y)}")),
    ("decl", _pl(lambda x, y: f"{bare(x)} atop {bare(y)}")),
    ("decl", _pl(lambda x, y: f"{bare(x)} {rng.choice(NOUNS)} on the {cword(y)} one")),
    ("decl", _pl(lambda x, y: f"{np_(x, False)} goes on {np_(y, False)}")),
    ("decl", _pl(lambda x, y: f"{np_(x, False)} should be placed on {np_(y)}")),
    ("decl", _pl(lambda x, y: f"{np_(x, False)} should end up on top of {np_(y)}")),
]

OPEN = [
    ("imp", lambda _: "open the gripper"),
    ("imp", lambda _: "release"),
    ("imp", lambda _: "let go"),
    ("imp", lambda _: "open the fingers"),
    ("imp", lambda _: "release the block"),
    ("imp", lambda _: "let go of the cube"),
    ("imp", lambda _: "open the hand"),
    ("imp", lambda _: "spread the gripper fingers apart"),
    ("imp", lambda _: "release your grip"),
    ("imp", lambda _: "open the claw"),
    ("imp", lambda _: "open the jaws of the gripper"),
    ("imp", lambda _: "relax the grip and let go"),
    ("imp", lambda _: "open the gripper to release the block"),
    ("imp", lambda _: f"release {np_(rng.choice(COLOURS))}"),
    ("imp", lambda _: f"let go of {np_(rng.choice(COLOURS))}"),
    ("imp", lambda _: "open the gripper fully"),
    ("imp", lambda _: "unclamp the gripper"),
    ("decl", lambda _: "the gripper should open"),
]

HOME = [
    ("imp", lambda _: "go home"),
    ("imp", lambda _: "go to the home position"),
    ("imp", lambda _: "return to the home position"),
    ("imp", lambda _: "go back to the home pose"),
    ("imp", lambda _: "return to the rest pose"),
    ("imp", lambda _: "move the arm to its rest pose"),
    ("imp", lambda _: "return home"),
    ("imp", lambda _: "go back home"),
    ("imp", lambda _: "move to the home configuration"),
    ("imp", lambda _: "retract the arm to the home position"),
    ("imp", lambda _: "return the arm to its resting position"),
    ("imp", lambda _: "park the arm in its rest pose"),
    ("imp", lambda _: "reset the arm to the home pose"),
    ("imp", lambda _: "bring the arm back home"),
    ("imp", lambda _: "home the arm"),
    ("imp", lambda _: "move back to the rest position"),
    ("decl", lambda _: "the arm should return to its home position"),
]


def _n():
    return rng.choice(["block", "cube", "brick", "box"])


TOWER = [
    ("imp", lambda _: "build a tower"),
    ("imp", lambda _: "build the tower"),
    ("imp", lambda _: "build a tower with blue at the bottom, green in the middle and red on top"),
    ("imp", lambda _: f"build a tower with {cword('red')} on top, {cword('green')} in the middle and {cword('blue')} at the bottom"),
    ("imp", lambda _: "stack all three blocks into a tower"),
    ("imp", lambda _: f"stack the three {rng.choice(['cubes', 'bricks', 'blocks'])} into a tower"),
    ("imp", lambda _: "make a tower out of all three blocks"),
    ("imp", lambda _: f"construct a tower: {cword('blue')} on the bottom, then {cword('green')}, then {cword('red')}"),
    ("imp", lambda _: f"build a three-block tower with the {cword('blue')} {_n()} at the base, the {cword('green')} {_n()} in the middle and the {cword('red')} {_n()} at the top"),
    ("imp", lambda _: "stack the blocks so that blue is at the bottom, green is in the middle and red is on top"),
    ("imp", lambda _: "build a blue-green-red tower from bottom to top"),
    ("imp", lambda _: f"build the tower: {cword('blue')}, {cword('green')}, {cword('red')} from the bottom up"),
    ("imp", lambda _: "pile all three cubes into a tower"),
    ("imp", lambda _: "assemble a tower of the three blocks"),
    ("imp", lambda _: "stack all the blocks on top of each other"),
    ("imp", lambda _: "make a three-block tower"),
]


# ------------------------------------------------------------------ missing
def _wrong_orders():
    return [p for p in itertools.permutations(COLOURS) if p != ("blue", "green", "red")]


def _xy():
    x, y = rng.sample(COLOURS, 2)
    return x, y


FAKE_COL = ["yellow", "purple", "orange", "white", "black", "pink"]
FAKE_OBJ = ["cup", "sphere", "ball", "mug", "bottle", "cylinder", "bowl"]
PLACES = ["on the left side of the table", "in the corner", "in the centre of the table",
          "on the right edge of the table", "at the far end of the table",
          "in the top-left corner of the table"]
MOVE_TO = ["to the left side of the table", "to the corner", "to the centre of the table",
           "to the right edge of the table", "to the far end of the table"]
BESIDE = ["next to", "beside", "behind", "in front of", "to the left of", "to the right of"]

MISSING_CATS = {
    "push": [
        lambda: "push {} toward {}".format(*(np_(c) for c in _xy())),
        lambda: f"push {np_(rng.choice(COLOURS))} across the table",
        lambda: f"shove {np_(rng.choice(COLOURS))} to the side",
        lambda: f"nudge {np_(rng.choice(COLOURS))} a little to the left",
    ],
    "slide": [
        lambda: f"slide {np_(rng.choice(COLOURS))} across the table",
        lambda: "slide {} toward {}".format(*(np_(c) for c in _xy())),
        lambda: f"slide {np_(rng.choice(COLOURS))} to the edge of the table",
    ],
    "rotate": [
        lambda: f"rotate {np_(rng.choice(COLOURS))}",
        lambda: f"rotate {np_(rng.choice(COLOURS))} by 90 degrees",
        lambda: f"turn {np_(rng.choice(COLOURS))} upside down",
        lambda: f"spin {np_(rng.choice(COLOURS))} around",
        lambda: f"flip {np_(rng.choice(COLOURS))} over",
    ],
    "throw": [
        lambda: "throw the block off the table",
        lambda: f"throw {np_(rng.choice(COLOURS))} off the table",
        lambda: f"toss {np_(rng.choice(COLOURS))} into the air",
        lambda: f"drop {np_(rng.choice(COLOURS))} off the edge of the table",
    ],
    "knock": [
        lambda: "knock the tower over",
        lambda: "knock over the tower",
        lambda: "knock {} off {}".format(*(np_(c) for c in _xy())),
        lambda: f"topple {np_(rng.choice(COLOURS))}",
        lambda: f"knock {np_(rng.choice(COLOURS))} over",
    ],
    "shake_pour_wipe": [
        lambda: f"shake {np_(rng.choice(COLOURS))}",
        lambda: f"pour water on {np_(rng.choice(COLOURS))}",
        lambda: "wipe the table",
        lambda: f"wipe {np_(rng.choice(COLOURS))} clean",
        lambda: f"roll {np_(rng.choice(COLOURS))} across the table",
    ],
    "location": [
        lambda: f"place {np_(rng.choice(COLOURS))} {rng.choice(PLACES)}",
        lambda: f"move {np_(rng.choice(COLOURS))} {rng.choice(MOVE_TO)}",
        lambda: f"put {np_(rng.choice(COLOURS))} {rng.choice(PLACES)}",
        lambda: f"move {np_(rng.choice(COLOURS))} 10 cm to the right",
    ],
    "beside": [
        lambda: "put {1} {0} {2}".format(rng.choice(BESIDE), *(np_(c) for c in _xy())),
        lambda: "place {1} {0} {2}".format(rng.choice(BESIDE), *(np_(c) for c in _xy())),
        lambda: "set {1} {0} {2}".format(rng.choice(BESIDE), *(np_(c) for c in _xy())),
        lambda: "put {} between {} and {}".format(*(np_(c, False) for c in rng.sample(COLOURS, 3))),
    ],
    "under": [
        lambda: "slide {} under {}".format(*(np_(c) for c in _xy())),
        lambda: "push {} underneath {}".format(*(np_(c) for c in _xy())),
        lambda: "tuck {} beneath {}".format(*(np_(c) for c in _xy())),
    ],
    "two_stack": [
        lambda: "stack two blocks",
        lambda: "stack two " + rng.choice(["cubes", "bricks", "pieces"]),
        lambda: "stack the {} and {} blocks".format(*(cword(c) for c in _xy())),
        lambda: "stack two of the cubes",
        lambda: "put one block on another",
        lambda: "make a stack of two cubes",
        lambda: "build a tower of the {} and {} blocks".format(*(cword(c) for c in _xy())),
        lambda: "build a two-block tower",
    ],
    "wrong_tower": [
        lambda: "build a tower with {} at the bottom, {} in the middle and {} on top".format(
            *(cword(c) for c in rng.choice(_wrong_orders()))),
        lambda: "stack the blocks {}, then {}, then {} from the bottom up".format(
            *(cword(c) for c in rng.choice(_wrong_orders()))),
        lambda: "build a tower with the {} {} at the bottom".format(cword(rng.choice(["red", "green"])), _n()),
        lambda: "build a tower with the {} {} on top".format(cword(rng.choice(["blue", "green"])), _n()),
        lambda: "build a tower: {} on the bottom, {} in the middle, {} on top".format(
            *(cword(c) for c in rng.choice(_wrong_orders()))),
    ],
    "fake_colour": [
        lambda: f"lift the {rng.choice(FAKE_COL)} cube",
        lambda: f"grasp the {rng.choice(FAKE_COL)} block",
        lambda: f"reach the {rng.choice(FAKE_COL)} cube",
        lambda: f"pick up the {rng.choice(FAKE_COL)} brick",
        lambda: f"put the {rng.choice(FAKE_COL)} block on {np_(rng.choice(COLOURS))}",
        lambda: f"put {np_(rng.choice(COLOURS))} on the {rng.choice(FAKE_COL)} cube",
        lambda: f"hover over the {rng.choice(FAKE_COL)} block",
    ],
    "fake_object": [
        lambda: f"grasp the {rng.choice(FAKE_OBJ)}",
        lambda: f"pick up the {rng.choice(FAKE_OBJ)}",
        lambda: "open the drawer",
        lambda: f"put {np_(rng.choice(COLOURS))} in the bowl",
        lambda: f"place {np_(rng.choice(COLOURS))} on the plate",
        lambda: "move to the shelf",
        lambda: f"lift the {rng.choice(FAKE_OBJ)}",
        lambda: f"put {np_(rng.choice(COLOURS))} into the basket",
        lambda: f"approach the {rng.choice(FAKE_OBJ)}",
        lambda: "lift the table",
    ],
    "close_empty": [
        lambda: "close the gripper",
        lambda: "close the gripper on nothing",
        lambda: "close the fingers with nothing between them",
        lambda: "shut the empty gripper",
    ],
    "gesture": [
        lambda: "wave",
        lambda: f"wave at {np_(rng.choice(COLOURS))}",
        lambda: f"point at {np_(rng.choice(COLOURS))}",
        lambda: f"point to {np_(rng.choice(COLOURS))}",
        lambda: "wave hello",
    ],
    "arm_only": [
        lambda: "raise the empty gripper",
        lambda: "lower the arm",
        lambda: "move the gripper 5 cm to the left",
        lambda: "turn the wrist",
        lambda: "rotate the gripper by 45 degrees",
    ],
    "rearrange": [
        lambda: "unstack the tower",
        lambda: "take the tower apart",
        lambda: "swap {} and {}".format(*(np_(c, False) for c in _xy())),
        lambda: "sort the blocks by colour",
        lambda: "line up the three cubes in a row",
        lambda: "arrange the blocks in a triangle",
        lambda: "spread the blocks out",
    ],
    "multi": [
        lambda: "pick up all three blocks at once",
        lambda: "lift the {} and {} blocks together".format(*(cword(c) for c in _xy())),
        lambda: "grasp all the cubes",
        lambda: "grab two blocks at the same time",
    ],
    "misc": [
        lambda: f"hand {np_(rng.choice(COLOURS))} to me",
        lambda: f"squeeze {np_(rng.choice(COLOURS))} until it breaks",
        lambda: f"paint {np_(rng.choice(COLOURS))} yellow",
        lambda: f"hide {np_(rng.choice(COLOURS))}",
        lambda: "count the blocks",
        lambda: f"shake {np_(rng.choice(COLOURS))} up and down",
    ],
}


# ------------------------------------------------------------------ driver
MAX_CORE = 2  # a core phrase (before fillers/punctuation) is used at most this often


class Collector:
    def __init__(self):
        self.items: list[tuple[str, str]] = []
        self.seen: dict[str, str] = {}
        self.cores: Counter = Counter()

    def add_core(self, core: str, kind: str, label: str) -> bool:
        k = key(core)
        if self.cores[k] >= MAX_CORE:
            return False
        if self.add(finish(core, kind), label):
            self.cores[k] += 1
            return True
        return False

    def add(self, text: str, label: str) -> bool:
        k = key(text)
        if k in self.seen:
            if self.seen[k] != label:
                raise SystemExit(f"label clash: {text!r} {self.seen[k]} vs {label}")
            return False
        self.seen[k] = label
        self.items.append((text, label))
        return True


def fill(col: Collector, templates, arg, label: str, quota: int, max_tries: int = 5000):
    order = list(range(len(templates)))
    got, tries, i = 0, 0, 0
    rng.shuffle(order)
    while got < quota and tries < max_tries:
        kind, fn = templates[order[i % len(order)]]
        i += 1
        tries += 1
        if i % len(order) == 0:
            rng.shuffle(order)
        if col.add_core(fn(arg), kind, label):
            got += 1
    if got < quota:
        raise SystemExit(f"could not fill {label}: {got}/{quota}")


def fill_missing(col: Collector, quota: int):
    cats = list(MISSING_CATS)
    got, tries, i = 0, 0, 0
    while got < quota and tries < 20000:
        cat = cats[i % len(cats)]
        i += 1
        tries += 1
        fn = rng.choice(MISSING_CATS[cat])
        if col.add_core(fn(), "imp", "missing"):
            got += 1
    if got < quota:
        raise SystemExit(f"could not fill missing: {got}/{quota}")


def generate() -> list[tuple[str, str]]:
    col = Collector()
    for c in COLOURS:
        fill(col, REACH, c, f"reach_{c}", Q_REACH)
        fill(col, GRASP, c, f"grasp_{c}", Q_GRASP)
        fill(col, LIFT, c, f"lift_{c}", Q_LIFT)
    for x, y in itertools.permutations(COLOURS, 2):
        fill(col, PLACE, (x, y), f"place_{x}_on_{y}", Q_PLACE)
    fill(col, OPEN, None, "open_gripper", Q_OPEN)
    fill(col, HOME, None, "go_home", Q_HOME)
    fill(col, TOWER, None, "build_tower", Q_TOWER)
    fill_missing(col, Q_MISSING)
    items = col.items
    rng.shuffle(items)
    return items


# How the set was made, in one line: benchmarks/results/retrieval.json records it.
MADE = ("generated by benchmarks/_retrieval_grammar.py (a grammar of verbs, synonyms, colour synonyms, nouns, "
        "fillers, word orders and hard negatives; seed {seed}) on {date}, written without reading the retriever, "
        "committed before any tuning")

HEADER = """\
# Frozen held-out evaluation set for skill retrieval (step text -> skill id | "missing").
# Date: {date}.  Generated by benchmarks/_retrieval_grammar.py (Python 3.11, stdlib only),
# a hand-written grammar with random.Random(seed={seed}); output is deterministic.
# Written WITHOUT looking at the retriever, its alias tables, its tuning steps or its
# benchmark; it must be used once, as a held-out test, and not tuned against.
# Scene: Franka Panda + table + exactly three cubes (red, green, blue).
# Grammar: per skill family several verb phrases / synonyms, colour synonyms
#   (red: crimson scarlet ruby cherry; green: emerald lime olive jade;
#    blue: navy azure cobalt sapphire sky-blue), nouns (block cube box brick piece one),
#   determiners, fillers ("please", "now", "the robot should", ...), passive and fronted
#   word orders, terse verbless place forms, case/period variety; deduplicated on
#   lower-cased, punctuation-stripped text.
# Labelling decisions:
#   * "pick up" / "take X off the table" / "raise" / "hoist" = lift_X.
#   * grasp phrasings never imply raising ("grab", "grip", "seize", "close the gripper
#     on/around X", "grasp X without lifting it").  Composite "grasp X and lift it" omitted.
#   * reach phrasings never imply contact ("approach", "move to/over", "hover above",
#     "position the gripper above", "place the hand over X" -> reach).  "touch"/"tap"/
#     "reach for" omitted as ambiguous; "point at"/"wave at" X -> missing.
#   * place_X_on_Y: first-named block ends on top ("onto Y, place X" and "X atop Y"
#     also -> X on Y).  "under"/"beneath"/"underneath" constructions are all labelled
#     missing and only used with slide/push/tuck verbs (plain "put X under Y" omitted).
#   * "release X" / "let go of X" / "release the block" -> open_gripper.
#     "close the gripper" with no object -> missing.  "open the drawer" -> missing.
#   * build_tower: only blue-bottom / green-middle / red-top, or a tower of all three blocks
#     with no order stated ("build a tower", "stack all three blocks into a tower").  Any
#     other stated order, or a stated bottom other than blue / top other than red, or a
#     two-block tower / "stack two blocks" / "stack the red and blue blocks" -> missing.
#   * Moving a cube to a location (corner, left side, centre, 10 cm right), next
#     to/beside/behind/between other cubes, non-existent objects or colours (yellow cube,
#     cup, drawer, bowl, plate), multi-object actions, arm-only motions ("raise the empty
#     gripper", "turn the wrist"), push/slide/rotate/flip/throw/knock/shake/pour/wipe/roll
#     -> missing.  Omitted as ambiguous: "set X down on the table" / "put X back on the
#     table" (could be read as release), "move the arm up" (could be read as lift).
# Counts: total {total}; {counts}
"""


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else OUT
    items = generate()
    cnt = Counter(lbl for _, lbl in items)
    counts = ", ".join(f"{k}={cnt[k]}" for k in sorted(cnt))
    # wrap counts across comment lines
    words, lines, cur = counts.split(", "), [], ""
    for w in words:
        if len(cur) + len(w) > 80:
            lines.append(cur.rstrip(", "))
            cur = ""
        cur += w + ", "
    lines.append(cur.rstrip(", "))
    counts_txt = "\n#   ".join(lines)
    with open(out, "w", encoding="utf-8") as f:
        f.write(HEADER.format(date=DATE, seed=SEED, total=len(items), counts=counts_txt))
        f.write("[frozen]\n")
        f.write(f"made = {json.dumps(MADE.format(seed=SEED, date=DATE))}\n")
        f.write("steps = [\n")
        for text, lbl in items:
            f.write(f"  [{json.dumps(text)}, {json.dumps(lbl)}],\n")
        f.write("]\n")
    print(f"wrote {len(items)} items to {out}")
    for k in sorted(cnt):
        print(f"  {k:22s} {cnt[k]}")
    print(f"  missing share: {cnt['missing'] / len(items):.1%}")


if __name__ == "__main__":
    main()
