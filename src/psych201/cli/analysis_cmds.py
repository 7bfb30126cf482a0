"""``psych201 models``, ``compare``, ``report`` and ``figures``: parse arguments, call the analyses.

Exit codes: 0 success, 2 bad input (unreadable table, unknown model, mismatched study sets).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from psych201.cli.analysis_opts import (
    RegistryOpt,
    _choice,
    _registry,
    console,
    err_console,
    strict_json,
)
from psych201.cli.compare_cmds import compare
from psych201.cli.console import fail
from psych201.cli.report_cmds import figures, report

__all__ = ["compare", "console", "err_console", "figures", "models", "register",
           "report"]


# -- models ---------------------------------------------------------------------------------------
def models(
    registry: RegistryOpt = None,
    family: Annotated[str | None, typer.Option(help="Only this family (e.g. Qwen3).")] = None,
    post_training: Annotated[
        str | None, typer.Option("--type", help="Only this post-training type (base, instruct, "
                                 "reasoning, vision, code, math, human).")] = None,
    local: Annotated[bool, typer.Option("--local", help="Only models psych201 can load "
                                        "offline.")] = False,
    output_format: Annotated[str, typer.Option("--format", help="table | csv | json.")] = "table",
) -> None:
    """List the model registry: family, size, post-training and paired base of each checkpoint."""
    import pandas as pd

    reg = _registry(registry)
    frame = reg.to_frame()
    if family is not None:
        frame = frame[frame["family"].str.lower() == family.lower()]
    if post_training is not None:
        kinds = sorted(set(frame["post_training"].dropna().astype(str)))
        if post_training not in kinds:  # an empty table with exit 0 would look like an answer
            raise fail(f"--type must be one of {', '.join(kinds)} (got {post_training!r})")
        frame = frame[frame["post_training"] == post_training]
    if local:
        frame = frame[frame["local"]]
    fmt = _choice("format", output_format, ("table", "csv", "json"))
    if fmt == "csv":
        typer.echo(frame.to_csv(index=False), nl=False)
        return
    if fmt == "json":
        typer.echo(strict_json(frame))
        return
    table = Table(title=f"psych201 model registry ({len(frame)} of {len(reg)} models)")
    for column in ("id", "family", "params (B)", "type", "paired base", "flags"):
        table.add_column(column, justify="right" if column == "params (B)" else "left")
    for _, row in frame.iterrows():
        flags = ", ".join(f for f, on in (("paper", row["paper"]), ("local", row["local"])) if on)
        size = "" if pd.isna(row["params_b"]) else f"{row['params_b']:g}"
        kind = row["type"] if row["line"] == "main" else f"{row['type']} ({row['line']})"
        base = "" if pd.isna(row["base"]) else str(row["base"])
        table.add_row(str(row["id"]), str(row["family"]), size, str(kind), base, flags)
    console.print(table)



def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("models")(models)
    app.command("compare")(compare)
    app.command("report")(report)
    app.command("figures")(figures)

