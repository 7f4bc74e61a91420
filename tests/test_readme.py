"""The README shows a real report: the block ``sample_traces/readme_report.py`` writes from the
bundled TP=2 sample must equal what ``tracekit analyze`` prints today."""

from __future__ import annotations

import importlib.util

from tests.conftest import REPO


def test_readme_report_is_current() -> None:
    spec = importlib.util.spec_from_file_location(
        "readme_report", REPO / "sample_traces" / "readme_report.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    readme = module.README.read_text()
    fresh = module.block(module.report())
    assert module.current(readme) == fresh, (
        "README.md's report is stale: run .venv/bin/python sample_traces/readme_report.py"
    )
    assert "Where the time went in the profiled window" in fresh


def test_readme_links_resolve() -> None:
    text = (REPO / "README.md").read_text()
    for doc in (
        "capture",
        "analyze",
        "compare-sweep-plan",
        "perfetto-nsys",
        "performance",
        "architecture",
    ):
        assert f"(docs/{doc}.md)" in text
        assert (REPO / "docs" / f"{doc}.md").is_file()
