"""The report as one self-contained HTML page: inline CSS, charts and frames as data URIs, no
script and nothing fetched from anywhere. Every id is an anchor (`<kind>-<id>`) and every mention
of an id links to it, so each number can be followed to its source."""

from __future__ import annotations

import base64
import re
from html import escape
from urllib.parse import quote

from robolake.report.report import (EXPERT, LEARNED, Report, config_rows, expert_rows, interval, learned_rows,
                                    mixed_line, overall_line, percent, subject)

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
code, .id { font-family: ui-monospace, monospace; font-size: 12px; }
.conv { list-style: none; padding: 0; } .conv li { padding: 3px 0; border-bottom: 1px solid #f0f0f0; }
.conv .type { display: inline-block; min-width: 13em; color: #666; font-size: 12px; }
.strip img { width: 96px; height: 96px; image-rendering: pixelated; margin-right: 2px; border: 1px solid #ccc; }
.ok { color: #176b2c; } .bad { color: #a3261b; } details pre { white-space: pre-wrap; max-width: 1100px; }
:target { background: #fff4b3; }
"""


def render(report: Report) -> str:
    known = _anchors(report)

    def link(kind: str, identifier) -> str:
        if identifier is None:
            return "–"
        text = escape(str(identifier)[:16])
        if (kind, str(identifier)) not in known:
            return f'<span class="id" title="{escape(str(identifier))}">{text}</span>'
        return f'<a class="id" href="#{_anchor(kind, identifier)}" title="{escape(str(identifier))}">{text}</a>'

    sections = [
        ("experiment", "Experiment", _table(["setting", "value"], [[escape(c) for c in row]
                                                                   for row in config_rows(report)])),
        ("volumes", "Data volumes", _table(["what", "count"], [[escape(k), _n(v)] for k, v in report.volumes.items()])),
        ("learned", "Learned policy", _learned(report, link)),
        ("expert", "Expert collection", _expert(report)),
        ("learning", "Learning curves", _image(report.charts.get("learning"), "learner metrics per step")
         or "<p>No learner metrics yet.</p>"),
        ("conversation", "The conversation between the modules", _conversation(report, link)),
        ("frames", "Example episodes", _frames(report, link)),
        ("provenance", "Provenance", _provenance(report, link)),
    ]
    nav = " · ".join(f'<a href="#{key}">{escape(title)}</a>' for key, title, _ in sections)
    body = "\n".join(f'<h2 id="{key}">{escape(title)}</h2>\n{content}' for key, title, content in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>robolake report: {escape(report.experiment)}</title>
<link rel="icon" href="data:,"><style>{STYLE}</style></head>
<body><h1>Experiment <code>{escape(report.experiment)}</code></h1>
<p>Lake <code>{escape(report.lake)}</code>, read {escape(report.made_at)}. Every id links to where it comes from;
success intervals are Wilson 95%. Code: commit <code>{escape(str(report.header["commit"]))}</code>.</p>
<p>{nav}</p>
{body}
</body></html>
"""


def _anchor(kind: str, identifier) -> str:
    return f"{kind}-{quote(str(identifier), safe='')}"


def _anchors(report: Report) -> set[tuple[str, str]]:
    """(kind, id) of every row the page has an anchor for."""
    p = report.provenance
    found = {("decision", d["decision_id"]) for d in p["decisions"]}
    found |= {("proposal", r["proposal_id"]) for r in p["proposals"]}
    found |= {("missing", r["missing_id"]) for r in p["missing_skills"]}
    found |= {("call", r["call_id"]) for r in p["calls"]} | {("verdict", r["verdict_id"]) for r in p["verdicts"]}
    found |= {("summary", r["summary_id"]) for r in p["summaries"]} | {("run", r["run_id"]) for r in p["runs"]}
    found |= {("relabel", r["relabel_id"]) for r in p["relabels"]}
    found |= {("episode", e["episode_id"]) for e in report.frames}
    return {(k, str(i)) for k, i in found}


def _n(value) -> str:
    return f"{value:,}" if isinstance(value, int) else escape(str(value))


def _table(headers: list[str], rows: list[list[str]], anchors: list[str | None] | None = None) -> str:
    if not rows:
        return "<p>None.</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        anchor = anchors[i] if anchors else None
        cells = "".join(f'<td class="n">{c}</td>' if _NUMBER.fullmatch(c) else f"<td>{c}</td>" for c in row)
        body.append(f'<tr id="{anchor}">{cells}</tr>' if anchor else f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


_NUMBER = re.compile(r"[-\d.,/%\[\] –]+( s)?")  # counts, rates, intervals, latencies: right-aligned


def _image(png: bytes | None, alt: str) -> str:
    if not png:
        return ""
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _learned(report: Report, link) -> str:
    rows = learned_rows(report, lambda r: escape(r["verdict"]) + " " + link("verdict", r["verdict_id"]))
    notes = [line for line in (overall_line(report), mixed_line(report)) if line]
    return (_image(report.charts.get("learned"), "evaluated success of the learned policy per skill and iteration")
            + "<p>Per skill, the learned policy's success in its evaluation episodes, per iteration (the checkpoint "
              "that iteration trained).</p>"
            + _table(LEARNED, [[c if i == len(LEARNED) - 1 else escape(c) for i, c in enumerate(row)] for row in rows])
            + "".join(f"<p>{escape(line)}</p>" for line in notes))


def _expert(report: Report) -> str:
    return (_image(report.charts.get("expert"), "collection success of the scripted expert per skill")
            + "<p>Per skill, the scripted expert's success in the episodes it collected (what the learner was "
              "shown, not what it learned).</p>"
            + _table(EXPERT, [[escape(c) for c in row] for row in expert_rows(report)]))


def _conversation(report: Report, link) -> str:
    if not report.conversation:
        return "<p>No events yet.</p>"
    items = []
    for event in report.conversation:
        ids = " ".join(link(event["kind"], i) for i in event["ids"][:5]) if event["kind"] else ""
        refs = ", ".join(f"{r['kind']} {link(r['kind'], r['id'])}" for r in event["refs"])
        items.append(f'<li id="event-{quote(event["key"], safe="")}"><span class="type">{escape(event["type"])}</span>'
                     f"{escape(event['line'])} {ids}{' ← ' + refs if refs else ''}</li>")
    return f'<ol class="conv">{"".join(items)}</ol>'


def _frames(report: Report, link) -> str:
    if not report.frames:
        return "<p>No episode of this experiment has camera frames.</p>"
    parts = []
    for e in report.frames:
        images = "".join(f'<img title="step {f["step"]}" alt="step {f["step"]}" '
                         f'src="data:image/png;base64,{base64.b64encode(f["png"]).decode()}">' for f in e["frames"])
        outcome = '<span class="ok">succeeded</span>' if e["success"] else '<span class="bad">failed</span>'
        parts.append(f'<div id="{_anchor("episode", e["episode_id"])}"><p>Episode <code>{escape(e["episode_id"])}'
                     f'</code> — "{escape(e["task"])}" {outcome} in {e["length"]} steps; decision '
                     f'{link("decision", e["decision_id"])}, policy {escape(e["policy"])} '
                     f'{link("run", e["run_id"]) if e["run_id"] else ""}</p><div class="strip">{images}</div></div>')
    return "".join(parts)


def _provenance(report: Report, link) -> str:
    p = report.provenance

    def episodes(ids: list[str]) -> str:
        shown = ", ".join(f'<span class="id">{escape(i)}</span>' for i in ids[:20])
        return shown + (f" … (+{len(ids) - 20})" if len(ids) > 20 else "")

    decisions = _table(
        ["decision", "time", "task", "skills", "proposal", "model call", "asked", "done", "task successes",
         "policies", "episodes"],
        [[f'<span class="id">{escape(d["decision_id"])}</span>', escape(d["_time"]), escape(d["task"]),
          escape(" → ".join(d["skill_sequence"])), link("proposal", d.get("proposal_id")),
          link("call", d.get("call_id")), str(d["episodes"]), str(d["episodes_done"]), str(d["task_successes"]),
          escape(", ".join(d["policies"])), episodes(d["episode_ids"])] for d in p["decisions"]],
        [_anchor("decision", d["decision_id"]) for d in p["decisions"]])
    undirected = p["undirected_episodes"]
    if undirected:
        decisions += (f"<p>{undirected['episodes_done']} episodes ran without a curriculum decision (policies "
                      f"{escape(', '.join(undirected['policies']))}): {episodes(undirected['episode_ids'])}</p>")
    proposals = _table(["proposal", "time", "proposer", "task", "rationale", "learning progress", "model call"],
                       [[f'<span class="id">{escape(r["proposal_id"])}</span>', escape(r["_time"]),
                         escape(r["proposer"]), escape(r["task"]), escape(r["rationale"]),
                         escape(r.get("progress") or "–"), link("call", r.get("call_id"))]
                        for r in p["proposals"]], [_anchor("proposal", r["proposal_id"]) for r in p["proposals"]])
    missing = _table(["missing skill", "proposal", "step", "closest skill", "similarity"],
                     [[f'<span class="id">{escape(r["missing_id"])}</span>', link("proposal", r["proposal_id"]),
                       escape(r["step"]), escape(r.get("best_skill") or "–"),
                       "–" if r.get("similarity") is None else f"{r['similarity']:.2f}"] for r in p["missing_skills"]],
                     [_anchor("missing", r["missing_id"]) for r in p["missing_skills"]])
    calls = _table(["model call", "time", "stage", "backend / model", "temperature", "latency", "tokens in/out",
                    "attempt", "error", "prompt and reply"],
                   [[f'<span class="id">{escape(r["call_id"])}</span>', escape(r["_time"]), escape(r["stage"]),
                     escape(f"{r['backend']} / {r['model']}"), f"{r['temperature']:g}", f"{r['latency_s']:.2f} s",
                     f"{r.get('input_tokens') or '–'}/{r.get('output_tokens') or '–'}", str(r["attempt"]),
                     escape(r.get("error") or "–"),
                     f"<details><summary>prompt {escape(r['prompt_hash'][:12])}</summary><pre>{escape(r['prompt'])}"
                     f"</pre></details><details><summary>reply</summary><pre>{escape(r.get('reply') or '')}</pre>"
                     "</details>"] for r in p["calls"]], [_anchor("call", r["call_id"]) for r in p["calls"]])
    verdicts = _table(["verdict", "time", "skill", "judgement", "method", "learner run", "slope [95%]",
                       "converged at", "model call", "rationale"],
                      [[f'<span class="id">{escape(r["verdict_id"])}</span>', escape(r["_time"]),
                        escape(subject(r["skill_id"])), escape(r["verdict"]), escape(r.get("method") or "–"),
                        link("run", r.get("run_id")),
                        _slope(r), str(r.get("converged_at") or "–"), link("call", r.get("call_id")),
                        escape(r["rationale"])] for r in p["verdicts"]],
                      [_anchor("verdict", r["verdict_id"]) for r in p["verdicts"]])
    summaries = _table(["summary", "time", "skill", "policy", "successes", "rate", "95% interval", "trend",
                        "hindsight"],
                       [[f'<span class="id">{escape(r["summary_id"])}</span>', escape(r["_time"]), escape(r["skill_id"]),
                         escape(f"{r['policy_id']}@{r['policy_version']}"), f"{r['successes']}/{r['episodes']}",
                         percent(r["success_rate"]), interval(r["ci_low"], r["ci_high"]), escape(r["trend"]),
                         "–" if r.get("hindsight_episodes") is None else
                         f"{r['hindsight_successes']}/{r['hindsight_episodes']}"] for r in p["summaries"]],
                       [_anchor("summary", r["summary_id"]) for r in p["summaries"]])
    runs = _table(["learner run (checkpoints)", "steps", "latest metrics"],
                  [[f'<span class="id">{escape(r["run_id"])}</span>', f"{r['first_step']}–{r['last_step']}",
                    escape(", ".join(f"{k}={v:.4g}" for k, v in sorted(r["metrics"].items())))] for r in p["runs"]],
                  [_anchor("run", r["run_id"]) for r in p["runs"]])
    relabels = _table(["relabel run", "time", "dataset", "episodes", "steps", "rows", "lake snapshot"],
                      [[f'<span class="id">{escape(r["relabel_id"])}</span>', escape(r["_time"]), escape(r["dataset"]),
                        _n(r["episodes"]), _n(r["steps"]), _n(r["rows"]), str(r["lake_snapshot"])]
                       for r in p["relabels"]], [_anchor("relabel", r["relabel_id"]) for r in p["relabels"]])
    return "\n".join([
        "<p>Episodes come from decisions; a decision from a proposal and a model call; a policy <code>pac:RUN</code> "
        "is a checkpoint of a learner run.</p>",
        "<h3>Decisions</h3>", decisions, "<h3>Proposals</h3>", proposals, "<h3>Missing skills</h3>", missing,
        "<h3>Model calls</h3>", calls, "<h3>Verdicts</h3>", verdicts, "<h3>Skill summaries</h3>", summaries,
        "<h3>Learner runs</h3>", runs, "<h3>Relabel runs</h3>", relabels])


def _slope(row: dict) -> str:
    if row.get("slope") is None:
        return "–"
    low, high = row.get("slope_low"), row.get("slope_high")
    return f"{row['slope']:.3g}" + (f" [{low:.3g}, {high:.3g}]" if low is not None and high is not None else "")
