"""A small semantic parser for the steps of this scene (an arm, a table, a red, a green and a blue cube).

It reads a step into what it asks for: an action of the library (reach, grasp, lift, place, open,
home, tower) and its cubes in argument order, or explicit evidence that no skill does it (an action
the library lacks, an object or colour the scene has not, a cube moved to a place or next to
another, a tower in another order, the arm moving on its own). It decides only what its cues
settle; a step it cannot read (`action` None, no evidence) is left to the embedding
(consumers/curriculum/retrieval.py). The vocabulary is data: step_grammar.toml.

Why a parser: the sentence encoder weighs nouns over verbs, is blind to argument order and to
constructions without a verb ("red on blue"), and cannot tell "put X on Y" from "put X next to Y".
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

GRAMMAR_FILE = Path(__file__).with_name("step_grammar.toml")
_DETERMINERS = {"the", "a", "an", "your", "its", "this", "that", "my", "down", "back", "both", "all", "of"}


@dataclass(frozen=True)
class Reading:
    action: str | None              # reach grasp lift place open home tower; None: the parser cannot tell
    colours: tuple[str | None, ...] = ()  # the cubes in argument order (place: top, bottom); None: unsaid
    missing: str = ""               # why no skill of the scene does it ("" when nothing says so)
    sure: bool = True               # False: a construction the model should confirm ("X over Y")

    def skill_ids(self, scene: tuple[str, ...]) -> list[str]:
        """The skill ids the reading allows, a colour left unsaid ranging over the scene's."""
        if self.missing or self.action is None:
            return []
        fixed = {"open": "open_gripper", "home": "go_home", "tower": "build_tower"}
        if self.action in fixed:
            return [fixed[self.action]]
        if self.action == "place":
            top, bottom = (self.colours + (None, None))[:2]
            return [f"place_{a}_on_{b}" for a in scene for b in scene
                    if a != b and top in (None, a) and bottom in (None, b)]
        colour = self.colours[0] if self.colours else None
        return [f"{self.action}_{c}" for c in scene if colour in (None, c)]


class Grammar:
    """The cue lists of step_grammar.toml, compiled: `find(kind, text)` -> [(start, end)]."""

    def __init__(self, path: Path = GRAMMAR_FILE):
        with open(path, "rb") as f:
            data = tomllib.load(f)
        self._cues = {kind: _compile(words) for kind, words in data["cues"].items()}
        self.tower = {kind: (_compile(words) if kind != "order" else tuple(words)) for kind, words in data["tower"].items()}

    def find(self, kind: str, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in self._cues[kind].finditer(text)]

    def has(self, kind: str, text: str) -> bool:
        return self._cues[kind].search(text) is not None

    def first(self, kind: str, text: str) -> str | None:
        found = self._cues[kind].search(text)
        return found.group(0) if found else None


def _compile(words: list[str]) -> re.Pattern:
    # longest alternatives first, so "on top of" wins over "on"
    return re.compile("|".join(rf"(?:(?<![\w-]){w}(?![\w-]))" for w in sorted(words, key=len, reverse=True)))


@lru_cache
def default_grammar() -> Grammar:
    return Grammar()


def clean(step: str) -> str:
    """Lower case, words separated by single spaces, commas and colons kept as " ,"; a "without"
    clause dropped ("grasp it without lifting it" is a grasp)."""
    text = re.sub(r"[:;]", ",", step.lower().replace("-", " ").replace("'s", ""))
    text = " ".join(re.findall(r"[a-z0-9]+|,", text))
    return re.split(r"\bwithout\b", text)[0].strip(" ,")


def read(step: str, colour_words: dict[str, str], scene: tuple[str, ...], grammar: Grammar | None = None) -> Reading:
    """What the step asks for (see the module doc)."""
    g = grammar or default_grammar()
    text = clean(step)
    mentions = _mentions(text, colour_words)           # [(start, end, colour)], a colour once
    colours = tuple(c for _, _, c in mentions)
    pull = g.has("pull", text)
    raised = _raised(g, text, mentions)
    if g.has("lacking", text) or pull and not raised:
        return Reading(None, colours, f"an action the library lacks ({g.first('lacking', text) or g.first('pull', text)})")
    if g.has("foreign", text):
        return Reading(None, colours, f"an object the scene has not ({g.first('foreign', text)})")
    other = [c for c in colours if c not in scene]
    if other:
        return Reading(None, colours, f"a colour the scene has not ({other[0]})")
    mover = _mover(g, text, mentions)
    moves_a_cube = mover == "block"
    if g.has("pair", text) and g.has("placing", text):
        return Reading(None, colours, "two cubes stacked, in no order")
    if g.has("home", text):
        return Reading(None, colours, "a cube moved to a place") if moves_a_cube and colours else Reading("home")
    if g.has("tower", text) or len(colours) == 3 and not g.has("location", text):
        return _tower(g, text, mentions)
    if moves_a_cube and g.has("location", text):
        return Reading(None, colours, f"a cube moved to a place or beside another ({g.first('location', text)})")
    if len(colours) == 2:
        return _two(g, text, mentions)
    if len(colours) > 2:
        return Reading(None, colours)
    if mover == "effector" and not colours:           # the arm alone: only opening and closing are skills
        for action in ("open", "grasp"):
            if g.has(action, text):
                return Reading(action)
        return Reading(None, colours, "the arm moving on its own, no cube")
    if moves_a_cube and g.has("placing", text) and g.has("on", text):
        on = g.find("on", text)[0][0]
        after = not mentions or mentions[0][0] < on     # "stack the red block on top": the red one on something
        return Reading("place", (colours[0], None) if after and colours else (None, *colours[:1]), sure=False)
    if g.has("lift", text) or raised:
        return Reading("lift", colours)
    for action in ("open", "grasp"):
        if g.has(action, text):
            return Reading(action, colours)
    if colours and mover != "block" and (g.has("reach", text) or g.has("carry", text)):
        return Reading("reach", colours)
    return Reading(None, colours)


def _mentions(text: str, colour_words: dict[str, str]) -> list[tuple[int, int, str]]:
    found, seen = [], set()
    for m in re.finditer(r"[a-z]+", text):
        colour = colour_words.get(m.group(0))
        if colour and colour not in seen:
            seen.add(colour)
            found.append((m.start(), m.end(), colour))
    return found


def _mover(g: Grammar, text: str, mentions) -> str | None:
    """What the step moves: "effector" (the hand), "block" (a cube), or None (the robot goes somewhere:
    "move over the navy block"). The direct object of the first verb that moves things decides;
    a step opening with a cube ("red on blue") moves that cube."""
    words = text.split()
    if words and (words[0] in _DETERMINERS and len(words) > 1 and _is_block(g, words[1], mentions, text)
                  or _is_block(g, words[0], mentions, text)):
        return "block"
    spans = g.find("carry", text)
    if not spans:   # "raise the arm": the arm, when it names no cube
        return "effector" if g.has("effector", text) and not mentions and not g.has("block", text) else None
    following = [w for w in text[spans[0][1]:].split() if w not in _DETERMINERS]
    for i, word in enumerate(following[:2]):
        if g.has("effector", word) or g.has("effector", " ".join(following[i:i + 2])):
            return "effector"
        if _is_block(g, word, mentions, text):
            return "block"
        if not g.has("modifier", word):
            return None
    return None


def _is_block(g: Grammar, word: str, mentions, text: str) -> bool:
    return g.has("block", word) or any(text[s:e] == word for s, e, _ in mentions)


def _raised(g: Grammar, text: str, mentions) -> bool:
    """An up-cue after the cube ("bring the red box up off the table"): the cube is lifted."""
    if not mentions and not g.has("block", text):
        return False
    start = mentions[0][1] if mentions else 0
    return any(s >= start for s, _ in g.find("up", text))


def _relation(g: Grammar, text: str) -> str | None:
    """The last relation cue of a stretch of text: on, under, over, off, unordered, location."""
    last = None
    for kind in ("on", "under", "over", "off", "unordered", "location"):
        for start, end in g.find(kind, text):
            if last is None or (end, end - start) > last[0]:
                last = ((end, end - start), kind)
    return last[1] if last else None


def _two(g: Grammar, text: str, mentions) -> Reading:
    (s1, e1, a), (s2, _, b) = mentions
    if g.has("cover", text) and " with " in text[e1:s2]:     # "cover Y with X"
        return Reading("place", (b, a))
    before = _relation(g, text[:s1])
    if before in ("on", "under"):                           # fronted: "onto the blue block, put the red one"
        return Reading("place", (b, a) if before == "on" else (a, b))
    between = _relation(g, text[e1:s2])
    if between == "on":
        return Reading("place", (a, b))
    if between == "under":
        return Reading("place", (b, a))
    if between == "over":
        return Reading("place", (a, b), sure=False)
    if between == "off":
        return Reading(None, (a, b), "one cube taken off another")
    if between == "unordered":
        return Reading(None, (a, b), "two cubes, in no order")
    if between == "location":
        return Reading(None, (a, b), "a cube put beside another")
    return Reading(None, (a, b))


def _tower(g: Grammar, text: str, mentions) -> Reading:
    """build_tower: blue at the bottom, green in the middle, red on top; or the three in no order."""
    order = g.tower["order"]
    if g.has("location", text):
        return Reading(None, tuple(c for *_, c in mentions), f"the cubes put somewhere ({g.first('location', text)})")
    said = {}   # position -> colour, from "blue at the bottom", "red on top", "green in the middle"
    for i, (_, end, colour) in enumerate(mentions if not g.tower["sweep"].search(text) else []):
        stop = mentions[i + 1][0] if i + 1 < len(mentions) else len(text)
        window = " ".join(text[end:stop].replace(",", " , ").split()[:4]).split(",")[0]
        for position, index in (("bottom", 0), ("middle", 1), ("top", 2)):
            if g.tower[position].search(window):
                said.setdefault(index, colour)
    listed = [c for *_, c in mentions]
    sequence = None   # the colours named in a chain or a listing, bottom first
    if len(listed) >= 2:
        between = [_relation(g, text[mentions[i][1]:mentions[i + 1][0]]) for i in range(len(mentions) - 1)]
        if all(r == "on" for r in between):          # "red on green on blue": top first
            sequence = listed[::-1]
        elif all(r == "under" for r in between) or g.tower["upward"].search(text):
            sequence = listed
        elif g.tower["downward"].search(text):
            sequence = listed[::-1]
    if any(order[i] != c for i, c in said.items()) or sequence and [c for c in order if c in sequence] != sequence:
        return Reading(None, tuple(listed), "a tower in another order")
    return Reading("tower")
