"""The Grafana dashboard's panels, drawn from a real Prometheus' range queries into one PNG.

    draw_dashboard(prometheus, start, end, Path("docs/load-run.png"), title="...")

Every panel of deploy/grafana/vreyesam.json, with every query as the dashboard has it (Grafana's variables
filled in as a Grafana would: `$namespace` with its default, `$__rate_interval` with a window of four scrape
intervals), over [start, end]: a person sees rate by outcome, error ratio, latency per stage, queue depth,
rejections and ready replicas over the run, without a Grafana. Needs matplotlib (`.[report]`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "vreyesam.json"
UNIT_SCALE = {"s": (1000.0, "ms"), "bytes": (1.0 / 2**20, "MiB"), "percentunit": (100.0, "%")}


class RangeQueries(Protocol):
    interval_s: float

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[dict[str, Any]]: ...


def panel_queries(dashboard: dict[str, Any], rate_window: str, namespace: str = "vreyesam") -> list[dict[str, Any]]:
    """Each panel's title, unit and (query, legend) pairs, Grafana's variables filled in."""
    panels = []
    for panel in dashboard["panels"]:
        targets = [
            (target["expr"].replace("$namespace", namespace).replace("$__rate_interval", rate_window),
             target.get("legendFormat", ""))
            for target in panel["targets"]
        ]  # fmt: skip
        panels.append(
            {"title": panel["title"], "unit": panel["fieldConfig"]["defaults"].get("unit", ""), "targets": targets}
        )
    return panels


def _legend(template: str, labels: dict[str, str]) -> str:
    text = template
    for name, value in labels.items():
        text = text.replace("{{" + name + "}}", value)
    return text or ",".join(f"{k}={v}" for k, v in labels.items() if k != "__name__") or "value"


def draw_dashboard(prometheus: RangeQueries, start: float, end: float, out: Path, title: str = "") -> Path:
    """Draw every panel over [start, end] (unix seconds) into `out` (PNG); returns `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = max(prometheus.interval_s, (end - start) / 300)
    rate_window = f"{max(4, math.ceil(4 * prometheus.interval_s))}s"
    panels = panel_queries(json.loads(DASHBOARD.read_text()), rate_window)
    columns = 2
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(14, 3.2 * rows), squeeze=False)
    for axis, panel in zip(axes.flat, panels, strict=False):
        scale, unit = UNIT_SCALE.get(panel["unit"], (1.0, panel["unit"] if panel["unit"] not in ("short", "") else ""))
        for expr, legend in panel["targets"]:
            for series in prometheus.query_range(expr, start, end, step):
                points = [(float(t) - start, float(v) * scale) for t, v in series["values"] if v not in ("NaN", "+Inf")]
                if points:
                    times, values = zip(*points, strict=True)
                    axis.plot(times, values, label=_legend(legend, series["metric"]), linewidth=1.4)
        axis.set_title(panel["title"], fontsize=10)
        axis.set_xlabel("seconds into the run", fontsize=8)
        if unit:
            axis.set_ylabel(unit, fontsize=8)
        axis.tick_params(labelsize=8)
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=7, loc="upper left")
    for axis in list(axes.flat)[len(panels) :]:
        axis.set_visible(False)
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90)
    plt.close(figure)
    return out
