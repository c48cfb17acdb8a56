"""The log as a conversation a person can read: one line per event batch, said by whoever
produced it (the published system's modules talked in a chat room; this is ours)."""

from __future__ import annotations

from datetime import datetime, timezone

from infra.bus.interface import Delivery, Message


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%H:%M:%S")


def _short(identifier: str | None) -> str:
    return (identifier or "-")[:8]


def _clip(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def describe(delivery: Delivery) -> str:
    """One readable line for a decoded event batch."""
    batch, rows = delivery.batch, delivery.batch.rows()
    first = rows[0] if rows else {}
    when = _clock(delivery.timestamp_ms)
    match batch.type:
        case "episode.started":
            return (f"[{when}] {first['worker_id']}: starting episode {_short(first['episode_id'])} — "
                    f"\"{first['task']}\" via {' → '.join(first['skill_sequence'])} "
                    f"(seed {first['seed']}, policy {first['policy_id']}@{first['policy_version']})")
        case "episode.steps":
            reward = sum(r["reward"] for r in rows)
            skills = sorted({r["skill_id"] for r in rows})
            return (f"[{when}] episode {_short(first.get('episode_id'))}: steps "
                    f"{first.get('step', 0)}–{rows[-1]['step'] if rows else 0} "
                    f"(chunk {first.get('chunk', 0)}, skill {', '.join(skills)}, reward {reward:.2f})")
        case "episode.ended":
            outcome = "succeeded" if first["task_success"] else "failed"
            skills = ", ".join(f"{s['skill_id']} {'✓' if s['success'] else '✗'}" for s in first["skills"])
            return (f"[{when}] episode {_short(first['episode_id'])} {outcome} after {first['length']} steps "
                    f"({first['termination']}, return {first['task_return']:.2f}; {skills})")
        case "curriculum.proposal":
            # v3 carries the skill's learning progress; older proposals have none to show
            progress = f" [{first['progress']}]" if first.get("progress") else ""
            return f"[{when}] {first['proposer']}: I propose \"{first['task']}\" — {first['rationale']}{progress}"
        case "curriculum.decision":
            actor = (f" with {first['policy_id']}@{first['policy_version']}" if first.get("policy_id") else "") + (
                f" (the expert on {', '.join(first['expert_skills'])})" if first.get("expert_skills") and
                first.get("policy_id") != "scripted_expert" else "")
            return (f"[{when}] curriculum: run {first['episodes']} episodes of \"{first['task']}\" "
                    f"as {' → '.join(first['skill_sequence'])}{actor}"
                    + (f" (steps: {'; '.join(first['steps'])})" if first.get("steps") else ""))
        case "curriculum.missing_skill":
            closest = (f" (closest: {first['best_skill']}, similarity {first['similarity']:.2f})"
                       if first["best_skill"] and first["similarity"] is not None else "")
            return f"[{when}] curriculum: no skill in the library does \"{first['step']}\"{closest}"
        case "skill.added":
            if len(rows) == 1:
                return f"[{when}] library: new skill {first['skill_id']} v{first['version']}: \"{first['caption']}\""
            return f"[{when}] library: {len(rows)} skills: " + ", ".join(f"{r['skill_id']} v{r['version']}" for r in rows)
        case "learner.metrics":
            shown = ", ".join(f"{r['name']}={r['value']:.4g}" for r in rows[:4])
            more = f" (+{len(rows) - 4} more)" if len(rows) > 4 else ""
            return f"[{when}] learner {first['run_id']} step {first['step']}: {shown}{more}"
        case "analysis.verdict":
            run = f" (run {first['run_id']}, {first['method']})" if first.get("run_id") else ""
            if len(rows) == 1:
                return f"[{when}] analyst: {first['skill_id']} is {first['verdict']} — {first['rationale']}{run}"
            return f"[{when}] analyst: " + ", ".join(f"{r['skill_id']} is {r['verdict']}" for r in rows) + run
        case "skill.summary":
            shown = ", ".join(f"{r['skill_id']} {r['successes']}/{r['episodes']} ({r['trend']})" for r in rows[:4])
            more = f" (+{len(rows) - 4} more)" if len(rows) > 4 else ""
            return f"[{when}] summaries of {first['experiment_id']}: {shown}{more}"
        case "relabel.completed":
            return (f"[{when}] relabel {_short(first['relabel_id'])}: {first['rows']} reward rows over {first['episodes']} "
                    f"episodes ({len(first['functions'])} function versions) into dataset {first['dataset']}")
        case "vlm.call":
            outcome = f"error: {first['error']}" if first["reply"] is None else first["reply"]
            return (f"[{when}] {first['backend']}/{first['model']} ({first['stage']}, {first['latency_s']:.1f}s): "
                    f"{_clip(outcome)}")
        case "run.stage":
            what = {"done": "done", "failed": f"failed (attempt {first['attempt']})", "stopped": "stopped the run"}
            return (f"[{when}] run {first['experiment_id']}: iteration {first['iteration'] + 1} {first['stage']} "
                    f"{what.get(first['status'], first['status'])} — {_clip(first['detail'])}")
    return f"[{when}] {batch.type} v{batch.version}: {len(rows)} rows"


def describe_dead_letter(message: Message) -> str:
    return (f"[{_clock(int(message.header('dlq.time_ms') or message.timestamp_ms))}] "
            f"{message.header('dlq.reason')} from {message.header('dlq.source.topic')}"
            f"/{message.header('dlq.source.partition')}@{message.header('dlq.source.offset')} "
            f"(type {message.header('robolake.type') or '?'} v{message.header('robolake.version') or '?'}, "
            f"{len(message.value)} bytes, consumer {message.header('dlq.consumer') or '-'}): "
            f"{message.header('dlq.detail')}")
