"""`python -m bench.run --smoke` end to end: real servers under wrk and h2load, and a report
that opens with issue 15's targets, serve's own figures measured and the peers' named as
missing (the test venv holds no peer)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.sections import section
from tests.conftest import ROOT

pytestmark = pytest.mark.system


def target_rows(report: str) -> dict[str, list[str]]:
    """The Issue targets table: "target | measured on" -> [figure, met]."""
    body = section(report, "Issue targets")
    assert body is not None
    rows = {}
    for line in body.splitlines()[2:]:
        target, cells, figure, met = (cell.strip() for cell in line.strip("|").split("|"))
        rows[f"{target} | {cells}"] = [figure, met]
    return rows


def test_a_smoke_run_measures_serve_and_states_every_target(tmp_path: Path) -> None:
    out, raw = tmp_path / "RESULTS.md", tmp_path / "results.json"
    args = ["--smoke", "--out", str(out), "--chart", str(tmp_path / "r.png"), "--json", str(raw)]
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = out.read_text()
    assert report.index("## Issue targets") < report.index("## serve vs uvicorn")
    rows = target_rows(report)
    assert len(rows) == 16
    for kind in ("text", "JSON"):
        figure, met = rows[
            f"access log on ({kind}) costs <= 15% of serve's log-off req/s | plaintext w1 c64"
        ]
        assert figure.endswith("%") and " req/s); per CPU-s " in figure
        assert met in ("yes", "**no**")
    h2_figure, _ = rows["HTTP/2 h2c >= 2x serve's 4,000 req/s of issue 15 | h2 w1 c64"]
    assert h2_figure.endswith(" req/s; an absolute figure: machine-bound)")
    logged = rows["serve with its default log >= 2.5x uvicorn with its | plaintext w1 c64"]
    assert logged == ["no figure of uvicorn-log", "not measured"]
    shares = rows["each worker's share of requests within 40%-60% | plaintext w2 c64"]
    assert shares[1] == "not measured"
    samples = json.loads(raw.read_text())["samples"]
    measured = {(s["server"], s["scenario"]) for s in samples}
    assert measured == {
        ("serve", "plaintext"),
        ("serve-log", "plaintext"),
        ("serve-log-json", "plaintext"),
        ("floor", "plaintext"),
        ("serve", "fastapi"),
        ("serve", "h2"),
    }
    assert all(s["rps"] > 0 and s["errors"] == 0 for s in samples)
    assert "- Method: 1 interleaved run per cell; " in report
    # The servers' logs (access lines by the hundred MiB in a full run) go with a clean run.
    logs = re.search(r"server logs in (\S+) ", done.stderr)
    assert logs is not None
    assert not Path(logs.group(1)).exists()
