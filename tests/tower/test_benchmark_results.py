"""The watchtower figures docs/tower.md shows are those ``benchmarks/tower.py`` measured and committed."""

from __future__ import annotations

import json

from benchmarks.tower import DOCS, DOCS_MARKERS, RESULTS, docs_block


def test_the_tower_page_shows_the_committed_benchmark_results() -> None:
    result = json.loads(RESULTS.read_text())
    text = DOCS.read_text()
    shown = text[text.index(DOCS_MARKERS[0]) + len(DOCS_MARKERS[0]) : text.index(DOCS_MARKERS[1])]
    assert shown == docs_block(result), "run `python -m benchmarks.tower` (it rewrites the page) or fix the page"
    assert result["channels"] == 10_000 and result["breaches"]["closes_in_one_block"] == 100
