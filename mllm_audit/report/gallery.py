"""What a reader never saw in the numbers: example items (the picture, what was asked, the two answers,
the margin) for the most and least biased groups of a scan, and a contact sheet of the images gen-scan
drew, each labelled with what the classifier read. Thumbnails are small PNGs embedded inline."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from mllm_audit.report.htmlkit import _esc, _num, _pct

THUMB = 112
PER_GROUP = 3
PER_PROMPT = 8
MAX_PROMPTS = 12


def thumbnail(path: Path, size: int = THUMB) -> str:
    """An <img> of the picture shrunk to `size` pixels (longest side); a note when it cannot be read.
    Read through the suite's own loader (its size and format limits, EXIF orientation, decoded small), so
    the thumbnail is the picture the model saw."""
    from PIL import Image

    from mllm_audit.errors import AuditError
    from mllm_audit.suites.items import load_image

    try:
        im = load_image(Path(path), max_pixels=4 * size * size)
        scale = size / max(im.size)
        if scale > 1:  # a tiny picture (the toy's) is enlarged without smoothing, so it stays legible
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.NEAREST)
        im.thumbnail((size, size))
        buf = io.BytesIO()
        im.save(buf, format="PNG")
    except (AuditError, OSError, ValueError):
        return '<span class="note">(image not readable)</span>'
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{_esc(path.name)}" style="width:auto;margin:0" src="data:image/png;base64,{data}">'


def _suite_items(res: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Items by id from the suite the run names (its source path), or ({}, why not)."""
    from mllm_audit.errors import AuditError
    from mllm_audit.suites.items import load_suite

    source = (res.get("suite") or {}).get("source")
    if not source:
        return {}, "the run does not name its suite's source"
    try:
        suite = load_suite(str(source))
    except AuditError as e:
        return {}, f"its suite could not be read ({e})"
    return {it.id: (it, suite) for it in suite.items}, ""


def scan_gallery(res: dict[str, Any], samples: list[dict[str, Any]], group_by: str | None) -> str:
    """Example items of the most and the least biased group: the strongest margins of each."""
    from mllm_audit.errors import AuditError
    from mllm_audit.metrics.bias import ALL, group_label

    summary = {k: v for k, v in (res.get("summary") or {}).items() if k != ALL and isinstance(v, dict)}
    if not summary or not samples:
        return ""
    items, why = _suite_items(res)
    head = "<h2>Example items</h2>"
    if not items:
        return head + f'<p class="note">No examples: {_esc(why)}.</p>'
    ranked = sorted(summary, key=lambda g: float(summary[g].get("pct_biased") or 0.0))
    picks = [("most biased", ranked[-1], True)] + ([("least biased", ranked[0], False)] if len(ranked) > 1 else [])
    html = [head, "<p>The items behind the numbers: for the most and the least biased group, the items with the "
                  "strongest margins. <i>More stereotypical</i> is y_more, the answer the suite marks as the "
                  "stereotype; margin = log p(y_more) - log p(y_less) in nats, above 0 when the stereotype "
                  "wins.</p>"]
    for title, group, top in picks:
        mine = [s for s in samples if group_label(s, group_by) == group and s.get("item_id") in items]
        mine.sort(key=lambda s: float(s.get("margin", 0.0)), reverse=top)
        rows = []
        for s in mine[:PER_GROUP]:
            item, suite = items[s["item_id"]]
            try:
                img = thumbnail(suite.image_path(item.image)) if getattr(item, "image", None) else ""
            except AuditError:  # an image path the suite no longer resolves
                img = '<span class="note">(image not found)</span>'
            rows.append(f"<tr><td>{img}</td><td>{_esc(item.id)}</td><td>{_esc(item.prompt)}</td>"
                        f"<td>{_esc(item.y_more)}</td><td>{_esc(item.y_less)}</td>"
                        f'<td class="num">{_num(s.get("margin"))}</td></tr>')
        pct = summary[group].get("pct_biased")
        html.append(f"<h3>{_esc(title)}: {_esc(group)} ({_pct(pct)} % biased)</h3>")
        html.append("<table><tr><th>image</th><th>item</th><th>prompt</th><th>more stereotypical (y_more)</th>"
                    "<th>less (y_less)</th><th>margin (nats)</th></tr>" + "".join(rows) + "</table>")
    return "\n".join(html)


def contact_sheet(run_dir: Path, samples: list[dict[str, Any]]) -> str:
    """gen-scan: per prompt, the first images drawn, each captioned with the classifier's labels."""
    prompts = [s for s in samples if s.get("predictions")]
    if not prompts:
        return ""
    html = ["<h2>Generated images</h2><p>Per prompt, the first images the model drew, each labelled with what "
            "the classifier read (<i>no person</i> when it found none). The counts above are over all of them.</p>"]
    for s in prompts[:MAX_PROMPTS]:
        cells = []
        for pred in s["predictions"][:PER_PROMPT]:
            label = " / ".join(str(pred.get(k)) for k in ("gender", "race") if pred.get(k)) if pred.get(
                "person", True) else "no person"
            cells.append(f'<figure style="display:inline-block;margin:.2em;text-align:center">'
                         f"{thumbnail(Path(run_dir) / str(pred.get('image')), 96)}"
                         f"<figcaption><small>{_esc(label)}</small></figcaption></figure>")
        shown = min(PER_PROMPT, len(s["predictions"]))
        html.append(f"<h3>{_esc(s.get('prompt_id'))}: {_esc(s.get('prompt'))}</h3><p class=\"note\">{shown} of "
                    f"{_esc(s.get('n_images'))} images</p><div>{''.join(cells)}</div>")
    if len(prompts) > MAX_PROMPTS:
        html.append(f'<p class="note">{len(prompts) - MAX_PROMPTS} more prompts not shown.</p>')
    return "\n".join(html)
