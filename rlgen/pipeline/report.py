"""The pipeline's report: models x metrics, champion changes and links to the MLflow runs.

One Markdown text serves as the Prefect artifact and the MLflow `report/report.md`; `report/report.html`
is the same table with each model's sample grid (or evaluation plot) inlined as a PNG.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from rlgen.family import ModelResult
from rlgen.pipeline.branches import BranchResult
from rlgen.pipeline.config import PipelineConfig
from rlgen.registry import family
from rlgen.tracking.artifacts import download, list_artifacts, log_text, temp_dir
from rlgen.tracking.runs import get_run
from rlgen.tracking.secrets import mask_secrets
from rlgen.tracking.store import run_link, tracking_uri

PICTURES = ("evaluation/samples.png", "evaluation/eval_returns.png", "plots/learning_curve.png")  # first found is shown
Row = dict[str, Any]  # one model's line of the report


def headline(result: ModelResult) -> str:
    """The family's headline metrics found in a branch's result, e.g. "fid_lenet 91.6, class_entropy 2.21"."""
    keys = family(result.family).metric_keys()[1:]
    return ", ".join(f"{key.split('/', 1)[-1]} {_fmt(result.metrics[key])}" for key in keys if key in result.metrics)


def rows(results: list[BranchResult]) -> list[Row]:
    """The report's rows, read back from each branch's result and its training run's decision tags."""
    out = []
    for r in results:
        row: Row = {"name": r.name, "family": r.family, "ok": r.ok, "minutes": r.seconds / 60, "error": r.error or ""}
        if r.ok and r.result is not None:
            run_id = r.result.run_id
            tags = get_run(run_id).data.tags
            row |= {
                "run_id": run_id,
                "link": run_link(run_id),
                "model": r.result.model,
                "alias": tags.get("rlgen.decision", ""),
                "reason": tags.get("rlgen.decision_reason", ""),
                "primary": f"{tags.get('rlgen.primary_metric', '')} {tags.get('rlgen.primary_value', '')}",
                "champion_before": tags.get("rlgen.champion_value", "") or "-",
                "metrics": headline(r.result),
            }
        out.append(row)
    return out


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown(cfg: PipelineConfig, parent_id: str, table: list[Row]) -> str:
    """The report as Markdown."""
    lines = [
        f"# rlgen pipeline ({cfg.profile} profile)",
        "",
        f"Pipeline run [{parent_id}]({run_link(parent_id)}) in `{mask_secrets(tracking_uri())}`; seed {cfg.seed}, "
        f"device {cfg.device}, {cfg.concurrency} branches at a time.",
        "",
        "| model | status | minutes | registered | alias | primary metric | champion before | metrics | MLflow run |",
        "| --- | --- | ---: | --- | --- | --- | --- | --- | --- |",
    ]
    for row in table:
        if not row["ok"]:
            lines.append(f"| {row['name']} | **failed** | {row['minutes']:.1f} | | | | | {row['error'][:200]} | |")
            continue
        alias = f"**{row['alias']}**" if row["alias"] == "champion" else row["alias"]
        lines.append(
            f"| {row['name']} | ok | {row['minutes']:.1f} | {row.get('model', '')} | {alias} | "
            f"{row.get('primary', '')} | "
            f"{row.get('champion_before', '')} | {row.get('metrics', '')} | "
            f"[{row.get('run_id', '')[:8]}]({row.get('link', '')}) |"
        )
    changes = [f"- {r['model']}: {r['reason']}" for r in table if r["ok"] and r.get("alias") == "champion"]
    lines += ["", "## Champion changes", "", *(changes or ["- none: every new version is a challenger"])]
    return "\n".join(lines) + "\n"


def html_report(text: str, table: list[Row]) -> str:
    """The Markdown table as HTML, with each model's picture inlined."""
    cells = []
    for row in table:
        picture = _picture(row["run_id"]) if row.get("run_id") else ""
        link = f'<a href="{html.escape(row.get("link", ""))}">{html.escape(row.get("run_id", "")[:8])}</a>'
        texts = [row["name"], "ok" if row["ok"] else "failed", str(row.get("model", "")), row.get("alias", "")]
        texts += [row.get("primary", ""), row.get("metrics", "") or row["error"]]
        cells.append(
            "<tr>" + "".join(f"<td>{html.escape(t)}</td>" for t in texts) + f"<td>{link}</td><td>{picture}</td></tr>"
        )
    title = html.escape(text.splitlines()[0].lstrip("# "))
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>'
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px;vertical-align:top}</style>"
        "</head><body>"
        f"<h1>{title}</h1><pre>{html.escape(text)}</pre><table><tr><th>model</th><th>status</th><th>registered</th>"
        "<th>alias</th><th>primary metric</th><th>metrics</th><th>run</th><th>samples</th></tr>"
        + "".join(cells)
        + "</table></body></html>"
    )


def _picture(run_id: str) -> str:
    """The first of PICTURES the run has, as an inline <img>, or nothing."""
    for artifact in PICTURES:
        if artifact in list_artifacts(run_id, artifact.rpartition("/")[0]):
            with temp_dir() as tmp:
                data = base64.b64encode(download(run_id, artifact, Path(tmp)).read_bytes()).decode()
            return f'<img alt="{artifact}" width="240" src="data:image/png;base64,{data}">'
    return ""


def write_report(cfg: PipelineConfig, results: list[BranchResult], parent_id: str) -> str:
    """Log the report on the pipeline's MLflow run (Markdown and HTML) and return the Markdown."""
    table = rows(results)
    text = mask_secrets(markdown(cfg, parent_id, table))  # a failed branch's error may quote a URL
    log_text(parent_id, text, "report/report.md")
    log_text(parent_id, mask_secrets(html_report(text, table)), "report/report.html")
    return text
