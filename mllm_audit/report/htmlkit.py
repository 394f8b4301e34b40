"""The pieces every HTML section is built from: escaped text, numbers, tables and inline PNG plots."""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any, TypeGuard


def _esc(x: Any) -> str:
    from mllm_audit.util.text import xml_safe

    return html.escape(xml_safe(x), quote=True)


def _num(x: Any, fmt: str = ".3f") -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return _esc(x)
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    return format(x, fmt) if isinstance(x, float) else str(x)


def _pct(x: Any) -> str:
    return _num(float(x), ".1f") if _is_num(x) else _esc(x)  # a percent metric, stored in percent


def _is_num(x: Any) -> TypeGuard[float]:  # a finite number, bools excluded
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def _png(fig: Any) -> str:
    """Render a Figure to an <img> tag with the PNG inline as base64."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _mpl(text: Any) -> str:
    """Data text for matplotlib: a '$' would otherwise start mathtext and can fail to render."""
    return str(text).replace("$", r"\$")


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _table(header: list[str] | None, rows: list[list[str]], numeric_from: int = 1) -> str:
    head = "<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join(
        "<tr>" + "".join(
            f'<td class="num">{c}</td>' if i >= numeric_from else f"<td>{c}</td>" for i, c in enumerate(r)
        ) + "</tr>"
        for r in rows
    )
    return f"<table>{head}{body}</table>"
