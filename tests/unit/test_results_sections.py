"""bench/sections.py: the chaos and soak runs own their sections of bench/RESULTS.md."""

from __future__ import annotations

from bench.sections import carry, replace_section, section

BENCH = "# Benchmark results\n\nintro\n\n## serve vs uvicorn\n\n| a |\n\n## Servers\n\nlist\n"


def test_a_missing_section_is_appended_after_the_rest() -> None:
    text = replace_section(BENCH, "Soak", "- figures\n")
    assert text == BENCH + "\n## Soak\n\n- figures\n"


def test_a_present_section_is_replaced_in_place_and_nothing_else_moves() -> None:
    text = replace_section(BENCH, "Soak", "old")
    text = replace_section(text, "Chaos", "chaos figures")
    text = replace_section(text, "Soak", "new")
    assert section(text, "Soak") == "new"
    assert section(text, "Chaos") == "chaos figures"
    assert text.index("## Soak") < text.index("## Chaos")
    assert text.startswith(BENCH)
    assert "old" not in text


def test_a_new_benchmark_report_keeps_the_chaos_and_soak_sections() -> None:
    old = replace_section(replace_section(BENCH, "Chaos", "c"), "Soak", "s")
    regenerated = BENCH.replace("intro", "a new run")
    kept = carry(old, regenerated)
    assert "a new run" in kept
    assert (section(kept, "Chaos"), section(kept, "Soak")) == ("c", "s")
    assert carry(BENCH, regenerated) == regenerated
