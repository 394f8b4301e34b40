"""The console study table carries each setting's paired difference against the study's reference row,
with its cluster-bootstrap interval and p, and fits 80 columns (report/studies.py `paired_tables`)."""

from __future__ import annotations

from rich.console import Console

from mllm_audit.metrics.paired_edits import study_pairs
from mllm_audit.report.studies import paired_tables, study_table


def _render(obj: object, width: int = 80) -> str:
    con = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    con.print(obj)
    return con.export_text()


def _records() -> list[dict]:
    recs = []
    for k in (1, 16):
        for i in range(12):  # batch 16 loses reliability on items 0-5; parity after rises 0.5 everywhere
            recs.append({"item_id": f"i{i}", "editor": "ft-l", "batch": k, "cluster": f"c{i // 2}", "edited": True,
                         "reliability": 0.0 if k == 16 and i < 6 else 1.0, "parity_after": i + (0.5 if k == 16 else 0),
                         "t_locality": {"top1": 1.0, "kl": 0.0}, "m_locality": None})
    return recs


STUDY = {"study": "batch", "model": {"name": "toy"}, "suite": {"name": "toy"}, "n_items": 12,
         "table": [{"editor": "ft-l", "batch": b, "reliability": r, "parity_before": 3.5, "parity_after": p}
                   for b, r, p in ((1, 1.0, 5.5), (16, 0.5, 6.0))],
         "paired": study_pairs("batch", _records()), "paired_cluster": "image"}


def test_the_study_table_shows_the_paired_difference_interval_and_p_at_80_columns() -> None:
    text = _render(study_table(STUDY, width=80))
    assert max(len(x) for x in text.splitlines()) <= 80 and "…" not in text
    assert "minus batch 1 on the same items" in text and "clusters: image" in text
    rel = next(line for line in text.splitlines() if " rel " in line and " 16 │" in line)
    assert "-0.50" in rel and "[-0.83, -0.17]" in rel  # 6 of 12 items lost, 6 image clusters of 2
    par = next(line for line in text.splitlines() if "parity post" in line and " 16 │" in line)
    assert "+0.50" in par and "[+0.50, +0.50]" in par and "<0.001" in par  # +0.5 on every item: no spread
    loc = next(line for line in text.splitlines() if "t-loc" in line and " 16 │" in line)
    assert "+0.00" in loc and "1.000" in loc  # no difference: p = 1
    # A study run without pairs (older records) prints its table alone.
    assert paired_tables({**STUDY, "paired": []}) == []


def test_negative_control_one_column_per_metric_would_cut_at_80() -> None:
    """The wide layout (a column per metric, as the main table) with a study's nine paired metrics."""
    from mllm_audit.metrics.paired_edits import STUDY_KEYS
    from mllm_audit.report.tables import new_table

    wide = new_table("paired")
    d = STUDY["paired"][0]["diffs"]["reliability"]
    for k in ("editor", "batch", *STUDY_KEYS):
        wide.add_column(k)
    wide.add_row("ft-l", "16", *[f"{d['diff']:+.2f} [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}] p={d['p_value']:.3f}"
                                 for _ in STUDY_KEYS])
    assert "…" in _render(wide)
