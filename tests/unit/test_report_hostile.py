"""The Markdown report with hostile event text: HTML, links and images in a model's words or a
task stay text when any Markdown viewer renders the report."""

from __future__ import annotations

import re

from robolake.cli import main
from tests.unit.test_report import EXPERIMENT, emit, lake, sink  # noqa: F401  (the fixture)

PAYLOADS = ["<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "<iframe src=//evil.example>",
            "[click](javascript:alert(3))", "![x](//evil.example/x.png)", "<a href='//evil.example'>a</a>",
            "`</code><script>alert(4)</script>`", "\\<b>bold</b>", "line\n<svg onload=alert(5)>",
            "&lt;script&gt;alert(6)&lt;/script&gt;", "<http://evil.example>", "a | <details open ontoggle=alert(7)>"]


def test_html_and_links_in_event_text_stay_text_in_the_markdown_report(lake, tmp_path):  # noqa: F811
    from markdown_it import MarkdownIt

    from schemas import events, topics

    settings, _ = lake
    hostile = " ".join(PAYLOADS)
    emit(settings, topics.CURRICULUM, events.CURRICULUM_PROPOSAL_V2, [{
        "proposal_id": "proposal-hostile", "experiment_id": EXPERIMENT, "proposer": "scripted/rules",
        "task": hostile, "rationale": hostile, "call_id": None}])
    emit(settings, topics.CURRICULUM, events.CURRICULUM_MISSING_SKILL, [{
        "missing_id": "missing-hostile", "experiment_id": EXPERIMENT, "proposal_id": "proposal-hostile",
        "step": hostile, "best_skill": None, "similarity": None}])
    sink(settings)
    assert main(["report", "--experiment", EXPERIMENT, "-o", str(tmp_path / "out")]) == 0
    markdown = (tmp_path / "out" / f"{EXPERIMENT}.md").read_text()
    html = MarkdownIt("commonmark").enable("table").render(markdown)
    tags = set(re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", html))
    assert tags <= {"h1", "h2", "h3", "p", "ul", "li", "code", "table", "thead", "tbody", "tr", "th", "td", "img",
                    "a"}, tags
    assert all(src.startswith(f"{EXPERIMENT}.") and src.endswith(".png") for src in re.findall(r'src="([^"]*)"', html))
    # the only links are the report's own, to its videos beside it
    assert all(href.startswith(f"{EXPERIMENT}.episode-") and href.endswith(".mp4")
               for href in re.findall(r'href="([^"]*)"', html))
    assert "alert(1)" in html and "javascript:alert(3)" in html, "the text is shown, not dropped"
