"""Every experiment runner (experiments/*/run.py) at its --quick size: it runs on real node processes,
checks each job's output against a sequential count (the face job: against the composed photos' ground
truth, embedded and on 3 nodes), and writes its raw results and its figure."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("experiment, figure", [("scaling", "scaling.png"), ("uneven", "uneven.png"),
                                                ("failures", "failures.png"), ("faces", "faces.png")])
def test_a_quick_run_checks_its_outputs_and_draws_its_figure(experiment: str, figure: str, tmp_path: Path) -> None:
    ran = subprocess.run([sys.executable, str(ROOT / "experiments" / experiment / "run.py"), "--quick", "--out",
                          str(tmp_path), "--data", str(tmp_path / "data")], capture_output=True, text=True,
                         timeout=300)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert rows and all(row.get("output_checked", row.get("same_as_reference")) == "True" for row in rows)
    png = (tmp_path / figure).read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    if experiment == "faces":  # examples/face_detection.py: embedded and on a 3-node cluster
        runs = {row["run"]: row for row in rows}
        for run in ("embedded (dynamr run)", "3 node(s)"):
            assert float(runs[run]["target_faces_found"]) >= 0.9 and float(runs[run]["face_recall"]) >= 0.9
    if experiment == "failures":  # the seeds' point, from the task records: a lost map node costs no map
        by_level = {row["level"]: row for row in rows}
        assert by_level["map node during reduce"]["maps_rerun"] == "0"
        assert int(by_level["map node during reduce"]["maps_rerun_if_node_local"]) > 0
        assert by_level["map node during reduce"]["killed"] not in ("-", "coordinator")
