"""Retrieve a skill of the announced library for each step of a decomposed task, with a verdict the
curriculum acts on:

- "confident": the best skill is close and clearly ahead of the next one (and of any action the
  library lacks): take it;
- "unsure": a skill is close but not clearly the one: the curriculum asks the VLM to choose among
  `candidates` (or to declare the step missing);
- "missing": no skill comes near, the step is nearest an action the library has no skill for, or
  it names objects no skill of its action acts on: the curriculum reports a missing skill.

Three scorings:

- "parsed" (default): a semantic parser of the scene's steps (step_parser.py: verbs, colours and
  their synonyms, argument order, what the library lacks) decides what it can read; the
  factorised embedding below ranks the candidates and decides the steps the parser cannot read.
  Explicit missing evidence (push, next to, a yellow block) makes the step missing; a parse that
  leaves the colour unsaid, an ambiguous construction, or an embedding confident in another skill
  makes it unsure (the model is asked). Skills whose captions the parser does not read back to
  their own id (a library it does not know) are left to the embedding.
- "factorised": embedding for the action + parser for the objects. The sentence encoder
  weighs the object noun over the verb ("raise the red cube" embeds nearer "approach the red cube"
  than "raise the red block") and is blind to argument order, so the step is embedded with its
  colours masked and scored against colour-masked descriptions of each action (reach, grasp, place,
  ...); the objects, in order, come from the colour parser (`colours_in`).
- "embedding": the whole (normalised) step against whole descriptions, optionally re-ranked by the
  colour parser (`rerank`: drop skills whose colours differ). The benchmark reports all three.

Descriptions come from the captions plus skill_aliases.toml; alias entries for skills the library
has not announced describe actions it lacks (push, rotate, ...): a step nearest one is missing.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from consumers.curriculum.step_parser import Grammar, default_grammar, read

ALIASES_FILE = Path(__file__).with_name("skill_aliases.toml")
# texts -> one embedding each: the learner's caption encoder (learner.captions.CaptionEncoder.encode),
# given by the composition root, since the curriculum stands below the learner.
Embed = Callable[[list[str]], np.ndarray]
SCORINGS = ("parsed", "factorised", "embedding")

# Calibrated on the dev section of benchmarks/retrieval_steps.toml only (see benchmarks/README.md).
CONFIDENT = 0.75
MISSING = 0.55
MARGIN = 0.05
TOP_K = 3
_BELOW = {"under", "beneath", "below", "underneath"}   # "put X under Y" means Y goes on X


@dataclass(frozen=True)
class Match:
    step: str
    skill_id: str | None          # None: no skill covers the step (missing) or unsure
    similarity: float             # of the best candidate
    verdict: str                  # "confident" | "unsure" | "missing"
    candidates: tuple[tuple[str, float], ...]   # top-k (skill_id, similarity), best first


@dataclass(frozen=True)
class Aliases:
    colour_words: dict[str, str]                 # word -> colour ("crimson" -> "red"; "yellow" -> "yellow")
    descriptions: dict[str, tuple[str, ...]]     # skill id -> extra descriptions, colours filled in
    actions: dict[str, tuple[str, ...]] = field(default_factory=dict)   # "lift_{a}" -> colour-free ones
    nouns: dict[str, str] = field(default_factory=dict)                 # "cube" -> "block"
    scene: tuple[str, ...] = ()                                          # the cubes' colours; () = the captions'


def load_aliases(path: Path = ALIASES_FILE) -> Aliases:
    """Expand the templates of the aliases file (see its header) into descriptions per skill id."""
    with open(path, "rb") as f:
        data = tomllib.load(f)
    scene: dict[str, list[str]] = data["colours"]
    colour_words = {w: w for w in data.get("other_colours", [])}
    colour_words.update({w: colour for colour, words in scene.items() for w in words})
    descriptions: dict[str, tuple[str, ...]] = {}
    actions: dict[str, tuple[str, ...]] = {}
    for key, templates in data["aliases"].items():
        slots = [s for s in ("a", "b") if "{" + s + "}" in key]
        # steps are normalised to the scene's colour word before embedding, so one word per colour
        for colours in itertools.permutations(scene, len(slots)):
            descriptions[key.format(**dict(zip(slots, colours)))] = tuple(
                t.format(**dict(zip(slots, colours))) for t in templates)
        actions[key] = tuple(_squash(t.format(a="", b="")) for t in templates)
    nouns = {w: canonical for canonical, words in data.get("nouns", {}).items() for w in words}
    return Aliases(colour_words, descriptions, actions, nouns, tuple(scene))


def colours_in(text: str, colour_words: dict[str, str]) -> tuple[str, ...]:
    """The colours a text names, in order of mention, each once; "X under Y" is read as Y on X."""
    words = re.findall(r"[a-z]+", text.lower())
    named = [(i, colour_words[w]) for i, w in enumerate(words) if w in colour_words]
    colours = tuple(dict.fromkeys(c for _, c in named))
    if len(colours) == 2 and _BELOW & set(words[named[0][0]:named[-1][0]]):
        colours = colours[::-1]
    return colours


def compatible(step_colours: tuple[str, ...], skill_colours: tuple[str, ...]) -> bool:
    """Could a skill whose caption names `skill_colours` do a step naming `step_colours`? A skill
    of one or two colours must name exactly the step's, in order (that is the argument order); a
    skill of more (a tower) lists them in an order of its own, so only the set must cover the
    step's; a step naming no colour, or a skill acting on none (open the gripper), is not judged."""
    if not step_colours or not skill_colours:
        return True
    if len(skill_colours) <= 2:
        return step_colours == skill_colours
    return set(step_colours) <= set(skill_colours)


def _squash(text: str) -> str:
    return " ".join(text.split())


def normalise(text: str, aliases: Aliases, mask_colours: bool = False) -> str:
    """One word per thing, so the encoder compares actions, not vocabulary: colour synonyms become
    the scene's word ("navy" -> "blue") or vanish (`mask_colours`), object nouns become "block"
    ("the green one" too)."""
    out: list[str] = []
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if word in aliases.colour_words:
            if not mask_colours:
                out.append(aliases.colour_words[word])
            continue
        after_colour = bool(out) and out[-1] in aliases.colour_words.values() or mask_colours and out[-1:] == ["the"]
        out.append(aliases.nouns.get(word, "block" if word == "one" and after_colour else word))
    return " ".join(out)


def action_of(skill_id: str, colours: tuple[str, ...]) -> str:
    """The alias key of a skill's action: place_red_on_green -> place_{a}_on_{b}."""
    slots = iter(("{a}", "{b}"))
    return "_".join(next(slots) if part in colours else part for part in skill_id.split("_"))


class SkillRetriever:
    """Match steps to the skills of the announced library, `skills` = [(skill_id, caption)]."""

    def __init__(self, skills: list[tuple[str, str]], embed: Embed, confident: float = CONFIDENT,
                 missing: float = MISSING, margin: float = MARGIN, *, scoring: str = "parsed",
                 rerank: bool = True, aliases: Aliases | None = None, top_k: int = TOP_K,
                 grammar: Grammar | None = None):
        if not skills:
            raise ValueError("no skills to retrieve from: the library announced none")
        ids = [skill_id for skill_id, _ in skills]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate skill ids in {ids}")
        if not missing <= confident:
            raise ValueError(f"the missing floor ({missing}) must not be above the confident threshold ({confident})")
        if scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {SCORINGS}, not {scoring!r}")
        self.aliases = aliases if aliases is not None else load_aliases()
        self.skill_ids = ids
        self._skill_index = {skill: i for i, skill in enumerate(ids)}
        self.confident, self.missing, self.margin = confident, missing, margin
        self.scoring, self.rerank, self.top_k = scoring, rerank, top_k
        self._embed = embed
        self._skill_colours = [colours_in(caption, self.aliases.colour_words) for _, caption in skills]
        self._factorised = scoring in ("parsed", "factorised")
        if scoring == "parsed":
            self.grammar = grammar or default_grammar()
            self._scene = self.aliases.scene or tuple(dict.fromkeys(c for cs in self._skill_colours for c in cs))
            # the skills the parser reads back to their own id: it decides only among these
            self._understood = {i for i, caption in skills
                                if read(caption, self.aliases.colour_words, self._scene, self.grammar)
                                .skill_ids(self._scene) == [i]}
        if self._factorised:
            self._actions = [action_of(i, c) for i, c in zip(ids, self._skill_colours)]
            known = dict.fromkeys(self._actions)   # announced actions, library order
            groups = {a: [normalise(cap, self.aliases, True) for (i, cap), b in zip(skills, self._actions) if b == a]
                      for a in known}
            for key, texts in self.aliases.actions.items():
                groups.setdefault(key, []).extend(normalise(t, self.aliases, True) for t in texts)
            self._columns = list(groups)
            self._skill_column = [self._columns.index(a) for a in self._actions]
            arity = {a: len(c) for a, c in zip(self._actions, self._skill_colours)}
            self._arity = [arity.get(a, a.count("{")) for a in self._columns]
        else:
            groups = {i: [normalise(cap, self.aliases)] for i, cap in skills}
            for key, texts in self.aliases.descriptions.items():
                groups.setdefault(key, []).extend(normalise(t, self.aliases) for t in texts)
            self._columns = list(groups)
            self._skill_column = list(range(len(ids)))   # announced skills come first
        # a column neither announced nor part of an announced action: an action the library lacks
        self._lacking = np.array([i >= len(set(self._skill_column)) for i in range(len(self._columns))])
        # one flat list of descriptions, grouped by column, so a column's score is a max over its slice
        self._descriptions = [d for texts in groups.values() for d in dict.fromkeys(texts)]
        self._starts = np.cumsum([0] + [len(dict.fromkeys(t)) for t in list(groups.values())[:-1]])
        self._vectors: np.ndarray | None = None

    def match(self, step: str) -> Match:
        return self.match_all([step])[0]

    def match_all(self, steps: list[str]) -> list[Match]:
        if not steps:
            return []
        scores = self._scores(self._encode([normalise(s, self.aliases, self._factorised) for s in steps]))
        matches = [self._verdict(step, row) for step, row in zip(steps, scores)]
        if self.scoring == "parsed":
            matches = [self._parsed(m, row[self._skill_column]) for m, row in zip(matches, scores)]
        return matches

    def description_count(self) -> int:
        return len(self._descriptions)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._embed(texts), dtype=np.float32)

    def _scores(self, steps: np.ndarray) -> np.ndarray:
        """(steps, columns): each column's best cosine over its descriptions."""
        if self._vectors is None:
            self._vectors = self._encode(self._descriptions)
        return np.maximum.reduceat(steps @ self._vectors.T, self._starts, axis=1)

    def _verdict(self, step: str, columns: np.ndarray) -> Match:
        named = colours_in(step, self.aliases.colour_words)
        scores = columns[self._skill_column]
        # factorised, an action competes only if it acts on as many objects as the step names
        # ("move next to the blue block" is no two-object "put X next to Y")
        fitting = self._fitting(len(named))
        lacking = float(columns[self._lacking & fitting].max(initial=-1.0))
        order = np.argsort(-scores, kind="stable")   # ties: library order, so the result is deterministic
        fits = [compatible(named, colours) for colours in self._skill_colours]
        if self._factorised or self.rerank:
            order = [i for i in order if fits[i] and fitting[self._skill_column[i]]]
        ranked = [(self.skill_ids[i], round(float(scores[i]), 4)) for i in order]
        candidates = tuple(ranked[: self.top_k])
        if not ranked:     # the parser ruled every skill out (e.g. a colour the scene has not)
            return Match(step, None, round(float(scores.max()), 4), "missing", ())
        best = ranked[0][1]
        # factorised: the best action must be one the library can do on the objects the step names
        uncovered = self._factorised and columns[~self._lacking & fitting].max() > scores[order[0]]
        if best < self.missing or lacking > best or uncovered:
            return Match(step, None, best, "missing", candidates)
        runner_up = max(ranked[1][1] if len(ranked) > 1 else -1.0, lacking)
        if best >= self.confident and best - runner_up >= self.margin:
            return Match(step, ranked[0][0], best, "confident", candidates)
        return Match(step, None, best, "unsure", candidates)

    def _parsed(self, embedded: Match, scores: np.ndarray) -> Match:
        """The parser's reading of the step, the embedding's match `embedded` where it cannot read it."""
        step = embedded.step
        if embedded.candidates and embedded.verdict != "missing" and embedded.candidates[0][0] not in self._understood:
            return embedded   # the embedding prefers a skill the parser does not know
        reading = read(step, self.aliases.colour_words, self._scene, self.grammar)
        if reading.missing:   # explicit evidence: an action, object, colour or relation the library lacks
            return Match(step, None, embedded.similarity, "missing", embedded.candidates)
        if reading.action is None:   # unread: the embedding decides, but is never confident alone
            verdict = "unsure" if embedded.verdict == "confident" else embedded.verdict
            return Match(step, None, embedded.similarity, verdict, embedded.candidates)
        index = self._skill_index
        ids = sorted((s for s in reading.skill_ids(self._scene) if s in index), key=lambda s: -scores[index[s]])
        if not ids:   # read, but no announced skill does it (a skill the library may grow)
            return Match(step, None, embedded.similarity, "missing", embedded.candidates)
        ranked = [(s, round(float(scores[index[s]]), 4)) for s in ids]
        candidates = tuple(ranked + [c for c in embedded.candidates if c[0] not in ids])[: self.top_k]
        # the embedding overrules only the action: it is blind to argument order, the parser is not
        disagree = (embedded.verdict == "confident"
                    and self._actions[index[embedded.skill_id]] != self._actions[index[ids[0]]])
        if len(ids) == 1 and reading.sure and not disagree:
            return Match(step, ids[0], ranked[0][1], "confident", candidates)
        return Match(step, None, ranked[0][1], "unsure", candidates)

    def _fitting(self, named: int) -> np.ndarray:
        """Columns whose action takes `named` objects (all of them when the step names none)."""
        if not self._factorised or not named:
            return np.ones(len(self._columns), dtype=bool)
        return np.array([(named <= 1) if n == 0 else (named == n) if n <= 2 else (named <= n) for n in self._arity])


def retrievers(encoder) -> Callable:
    """library -> a SkillRetriever over its captions, every one embedding with `encoder`
    (learner.captions.CaptionEncoder: one model loaded, its embeddings cached per caption)."""
    return lambda library: SkillRetriever(list(library.captions.items()), embed=encoder.encode)
