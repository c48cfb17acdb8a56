"""The dashboard's one page: inline CSS and a small script that polls the JSON endpoints (no
external JS, no network beyond the dashboard itself). Kept as a string so it ships with the code."""

PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>robolake dashboard</title>
<link rel="icon" href="data:,">
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #222; }
header { background: #24323f; color: #fff; padding: .6em 1em; display: flex; gap: 1em; align-items: center; }
header h1 { font-size: 1.1em; margin: 0; } header select { font-size: 1em; }
#status { margin-left: auto; font-size: 12px; opacity: .8; }
main { display: grid; grid-template-columns: minmax(0, 1.2fr) minmax(0, 1fr); gap: 1em; padding: 1em; }
section { background: #fafafa; border: 1px solid #e3e3e3; border-radius: 4px; padding: .6em .8em; }
h2 { font-size: 1em; margin: 0 0 .4em; }
#timeline { list-style: none; margin: 0; padding: 0; max-height: 78vh; overflow-y: auto; font-size: 13px; }
#timeline li { padding: 2px 0; border-bottom: 1px solid #eee; }
#timeline .type { display: inline-block; min-width: 13em; color: #667; font-size: 11px; }
#timeline li.new { background: #fff6c8; }
table { border-collapse: collapse; font-size: 12px; width: 100%; }
th, td { border-bottom: 1px solid #e5e5e5; padding: 2px 5px; text-align: left; } td { overflow-wrap: anywhere; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.bar { position: relative; height: 10px; background: #eee; width: 120px; }
.bar span { position: absolute; top: 0; bottom: 0; background: #9cc3e6; }
.bar i { position: absolute; top: -2px; bottom: -2px; width: 2px; background: #1f5f99; }
.videos { display: flex; flex-wrap: wrap; gap: 6px; } .videos figure { margin: 0; width: 160px; font-size: 11px; }
.videos video { width: 160px; height: 160px; background: #000; display: block; }
.muted { color: #888; font-size: 12px; } svg { background: #fff; border: 1px solid #eee; margin: 2px; }
</style></head>
<body>
<header><h1>robolake</h1><label>experiment <select id="experiment"></select></label>
<span id="status">connecting…</span></header>
<main>
<section><h2>The conversation <span class="muted" id="count"></span></h2><ol id="timeline"></ol></section>
<div>
<section><h2>Learned policy: evaluated success per iteration (95% interval)</h2>
<div id="learned" class="muted">–</div><div id="success"></div></section>
<section><h2>Expert collection: the scripted expert's success (95% interval)</h2>
<div id="expert" class="muted">–</div></section>
<section><h2>Learning curves</h2><div id="learning" class="muted">–</div></section>
<section><h2>Videos <span class="muted">(per task, its latest episodes with camera frames: a run's evaluations)</span>
</h2><div id="videos" class="videos muted">–</div></section>
</div>
</main>
<script>
"use strict";
const state = { experiment: null, cursor: "", count: 0, videos: null };
const $ = (id) => document.getElementById(id);
const ENTITIES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ENTITIES[c]);
const pct = (x) => x == null ? "–" : Math.round(100 * x) + "%";

async function get(path, params) {
  const query = new URLSearchParams(params || {}).toString();
  const response = await fetch(path + (query ? "?" + query : ""), { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

async function experiments() {
  const body = await get("/api/experiments");
  if (!body.lake) { $("status").textContent = body.message; return; }
  const select = $("experiment"), wanted = new URLSearchParams(location.search).get("experiment");
  const ids = body.experiments.map((e) => e.experiment_id);
  if (ids.join() !== Array.from(select.options).map((o) => o.value).join()) {
    select.innerHTML = ids.map((id) => `<option>${esc(id)}</option>`).join("");
  }
  if (!state.experiment && ids.length) choose(ids.includes(wanted) ? wanted : ids[0]);
  select.value = state.experiment || "";
}

function choose(experiment) {
  state.experiment = experiment; state.cursor = ""; state.count = 0; state.videos = null;
  $("timeline").innerHTML = "";
  ticks = 0;  // the next poll (within a second) loads everything of the new experiment
}

async function timeline() {
  if (!state.experiment) return;
  const experiment = state.experiment;
  const body = await get("/api/timeline", { experiment, cursor: state.cursor });
  if (experiment !== state.experiment || !body.lake) return;
  state.cursor = body.cursor;
  const list = $("timeline"), atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 20;
  for (const old of list.querySelectorAll("li.new")) old.classList.remove("new");
  for (const event of body.events) {
    const item = document.createElement("li");
    item.className = state.count ? "new" : "";
    item.dataset.type = event.type; item.dataset.key = event.key; item.dataset.ids = event.ids.join(" ");
    item.title = event.refs.map((r) => r.kind + " " + r.id).join(", ");
    item.innerHTML = `<span class="type">${esc(event.type)}</span>${esc(event.line)}`;
    list.appendChild(item);
  }
  state.count += body.events.length;
  while (list.children.length > 2000) list.removeChild(list.firstChild);
  if (body.events.length && atBottom) list.scrollTop = list.scrollHeight;
  $("count").textContent = `(${state.count} events)`;
}

function bar(s) {
  if (!s.attempts) return "";
  return `<div class="bar" title="${pct(s.ci_low)}–${pct(s.ci_high)}"><span style="left:${100 * s.ci_low}%;` +
         `width:${100 * (s.ci_high - s.ci_low)}%"></span><i style="left:${100 * s.rate}%"></i></div>`;
}

function skillTable(rows, introduced, learned) {
  // one row per skill and policy version; learned and expert rows never share a table
  if (!rows.length) return learned ? "no evaluation of the learned policy yet" : "no expert episodes";
  return "<table><tr><th>skill</th><th>introduced</th>" + (learned ? "<th>iteration</th>" : "") +
    "<th>policy</th><th>successes</th><th>rate</th><th>95% interval</th><th></th>" +
    (learned ? "<th>verdict</th>" : "") + "</tr>" + rows.map((s) => `<tr><td>${esc(s.skill_id)}</td>` +
    `<td class="n">${introduced[s.skill_id] ?? "–"}</td>` +
    (learned ? `<td class="n">${s.iteration ?? "–"}</td>` : "") +
    `<td>${esc(s.policy)}</td><td class="n">${s.successes}/${s.attempts}</td><td class="n">${pct(s.rate)}</td>` +
    `<td class="n">${pct(s.ci_low)}–${pct(s.ci_high)}</td><td>${bar(s)}</td>` +
    (learned ? `<td>${esc(s.verdict || "")}</td>` : "") + "</tr>").join("") + "</table>";
}

async function skills() {
  const body = await get("/api/skills", { experiment: state.experiment });
  if (!body.lake) return;
  const overall = body.overall ? `<p>run as a whole: ${esc(body.overall.verdict)}</p>` : "";
  $("learned").innerHTML = skillTable(body.learned, body.introduced, true) + overall;
  $("expert").innerHTML = skillTable(body.expert, body.introduced, false);
  const bySkill = {};
  for (const s of body.learned) if (s.iteration != null) (bySkill[s.skill_id] ??= []).push(s);
  $("success").innerHTML = Object.entries(bySkill).map(([skill, points]) =>
    chart(skill, [{ name: skill, points: points.map((p) => [p.iteration, p.rate, p.ci_low, p.ci_high]) }], [0, 1],
          "iteration", "evaluated success")).join("");
}

function chart(title, series, yRange, xLabel, yLabel) {
  // series: [{name, points: [[x, y, low, high]]}]; an inline SVG with both axes labelled, no library
  const W = 260, H = 140, L = 40, B = 28, T = 18, all = series.flatMap((s) => s.points);
  if (!all.length) return "";
  const xs = all.map((p) => p[0]), x0 = Math.min(...xs), x1 = Math.max(...xs) || 1;
  const ys = all.flatMap((p) => [p[1], p[2] ?? p[1], p[3] ?? p[1]]);
  const y0 = yRange ? yRange[0] : Math.min(...ys), y1 = yRange ? yRange[1] : Math.max(...ys);
  const sx = (x) => L + (W - L - 8) * (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0));
  const sy = (y) => H - B - (H - B - T) * (y1 === y0 ? 0.5 : (y - y0) / (y1 - y0));
  const colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];
  const tick = (x, y, text, anchor) => `<text x="${x}" y="${y}" font-size="8" text-anchor="${anchor}">${text}</text>`;
  let svg = `<svg width="${W}" height="${H}"><text x="4" y="11" font-size="10">${esc(title)}</text>` +
            tick(L - 3, sy(y0) + 3, +y0.toPrecision(3), "end") + tick(L - 3, sy(y1) + 3, +y1.toPrecision(3), "end") +
            tick(sx(x0), H - B + 10, +x0.toPrecision(4), "middle") +
            (x1 !== x0 ? tick(sx(x1), H - B + 10, +x1.toPrecision(4), "middle") : "") +
            `<text class="x-label" x="${L + (W - L) / 2}" y="${H - 4}" font-size="9" text-anchor="middle">` +
            `${esc(xLabel)}</text><text class="y-label" font-size="9" text-anchor="middle" ` +
            `transform="translate(10 ${T + (H - B - T) / 2}) rotate(-90)">${esc(yLabel)}</text>` +
            `<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#999"/>` +
            `<line x1="${L}" x2="${W - 8}" y1="${H - B}" y2="${H - B}" stroke="#999"/>`;
  series.forEach((s, i) => {
    const c = colours[i % colours.length];
    for (const p of s.points) {
      if (p[2] != null) svg += `<line x1="${sx(p[0])}" x2="${sx(p[0])}" y1="${sy(p[2])}" y2="${sy(p[3])}" ` +
                               `stroke="${c}" opacity=".5"/>`;
    }
    svg += `<polyline fill="none" stroke="${c}" points="${s.points.map((p) => sx(p[0]) + "," + sy(p[1])).join(" ")}"/>`;
    if (s.points.length < 40) {
      for (const p of s.points) svg += `<circle cx="${sx(p[0])}" cy="${sy(p[1])}" r="2.5" fill="${c}"/>`;
    }
  });
  return svg + "</svg>";
}

async function curves() {
  const body = await get("/api/curves", { experiment: state.experiment });
  if (!body.lake) return;
  const learning = Object.entries(body.learning).slice(0, 12).map(([name, runs]) =>
    chart(name, Object.entries(runs).map(([run, points]) => ({ name: run, points })), null, "learner step",
          name.split("/")[0]));
  $("learning").innerHTML = learning.join("") || "no learner metrics yet";
}

async function videos() {
  const body = await get("/api/videos", { experiment: state.experiment });
  if (!body.lake) return;
  const shown = body.episodes.map((e) => e.episode_id).join();
  if (shown === state.videos) return;  // the same episodes: leave the playing videos alone
  state.videos = shown;
  $("videos").innerHTML = body.episodes.map((e) => `<figure><video controls muted loop preload="metadata" ` +
    `title="${esc(e.task)}" src="/api/video?episode=${encodeURIComponent(e.episode_id)}"></video><figcaption>` +
    `${esc(e.skill)} — ${e.success ? "succeeded" : "failed"} <span class="muted">${esc(e.episode_id.slice(0, 8))}, ` +
    `${esc(e.policy)}</span></figcaption></figure>`).join("") || "no episode with camera frames yet";
}

let ticks = 0;
async function refresh() {
  try {
    if (ticks % 10 === 0 || !state.experiment) await experiments();
    await timeline();
    if (ticks % 3 === 0 && state.experiment) await Promise.all([skills(), curves()]);
    if (ticks % 10 === 0 && state.experiment) await videos();
    $("status").textContent = "live · " + new Date().toLocaleTimeString();
  } catch (error) {
    $("status").textContent = "cannot reach the dashboard: " + error.message;
  }
}
$("experiment").addEventListener("change", (e) => choose(e.target.value));
async function loop() { await refresh(); ticks += 1; setTimeout(loop, 1000); }
loop();
</script>
</body></html>
"""
