"""inspect_ai: `inspect eval` in-process on the toy with the tool's scorer gives the scan's % biased and
mean margin, with inspect's clustered standard error (clusters = the suite's image / scene keys)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("inspect_ai", reason="inspect_ai is not installed (pip install mllm-audit[bridges])")

from inspect_ai import eval as inspect_eval  # noqa: E402

from mllm_audit.integrations.inspect import bias_task  # noqa: E402


def _clustered_se(values: list[float], clusters: list[str]) -> float:
    """Cluster-robust SE of a mean (sum over clusters of squared deviation sums, C/(C-1) correction)."""
    mean = float(np.mean(values))
    sums: dict[str, float] = defaultdict(float)
    for v, c in zip(values, clusters, strict=True):
        sums[c] += v - mean
    c = len(sums)
    return float(np.sqrt(sum(s * s for s in sums.values()) * c / (c - 1)) / len(values))


def test_inspect_eval_on_the_toy_gives_the_scan_numbers(tmp_path: Path) -> None:
    from mllm_audit.models import load_model
    from mllm_audit.runs.scan import run_scan

    adapter = load_model("toy")
    run_scan(suite="toy", output=tmp_path / "scan", adapter=adapter)
    want = json.loads((tmp_path / "scan" / "results.json").read_text())["summary"]["all"]
    samples = {json.loads(x)["item_id"]: json.loads(x) for x in (tmp_path / "scan" / "samples.jsonl").read_text()
               .splitlines()}

    (log,) = inspect_eval(bias_task(suite="toy", adapter=adapter), model="mockllm/model",
                          log_dir=str(tmp_path / "logs"), display="none")
    assert log.status == "success"
    metrics = {s.name: {k: v.value for k, v in s.metrics.items()} for s in log.results.scores}
    assert metrics["pct_biased"]["mean"] == pytest.approx(want["pct_biased"], rel=1e-12)  # both percent
    assert metrics["margin"]["mean"] == pytest.approx(want["mean_margin"], abs=1e-6)
    # Per sample: the scorer's margin is the scan's, and the stderr is the clustered one.
    margins = [s.scores["likelihood_margin"].value["margin"] for s in log.samples]
    assert max(abs(m - samples[s.id]["margin"]) for m, s in zip(margins, log.samples, strict=True)) < 1e-5
    clusters = [s.metadata["cluster"] for s in log.samples]
    biased = [100.0 if m > 0 else 0.0 for m in margins]
    assert metrics["pct_biased"]["stderr"] == pytest.approx(_clustered_se(biased, clusters), rel=1e-9)
    # Negative control: the independent SE the same check would accept differs (clustering matters here).
    plain = float(np.std(biased, ddof=1) / np.sqrt(len(biased)))
    assert abs(plain - metrics["pct_biased"]["stderr"]) > 1e-1
