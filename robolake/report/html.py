"""The report as one self-contained HTML page: inline CSS, charts and videos as data URIs, no
script and nothing fetched from anywhere. Every id is an anchor (`<kind>-<id>`) and every mention
of an id links to it, so each number can be followed to its source. It fits a 1,400 px window:
table cells wrap anywhere, long texts fold into a <details> (the model's prompts and replies too)."""

from __future__ import annotations

import base64
import re
from html import escape
from urllib.parse import quote

from robolake.report.report import (EXPERT, LEARNED, Report, code_line, config_rows, expert_rows, interval,
                                    learned_rows, mixed_line, overall_line, percent, subject)

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; font-size: 13px; max-width: 100%; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; }
td { overflow-wrap: anywhere; }  /* a long word (an id, a model's unbroken reply) never widens the page */
img { max-width: 100%; } summary { cursor: pointer; }
th { background: #f4f4f4; } td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code, .id { font-family: ui-monospace, monospace; font-size: 12px; }
.conv { list-style: none; padding: 0; }
.conv li { padding: 3px 0; border-bottom: 1px solid #f0f0f0; overflow-wrap: anywhere; }
.conv .type { display: inline-block; min-width: 13em; color: #666; font-size: 12px; }
.videos { display: flex; flex-wrap: wrap; gap: 12px; } .videos figure { margin: 0; width: 256px; font-size: 12px; }
.videos video { width: 256px; height: 256px; background: #000; display: block; }
.ok { color: #176b2c; } .bad { color: #a3261b; }
details pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f8f8f8; padding: .4em; margin: .3em 0; }
.exchange { border-bottom: 1px solid #eee; padding: 2px 0; } .exchange h4 { margin: .4em 0 0; font-size: 13px; }
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
        ("videos", "Videos of episodes", _videos(report, link)),
        ("provenance", "Provenance", _provenance(report, link)),
    ]
    nav = " · ".join(f'<a href="#{key}">{escape(title)}</a>' for key, title, _ in sections)
    body = "\n".join(f'<h2 id="{key}">{escape(title)}</h2>\n{content}' for key, title, content in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>robolake report: {escape(report.experiment)}</title>
<link rel="icon" href="data:,"><style>{STYLE}</style></head>
<body><h1>Experiment <code>{escape(report.experiment)}</code></h1>
<p>Lake <code>{escape(report.lake)}</code>, read {escape(report.made_at)}. Every id links to where it comes from;
success intervals are Wilson 95%. Code: <code>{escape(code_line(report))}</code>.</p>
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
    found |= {("episode", e["episode_id"]) for e in report.videos}
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


def _videos(report: Report, link) -> str:
    if not report.videos:
        return ("<p>No episode of this experiment has camera frames (<code>robolake run</code> records them for the "
                "first episodes of each evaluation, <code>--eval-videos</code>).</p>")
    parts = []
    for skill in dict.fromkeys(e["skill"] for e in report.videos):
        figures = []
        for e in (e for e in report.videos if e["skill"] == skill):
            outcome = '<span class="ok">succeeded</span>' if e["success"] else '<span class="bad">failed</span>'
            figures.append(
                f'<figure id="{_anchor("episode", e["episode_id"])}"><video controls muted loop preload="metadata" '
                f'title="{escape(e["task"])}" src="data:video/mp4;base64,{base64.b64encode(e["mp4"]).decode()}">'
                f"</video><figcaption>{outcome} in {e['length']} steps ({e['frames']} frames at {e['fps']:.3g}/s); "
                f"policy {escape(e['policy'])} {link('run', e['run_id']) if e['run_id'] else ''}; decision "
                f"{link('decision', e['decision_id'])}; episode <code>{escape(e['episode_id'])}</code>"
                "</figcaption></figure>")
        parts.append(f"<h3>{escape(skill)}</h3><div class=\"videos\">{''.join(figures)}</div>")
    return ("<p>Per task, its latest episodes with camera frames (in <code>robolake run</code>, the first episodes of "
            "each evaluation of the learned policy), played in simulated time.</p>" + "".join(parts))


def _when(iso: str) -> str:
    """An event's time to the second (it wraps between date and time); to the millisecond on hover."""
    return f'<span title="{escape(iso)}">{escape(iso[:19].replace("T", " "))}</span>'


def _long(text: str, limit: int = 160) -> str:
    """Event text for a table cell: past `limit` characters, folded into a <details> that holds it all."""
    if len(text) <= limit:
        return escape(text)
    return f"<details><summary>{escape(text[:limit])}…</summary>{escape(text)}</details>"


def _provenance(report: Report, link) -> str:
    p = report.provenance

    def episodes(ids: list[str]) -> str:
        """The first 20, folded; a link where the episode has a video."""
        shown = ", ".join(link("episode", i) for i in ids[:20]) + (f" … (+{len(ids) - 20})" if len(ids) > 20 else "")
        return f"<details><summary>{len(ids)} episodes</summary>{shown}</details>" if len(ids) > 2 else shown

    decisions = _table(
        ["decision", "time", "task", "skills", "proposal", "model call", "asked", "done", "task successes",
         "policies", "episodes"],
        [[f'<span class="id">{escape(d["decision_id"])}</span>', _when(d["_time"]), _long(d["task"]),
          escape(" → ".join(d["skill_sequence"])), link("proposal", d.get("proposal_id")),
          link("call", d.get("call_id")), str(d["episodes"]), str(d["episodes_done"]), str(d["task_successes"]),
          escape(", ".join(d["policies"])), episodes(d["episode_ids"])] for d in p["decisions"]],
        [_anchor("decision", d["decision_id"]) for d in p["decisions"]])
    undirected = p["undirected_episodes"]
    if undirected:
        decisions += (f"<p>{undirected['episodes_done']} episodes ran without a curriculum decision (policies "
                      f"{escape(', '.join(undirected['policies']))}): {episodes(undirected['episode_ids'])}</p>")
    proposals = _table(["proposal", "time", "proposer", "task", "rationale", "learning progress", "model call"],
                       [[f'<span class="id">{escape(r["proposal_id"])}</span>', _when(r["_time"]),
                         escape(r["proposer"]), _long(r["task"]), _long(r["rationale"]),
                         _long(r.get("progress") or "–"), link("call", r.get("call_id"))]
                        for r in p["proposals"]], [_anchor("proposal", r["proposal_id"]) for r in p["proposals"]])
    missing = _table(["missing skill", "proposal", "step", "closest skill", "similarity"],
                     [[f'<span class="id">{escape(r["missing_id"])}</span>', link("proposal", r["proposal_id"]),
                       escape(r["step"]), escape(r.get("best_skill") or "–"),
                       "–" if r.get("similarity") is None else f"{r['similarity']:.2f}"] for r in p["missing_skills"]],
                     [_anchor("missing", r["missing_id"]) for r in p["missing_skills"]])
    calls = _table(["model call", "time", "stage", "backend / model", "temperature", "latency", "tokens in/out",
                    "attempt", "error", "exchange"],
                   [[f'<span class="id">{escape(r["call_id"])}</span>', _when(r["_time"]), escape(r["stage"]),
                     escape(f"{r['backend']} / {r['model']}"), f"{r['temperature']:g}", f"{r['latency_s']:.2f} s",
                     f"{r.get('input_tokens') or '–'}/{r.get('output_tokens') or '–'}", str(r["attempt"]),
                     _long(r.get("error") or "–"),
                     f'<a href="#{_anchor("exchange", r["call_id"])}">prompt and reply</a>']
                    for r in p["calls"]], [_anchor("call", r["call_id"]) for r in p["calls"]])
    verdicts = _table(["verdict", "time", "skill", "judgement", "method", "learner run", "slope [95%]",
                       "converged at", "model call", "rationale"],
                      [[f'<span class="id">{escape(r["verdict_id"])}</span>', _when(r["_time"]),
                        escape(subject(r["skill_id"])), escape(r["verdict"]), escape(r.get("method") or "–"),
                        link("run", r.get("run_id")),
                        _slope(r), str(r.get("converged_at") or "–"), link("call", r.get("call_id")),
                        _long(r["rationale"])] for r in p["verdicts"]],
                      [_anchor("verdict", r["verdict_id"]) for r in p["verdicts"]])
    summaries = _table(["summary", "time", "skill", "policy", "successes", "rate", "95% interval", "trend",
                        "hindsight"],
                       [[f'<span class="id">{escape(r["summary_id"])}</span>', _when(r["_time"]), escape(r["skill_id"]),
                         escape(f"{r['policy_id']}@{r['policy_version']}"), f"{r['successes']}/{r['episodes']}",
                         percent(r["success_rate"]), interval(r["ci_low"], r["ci_high"]), escape(r["trend"]),
                         "–" if r.get("hindsight_episodes") is None else
                         f"{r['hindsight_successes']}/{r['hindsight_episodes']}"] for r in p["summaries"]],
                       [_anchor("summary", r["summary_id"]) for r in p["summaries"]])
    runs = _table(["learner run (checkpoints)", "steps", "latest metrics"],
                  [[f'<span class="id">{escape(r["run_id"])}</span>', f"{r['first_step']}–{r['last_step']}",
                    _long(", ".join(f"{k}={v:.4g}" for k, v in sorted(r["metrics"].items())))] for r in p["runs"]],
                  [_anchor("run", r["run_id"]) for r in p["runs"]])
    relabels = _table(["relabel run", "time", "dataset", "episodes", "steps", "rows", "lake snapshot"],
                      [[f'<span class="id">{escape(r["relabel_id"])}</span>', _when(r["_time"]), escape(r["dataset"]),
                        _n(r["episodes"]), _n(r["steps"]), _n(r["rows"]), str(r["lake_snapshot"])]
                       for r in p["relabels"]], [_anchor("relabel", r["relabel_id"]) for r in p["relabels"]])
    return "\n".join([
        "<p>Episodes come from decisions; a decision from a proposal and a model call; a policy <code>pac:RUN</code> "
        "is a checkpoint of a learner run.</p>",
        "<h3>Decisions</h3>", decisions, "<h3>Proposals</h3>", proposals, "<h3>Missing skills</h3>", missing,
        "<h3>Model calls</h3>", calls, "<h3>The model's exchanges</h3>", _exchanges(p["calls"]),
        "<h3>Verdicts</h3>", verdicts, "<h3>Skill summaries</h3>", summaries,
        "<h3>Learner runs</h3>", runs, "<h3>Relabel runs</h3>", relabels])


def _exchanges(calls: list[dict]) -> str:
    """Each model call in full, folded: the prompt, the images sent (by name and hash), the reply or error."""
    if not calls:
        return "<p>None.</p>"
    items = []
    for r in calls:
        images = "".join(f"<li>{escape(i['name'])} <code>{escape(i['sha256'][:16])}</code></li>"
                         for i in r.get("images") or [])
        items.append(
            f'<details class="exchange" id="{_anchor("exchange", r["call_id"])}"><summary>{escape(r["stage"])} '
            f'<span class="id">{escape(r["call_id"])}</span> ({escape(r["backend"])} / {escape(r["model"])}, '
            f'{r["latency_s"]:.2f} s, attempt {r["attempt"]}){" — failed" if r.get("error") else ""}</summary>'
            f"<h4>prompt <code>{escape(r['prompt_hash'][:12])}</code></h4><pre>{escape(r['prompt'])}</pre>"
            + (f"<h4>images</h4><ul>{images}</ul>" if images else "")
            + f"<h4>reply</h4><pre>{escape(r.get('reply') or '(none)')}</pre>"
            + (f"<h4>error</h4><pre>{escape(r['error'])}</pre>" if r.get("error") else "") + "</details>")
    return "".join(items)


def _slope(row: dict) -> str:
    if row.get("slope") is None:
        return "–"
    low, high = row.get("slope_low"), row.get("slope_high")
    return f"{row['slope']:.3g}" + (f" [{low:.3g}, {high:.3g}]" if low is not None and high is not None else "")
