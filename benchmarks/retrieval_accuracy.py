"""Skill retrieval by caption embedding: top-1 accuracy on labelled, paraphrased step descriptions
(benchmarks/retrieval_steps.toml), with the embedder alone (whole step against whole descriptions),
with the colour/order re-ranker, factorised (embedding for the action + parser for the objects),
and parsed (the semantic step parser, the factorised embedding for what it cannot read; the default);
missing-skill detection; verdict counts; the share of multi-step proposals whose steps are all
retrievable; latency per stage against encoding the library's captions once.

    python benchmarks/retrieval_accuracy.py [--set test|test2|test3|dev|dev2|...] [--data benchmarks/retrieval_steps.toml]

--set names any table of the data file with a `steps` list. Writes benchmarks/results/retrieval.json
(per configuration top-1 and missing precision/recall; for the set `frozen` also `frozen_set_top1`
and `missing_precision` of the default configuration).

Top-1 counts an "unsure" step by its best candidate (what the embedding ranks first); "oracle VLM"
counts it right when the right skill is among the candidates the VLM would be shown (or the step is
missing, which the VLM may declare): the most asking the VLM can add.
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import table, timed, write_result  # noqa: E402

DATA = Path(__file__).with_name("retrieval_steps.toml")
CONFIGS = (("embedder alone", {"scoring": "embedding", "rerank": False}),
           ("embedder + colour re-ranker", {"scoring": "embedding", "rerank": True}),
           ("action embedding + object parser", {"scoring": "factorised"}),
           ("step parser + action embedding (default)", {"scoring": "parsed"}))
DEFAULT = CONFIGS[-1][0]


def family(label: str) -> str:
    """reach_red -> reach, place_red_on_blue -> place; open_gripper, go_home, build_tower, missing stay."""
    head = label.split("_")[0]
    return head if head in {"reach", "grasp", "lift", "place"} else label


def top1(match) -> str:
    return "missing" if match.verdict == "missing" else match.candidates[0][0]


def oracle_right(match, expected: str) -> bool:
    if match.verdict == "unsure":
        return expected == "missing" or expected in {skill for skill, _ in match.candidates}
    return top1(match) == expected


def score(matches, labels: list[str]) -> dict:
    got = [top1(m) for m in matches]
    covered = [i for i, e in enumerate(labels) if e != "missing"]
    said_missing = [i for i, g in enumerate(got) if g == "missing"]
    truly_missing = [i for i, e in enumerate(labels) if e == "missing"]
    confident = [i for i, m in enumerate(matches) if m.verdict == "confident"]
    share = lambda hits, over: sum(hits) / len(over) if over else float("nan")  # noqa: E731
    return {
        "top-1 (all)": share([got[i] == labels[i] for i in range(len(labels))], labels),
        "top-1 (covered)": share([got[i] == labels[i] for i in covered], covered),
        "missing precision": share([labels[i] == "missing" for i in said_missing], said_missing),
        "missing recall": share([got[i] == "missing" for i in truly_missing], truly_missing),
        "confident right": share([matches[i].skill_id == labels[i] for i in confident], confident),
        "oracle VLM (all)": share([oracle_right(m, e) for m, e in zip(matches, labels)], labels),
        "verdicts": Counter(m.verdict for m in matches),
    }


def proposals_table(retrievers, proposals) -> list[list]:
    rows = [["expected (labels)", sum(all(e != "missing" for _, e in p["steps"]) for p in proposals) / len(proposals),
             "-"]]
    for name, retriever in retrievers:
        retrievable = right = 0
        for proposal in proposals:
            matches = retriever.match_all([step for step, _ in proposal["steps"]])
            retrievable += all(m.verdict != "missing" for m in matches)
            right += all(top1(m) == e for m, (_, e) in zip(matches, proposal["steps"]))
        rows.append([name, retrievable / len(proposals), right / len(proposals)])
    return rows


def latency_rows(encoder, skills, steps: list[str]) -> list[list]:
    """Median ms per stage, the encoder's per-caption cache cleared where the stage is a first encoding."""
    from consumers.curriculum.retrieval import SkillRetriever

    def uncached(fn):
        def run():
            encoder._cache.clear()   # the cache would otherwise turn every repeat into a lookup
            fn()
        return run

    captions = [caption for _, caption in skills]
    retriever = SkillRetriever(skills, encoder.encode)
    retriever.match(steps[0])
    baseline = timed(uncached(lambda: encoder.encode(captions)))
    stages = [
        (f"encode the {len(captions)} captions once (baseline)", baseline),
        (f"embed the library: {retriever.description_count()} descriptions",
         timed(uncached(lambda: SkillRetriever(skills, encoder.encode).match(steps[0])))),
        ("embed one step", timed(uncached(lambda: encoder.encode([steps[1]])))),
        ("match one step, embedding cached (score + verdict + re-rank)", timed(lambda: retriever.match(steps[1]))),
        (f"match_all of {len(steps)} steps, per step",
         timed(uncached(lambda: retriever.match_all(steps))) / len(steps)),
    ]
    return [[what, seconds * 1e3, seconds / baseline] for what, seconds in stages]


def figures(set_name: str, labels: list[str], scores: dict, made: str | None = None) -> dict:
    """The figures of benchmarks/results/retrieval.json (`made`: how the set was made, as its table
    says); the frozen set's headline keys only for it."""
    num = lambda x: None if x != x else x  # noqa: E731  (no NaN in JSON: a set with no missing step)
    out = {"set": set_name, "steps": len(labels), "missing_steps": labels.count("missing"),
           **({"made": made} if made else {}), "default_configuration": DEFAULT,
           "configurations": {name: {"top1": s["top-1 (all)"], "missing_precision": num(s["missing precision"]),
                                     "missing_recall": num(s["missing recall"])} for name, s in scores.items()}}
    if set_name == "frozen":
        out["frozen_set_top1"] = scores[DEFAULT]["top-1 (all)"]
        out["missing_precision"] = num(scores[DEFAULT]["missing precision"])
    return out


def main() -> None:
    from consumers.curriculum.retrieval import SkillRetriever
    from learner.captions import CaptionEncoder
    from producers.sim.skills import LIBRARY

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", default="test",
                        help="a table of the data file: test, test2, test3 (held out), dev, dev2 (developed on), "
                             "frozen (in a --data file of its own)")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    with open(args.data, "rb") as f:
        data = tomllib.load(f)
    sets = [k for k, v in data.items() if isinstance(v, dict) and "steps" in v]
    if args.set not in sets:
        parser.error(f"no set {args.set!r} in {args.data}; it has {', '.join(sets)}")
    labelled = data[args.set]["steps"]
    steps, labels = [s for s, _ in labelled], [e for _, e in labelled]
    skills = [(skill.id, skill.caption) for skill in LIBRARY.values()]

    encoder = CaptionEncoder()
    started = time.perf_counter()
    encoder.encode(["load the model"])
    load_s = time.perf_counter() - started
    retrievers = [(name, SkillRetriever(skills, encoder.encode, **kwargs)) for name, kwargs in CONFIGS]
    results = {name: retriever.match_all(steps) for name, retriever in retrievers}
    scores = {name: score(matches, labels) for name, matches in results.items()}

    r = retrievers[0][1]
    print(f"python {' '.join(sys.argv)}")
    print(f"set {args.set}: {len(steps)} steps, {labels.count('missing')} missing, "
          f"{len(set(labels) - {'missing'})} skills; thresholds confident {r.confident}, "
          f"margin {r.margin}, missing floor {r.missing}\n")
    metrics = [k for k in next(iter(scores.values())) if k != "verdicts"]
    print(table(["configuration", *metrics, "confident / unsure / missing"],
                [[name, *[s[k] for k in metrics],
                  " / ".join(str(s["verdicts"][v]) for v in ("confident", "unsure", "missing"))]
                 for name, s in scores.items()]))

    print("\ntop-1 errors per class")
    classes = sorted(set(map(family, labels)), key=lambda c: (c == "missing", c))
    print(table(["class", "steps", *[name for name, _ in CONFIGS]],
                [[c, sum(family(e) == c for e in labels),
                  *[sum(family(e) == c and top1(m) != e for m, e in zip(results[name], labels)) for name, _ in CONFIGS]]
                 for c in classes]))
    for name, _ in CONFIGS:
        errors = [[m.step, e, top1(m), m.verdict, m.similarity]
                  for m, e in zip(results[name], labels) if top1(m) != e]
        print(f"\nerrors, {name}")
        print(table(["step", "expected", "top-1", "verdict", "similarity"], errors) if errors else "none")

    print(f"\nwrote {write_result('retrieval', figures(args.set, labels, scores, data[args.set].get('made')))}")

    if data.get("proposal"):
        print(f"\nproposals ({len(data['proposal'])}): share whose steps are all retrievable (no step missing)")
        print(table(["configuration", "all steps retrievable", "all steps top-1 right"],
                    proposals_table(retrievers, data["proposal"])))

    print(f"\nlatency (CPU; model load once: {load_s:.2f} s)")
    print(table(["stage", "ms", "x baseline"], latency_rows(encoder, skills, steps)))


if __name__ == "__main__":
    main()
