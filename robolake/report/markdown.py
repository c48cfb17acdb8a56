"""The report as Markdown: the same sections as the HTML page, charts as PNG files written beside it
(`<stem>.<name>.png`), so any Markdown viewer shows them, and videos as MP4 files it links to."""

from __future__ import annotations

from pathlib import Path

from robolake.report.report import (EXPERT, LEARNED, Report, code_line, config_rows, expert_rows, interval,
                                    learned_rows, mixed_line, overall_line, percent, subject)


# Event text (a model's words, a task) is data: HTML in it must not render, nor become a link or
# an image (translate maps each character once: the escapes it adds are not escaped again).
_ESCAPES = str.maketrans({"\\": "\\\\", "`": "\\`", "[": "\\[", "]": "\\]", "&": "&amp;", "<": "&lt;", ">": "&gt;"})


def _text(value) -> str:
    """Event text as inert Markdown, on one line."""
    return " ".join(str(value).translate(_ESCAPES).splitlines())


def _code(value) -> str:
    """Event text in a code span (shown verbatim: only a backtick could end it)."""
    return "`" + " ".join(str(value).replace("`", "'").splitlines()) + "`"


def _cell(value) -> str:
    return "–" if value is None or value == "" else _text(value).replace("|", "\\|")


def _table(headers: list[str], rows: list[list]) -> str:
    if not rows:
        return "None.\n"
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render(report: Report, stem: Path) -> str:
    """The Markdown text; writes its images as `<stem>.<name>.png`, its videos as `<stem>.episode-<id>.mp4`."""
    images = {}
    for name, png in report.charts.items():
        path = stem.with_name(f"{stem.name}.{name}.png")
        path.write_bytes(png)
        images[name] = f"![{name}]({path.name})\n"
    p = report.provenance
    out = [f"# Experiment `{report.experiment}`\n", f"Lake `{report.lake}`, read {report.made_at}. "
           "Success intervals are Wilson 95%; every id is listed under Provenance. "
           f"Code: {_code(code_line(report))}.\n",
           "## Experiment\n", _table(["setting", "value"], config_rows(report)),
           "## Data volumes\n", _table(["what", "count"], list(report.volumes.items())),
           "## Learned policy\n", images.get("learned", ""),
           "Per skill, the learned policy's success in its evaluation episodes, per iteration (the checkpoint "
           "that iteration trained).\n", _table(LEARNED, learned_rows(report)),
           *[_text(line) + "\n" for line in (overall_line(report), mixed_line(report)) if line],
           "## Expert collection\n", images.get("expert", ""),
           "Per skill, the scripted expert's success in the episodes it collected (what the learner was shown, "
           "not what it learned).\n", _table(EXPERT, expert_rows(report)),
           "## Learning curves\n", images.get("learning", "No learner metrics yet.\n"),
           "## The conversation between the modules\n"]
    out += [f"- {_code(e['type'])} {_text(e['line'])}"
            + (f" — refs: {_text(', '.join(r['kind'] + ' ' + r['id'] for r in e['refs']))}" if e["refs"] else "")
            for e in report.conversation] or ["No events yet."]
    out += ["", "## Videos of episodes\n"]
    for e in report.videos:
        clip = stem.with_name(f"{stem.name}.episode-{e['episode_id'][:12]}.mp4")
        clip.write_bytes(e["mp4"])
        out.append(f"{_text(e['skill'])}: episode {_code(e['episode_id'])} "
                   f"{'succeeded' if e['success'] else 'failed'} in {e['length']} steps; decision "
                   f"{_code(e['decision_id'])}, policy {_code(e['policy'])}: [video]({clip.name})\n")
    if not report.videos:
        out.append("No episode of this experiment has camera frames.\n")
    out += ["## Provenance\n", "### Decisions\n",
            _table(["decision", "task", "skills", "proposal", "model call", "asked", "done", "task successes",
                    "policies", "episodes"],
                   [[d["decision_id"], d["task"], " → ".join(d["skill_sequence"]), d.get("proposal_id"),
                     d.get("call_id"),
                     d["episodes"], d["episodes_done"], d["task_successes"], ", ".join(d["policies"]),
                     ", ".join(d["episode_ids"][:20]) + (" …" if len(d["episode_ids"]) > 20 else "")]
                    for d in p["decisions"]]),
            "### Proposals\n", _table(["proposal", "proposer", "task", "rationale", "learning progress", "model call"],
                                      [[r["proposal_id"], r["proposer"], r["task"], r["rationale"], r.get("progress"),
                                        r.get("call_id")] for r in p["proposals"]]),
            "### Missing skills\n", _table(["missing skill", "proposal", "step", "closest skill", "similarity"],
                                           [[r["missing_id"], r["proposal_id"], r["step"], r.get("best_skill"),
                                             r.get("similarity")] for r in p["missing_skills"]]),
            "### Model calls\n", _table(["model call", "stage", "backend / model", "latency s", "tokens in/out", "error",
                                         "reply"],
                                        [[r["call_id"], r["stage"], f"{r['backend']} / {r['model']}",
                                          f"{r['latency_s']:.2f}", f"{r.get('input_tokens')}/{r.get('output_tokens')}",
                                          r.get("error"), (r.get("reply") or "")[:200]] for r in p["calls"]]),
            "### Verdicts\n", _table(["verdict", "skill", "judgement", "method", "learner run", "model call",
                                      "rationale"],
                                     [[r["verdict_id"], subject(r["skill_id"]), r["verdict"], r.get("method"),
                                       r.get("run_id"), r.get("call_id"), r["rationale"]] for r in p["verdicts"]]),
            "### Skill summaries\n", _table(["summary", "skill", "policy", "successes", "rate", "95% interval"],
                                            [[r["summary_id"], r["skill_id"], f"{r['policy_id']}@{r['policy_version']}",
                                              f"{r['successes']}/{r['episodes']}", percent(r["success_rate"]),
                                              interval(r["ci_low"], r["ci_high"])] for r in p["summaries"]]),
            "### Learner runs\n", _table(["learner run (checkpoints)", "steps", "latest metrics"],
                                         [[r["run_id"], f"{r['first_step']}–{r['last_step']}",
                                           ", ".join(f"{k}={v:.4g}" for k, v in sorted(r["metrics"].items()))]
                                          for r in p["runs"]]),
            "### Relabel runs\n", _table(["relabel run", "dataset", "episodes", "rows"],
                                         [[r["relabel_id"], r["dataset"], r["episodes"], r["rows"]]
                                          for r in p["relabels"]])]
    return "\n".join(out)
