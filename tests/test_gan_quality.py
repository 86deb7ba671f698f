"""benchmarks/gan_quality.py --equal-time: the summary over seeds and the SAGAN / DCGAN figure."""

import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from gan_quality import summarize


def run(model: str, seed: int, point: str, ratio: float, stopped: bool | None) -> dict:
    return {"dataset": "fashion_mnist", "model": model, "seed": seed, "point": point, "fid_ratio": ratio,
            "g_updates": 100 * seed, "early_stopped": stopped}


def test_summary_over_seeds() -> None:
    rows = [run("dcgan", 1, "3 min", 10.0, None), run("dcgan", 2, "3 min", 20.0, None),
            run("sagan", 1, "3 min", 5.0, None), run("sagan", 2, "3 min", 30.0, None),
            run("dcgan", 1, "end", 4.0, True), run("dcgan", 2, "end", 6.0, True),
            run("sagan", 1, "end", 2.0, True), run("sagan", 2, "end", 4.0, False)]
    summary, ratio, converged = summarize(rows, ["fashion_mnist"], ["dcgan", "sagan"], "3 min")
    by = {(s["point"], s["model"]): s for s in summary}
    assert by["3 min", "sagan"]["fid_ratio_mean"] == 17.5 and by["3 min", "sagan"]["fid_ratio_std"] == pytest.approx(17.678, abs=1e-3)
    assert by["end", "dcgan"]["g_updates_mean"] == 150 and by["end", "sagan"]["early_stopped"] == "1/2"
    # of the means: 17.5 / 15; seed by seed: 5/10 and 30/20
    assert ratio["fashion_mnist/3 min"] == {"of_means": 1.167, "paired_mean": 1.0, "paired_std": 0.707}
    assert ratio["fashion_mnist/end"]["of_means"] == 0.6
    # one SAGAN run was still improving: no verdict at convergence
    assert converged == {"fashion_mnist/dcgan": True, "fashion_mnist/sagan": False}
