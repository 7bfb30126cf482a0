"""One self-contained HTML page: leaderboard, effects, figures, per-study tables, manifests.

Images are embedded as ``data:`` URIs and a Content-Security-Policy forbids every other source,
so the page opens offline, from an e-mail attachment or a CI artefact, and cannot phone home.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from psych201.analysis.effects import Effect, effects_frame
from psych201.analysis.paper_mode import (
    DEFAULT_DIFFERS,
    PaperTables,
    figure_note,
    paper_summary,
)
from psych201.analysis.registry import ModelRegistry
from psych201.analysis.summary import Summary
from psych201.analysis.tables import Results
from psych201.report.figures import caption, png_bytes, render_figures
from psych201.report.readable import PSEUDO_R2_TEXT, READABLE_TEXT, readable_numbers
from psych201.strict_json import dumps as strict_json

Formatter = Callable[[Any], str]

_TEMPLATE_DIR = Path(__file__).parent
_WEIGHTING_TEXT = {
    "study": "responses pooled within each study and studies weighted equally (the paper's "
             "weighting)",
    "participant": "each participant's mean weighted equally",
    "response": "every response weighted equally",
}


def _num(digits: int) -> Formatter:
    def fmt(value: Any) -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "–"
        if isinstance(value, (int,)) and not isinstance(value, bool):
            return f"{value:,}"
        try:
            return f"{float(value):.{digits}f}"
        except (TypeError, ValueError):
            return str(value)
    return fmt


def _int(value: Any) -> str:
    try:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "–"
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def _p(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(v):
        return "–"
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def probability_text(value: Any) -> str:
    """A probability: three decimals, or three significant digits below 0.001."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(v):
        return "–"
    return f"{v:.3f}" if v >= 0.001 or v == 0 else f"{v:.2e}"


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def html_table(frame: pd.DataFrame, columns: Mapping[str, tuple[str, Formatter]] | None = None,
               *, index: str | None = None, optional: Sequence[str] = ()) -> Markup:
    """An escaped HTML table; ``columns`` maps column → (header, formatter), in display order.

    Columns named in ``optional`` are left out where the frame lacks them (analyses that only
    some runs support); any other missing column is an error.
    """
    if frame is None or frame.empty:
        return Markup("<p><i>no rows</i></p>")
    data = frame.reset_index() if index is not None else frame
    if columns is not None:
        columns = {c: spec for c, spec in columns.items()
                   if c in data.columns or c not in optional}
    if columns is None:
        columns = {
            c: (str(c), _num(3) if pd.api.types.is_float_dtype(data[c]) else _text)
            for c in data.columns
        }
    head = "".join(
        f'<th class="{"text" if fmt is _text else ""}">{escape(h)}</th>'
        for h, fmt in columns.values()
    )
    body = []
    for _, row in data.iterrows():
        cells = "".join(
            f'<td class="{"text" if fmt is _text else ""}">{escape(fmt(row[c]))}</td>'
            for c, (_, fmt) in columns.items()
        )
        body.append(f"<tr>{cells}</tr>")
    return Markup(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def pair_d_text(row: pd.Series) -> str:
    """A pair's d; where it is undefined (one shared study) that study's d in parentheses."""
    d, single = row.get("d"), row.get("d_one_study")
    if (d is None or not math.isfinite(float(d))) and single is not None \
            and math.isfinite(float(single)):
        return f"({float(single):.3f})"
    return _num(3)(d)


def _ci(frame: pd.DataFrame, low: str = "ci_low", high: str = "ci_high",
        digits: int = 3) -> pd.Series:
    fmt = _num(digits)
    return frame.apply(lambda r: f"[{fmt(r[low])}, {fmt(r[high])}]", axis=1)


def _effects_table(effects: Sequence[Effect]) -> Markup:
    frame = effects_frame(effects)
    frame["interval"] = _ci(frame, digits=3)
    return html_table(frame, {
        "name": ("effect", _text), "estimate": ("estimate", _num(3)),
        "interval": (f"{int(effects[0].ci_level * 100)}% interval", _text),
        "p_value": ("p", _p), "units": ("units", _text), "n_studies": ("studies", _int),
        "n_participants": ("participants", _int), "n_responses": ("responses", _int),
        "method": ("method", _text),
    })


def _png_size(data: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def build_report(summary: Summary, results: Results, registry: ModelRegistry, *,
                 title: str = "psych201 report", dpi: int = 110,
                 generated: str | None = None, paper: PaperTables | None = None) -> str:
    """The report page as a string (see the module docstring).

    ``paper``: draw the figures in paper mode and add a section with every paper-mode table.
    """
    is_base = {m: info.is_base for m in results.models if (info := registry.get(m)) is not None}
    is_base.update({info.id: info.is_base for m in results.models
                    if (info := registry.get(m)) is not None})
    drawn = summary if paper is None else paper_summary(summary, results.responses, registry,
                                                        paper)
    figures = []
    for name, fig in render_figures(drawn, is_base).items():
        data = png_bytes(fig, dpi=dpi)
        width, height = _png_size(data)
        figures.append({"name": name, "caption": caption(name, summary), "width": width,
                        "height": height, "data": base64.b64encode(data).decode("ascii"),
                        "paper_note": figure_note(name, paper_mode=paper is not None)})
    board = summary.leaderboard.copy()
    board["interval"] = _ci(board)
    leaderboard_html = html_table(board, {
        "rank": ("#", _int), "display": ("model", _text), "family": ("family", _text),
        "type": ("type", _text), "params_b": ("params (B)", _num(2)),
        "score": ("NLL", _num(3)),
        "interval": (f"{int(summary.options.ci * 100)}% interval", _text),
        "n_studies": ("studies", _int), "n_participants": ("participants", _int),
        "n_responses": ("responses", _int),
    })
    pairs_html = type_html = sign_html = None
    details = []
    if not summary.pairs.empty:
        pairs = summary.pairs.copy()
        pairs["interval"] = _ci(pairs)
        pairs["d_shown"] = pairs.apply(pair_d_text, axis=1)
        pairs_html = html_table(pairs, {
            "post": ("post-trained", _text), "base": ("base", _text), "type": ("type", _text),
            "d_shown": ("pair d", str), "interval": ("interval", _text), "p_value": ("p", _p),
            "n_studies": ("studies", _int), "n_participants": ("participants", _int),
        })
        types = summary.type_d.copy()
        types["interval"] = _ci(types)
        type_html = html_table(types, {
            "type": ("type", _text), "d": ("type d", _num(3)), "interval": ("interval", _text),
            "p_value": ("p", _p), "n_pairs": ("pairs", _int), "n_studies": ("studies", _int)})
        if summary.pair_sign_test is not None:
            sign_html = _effects_table([summary.pair_sign_test])
        for detail in summary.pair_details:
            per = detail.per_study.copy()
            per["interval"] = _ci(per)
            details.append({
                "title": f"{detail.post} vs {detail.base}",
                "effects": _effects_table(detail.effects),
                "per_study": html_table(per, {
                    "study": ("study", _text), "n_participants": ("participants", _int),
                    "n_responses": ("responses", _int), "mean_post": ("NLL post", _num(3)),
                    "mean_base": ("NLL base", _num(3)), "mean_diff": ("difference", _num(3)),
                    "interval": ("interval", _text), "d_sample": ("d (sample SD)", _num(3)),
                    "d_population": ("d (population SD)", _num(3)),
                }),
            })
    extra = [_readable_section(summary, results), *_extra_sections(summary)]
    if paper is not None:
        extra += _paper_sections(paper)
    sources = pd.DataFrame([
        {"path": s.path, "rows": s.n_rows, "models": ", ".join(s.models),
         "conditions": ", ".join(s.conditions),
         "config": (s.manifest or {}).get("config_hash", ""),
         "status": (s.manifest or {}).get("status", "no manifest")}
        for s in results.sources
    ])
    manifests = [
        {"path": s.path, "json": strict_json(s.manifest, sort_keys=True)}
        for s in results.sources if s.manifest is not None
    ]
    sections = [("leaderboard", "Leaderboard")]
    if pairs_html is not None:
        sections.append(("post-training", "Post-training"))
    sections += [("figures", "Figures"), ("studies", "Per study")]
    sections += [(s["anchor"], s["title"]) for s in extra]
    sections.append(("runs", "Runs"))
    env = Environment(loader=FileSystemLoader(_TEMPLATE_DIR), autoescape=select_autoescape())
    template = env.get_template("template.html")
    study_means = summary.study_means.copy()
    study_means.columns = [str(c) for c in study_means.columns]
    return template.render(
        title=title,
        version=_version(),
        generated=generated or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        condition=summary.condition,
        n_models=len(summary.leaderboard),
        n_studies=len(summary.studies),
        options=asdict(summary.options),
        weighting_text=_WEIGHTING_TEXT[summary.options.weighting],
        sections=sections,
        notes=summary.notes,
        leaderboard=leaderboard_html,
        pairs=pairs_html,
        type_d=type_html,
        pair_sign=sign_html,
        details=details,
        figures=figures,
        study_means=html_table(study_means, index="study"),
        extra_sections=extra,
        sources=html_table(sources),
        manifests=manifests,
    )


#: Accuracy columns present only where some run scored offered options.
_OFFERED_COLUMNS = ("accuracy_offered", "offered_interval", "chance_offered",
                    "n_offered_responses")


def _accuracy_table(points: pd.DataFrame) -> pd.DataFrame:
    table = points.assign(interval=_ci(points))
    if "accuracy_offered" in points.columns:
        table["offered_interval"] = _ci(points, "offered_ci_low", "offered_ci_high")
    return table


def _persona_tables(summary: Summary) -> Markup:
    assert summary.persona is not None
    per_model = summary.persona.per_model.assign(interval=_ci(summary.persona.per_model))
    if "benefit" in per_model.columns:
        per_model["benefit_interval"] = _ci(per_model, "benefit_ci_low", "benefit_ci_high")
    overall = html_table(per_model, {
        "model": ("model", _text), "comparison": ("comparison", _text),
        "d": ("mean d", _num(3)), "interval": ("t interval", _text),
        "n_studies": ("studies", _int), "sign_p": ("sign test p", _p),
        "benefit": ("benefit (nats)", _num(3)), "benefit_interval": ("interval", _text),
        "n_participants": ("participants", _int)},
        optional=("benefit", "benefit_interval", "n_participants"))
    paired = summary.persona.paired
    if paired.empty:
        return overall
    by_study = html_table(paired.assign(interval=_ci(paired)), {
        "model": ("model", _text), "comparison": ("comparison", _text),
        "study": ("study", _text), "n_participants": ("participants", _int),
        "n_responses": ("responses", _int), "mean_reference": ("NLL without", _num(3)),
        "mean_persona": ("NLL with", _num(3)), "benefit": ("benefit (nats)", _num(3)),
        "interval": ("participant bootstrap", _text)})
    return Markup(overall + Markup("<p>Per study, paired:</p>") + by_study)


def _readable_section(summary: Summary, results: Results) -> dict[str, Any]:
    numbers = readable_numbers(results.responses, condition=summary.condition,
                               studies=summary.studies)
    return {"anchor": "readable", "title": "Readable numbers", "text": READABLE_TEXT,
            "table": html_table(numbers, {
                "model": ("model", _text), "nll_response": ("NLL per response", _num(3)),
                "p_response": ("P(response), geometric mean", probability_text),
                "nll_token": ("NLL per token", _num(3)),
                "p_token": ("P(token), geometric mean", probability_text),
                "n_studies": ("studies", _int), "dominant": ("dominating studies", _text),
                "nll_response_without": ("NLL per response without them", _num(3))})}


def _extra_sections(summary: Summary) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if summary.accuracy_points is not None:
        out.append({"anchor": "accuracy", "title": "Accuracy",
                    "text": "Top-1 hit rate (argmax over the vocabulary equals the human's "
                            "response) and, where the transcript states the options offered, "
                            "the hit rate among those options (with guessing's chance rate); "
                            "mean per study then over studies, condition "
                            f"{summary.accuracy_points['condition'].iloc[0]}.",
                    "table": html_table(_accuracy_table(summary.accuracy_points), {
                        "display": ("model", _text), "accuracy": ("accuracy", _num(3)),
                        "interval": ("interval", _text), "n_studies": ("studies", _int),
                        "n_responses": ("responses", _int),
                        "accuracy_offered": ("among offered options", _num(3)),
                        "offered_interval": ("interval", _text),
                        "chance_offered": ("chance", _num(3)),
                        "n_offered_responses": ("responses", _int)},
                        optional=_OFFERED_COLUMNS)})
    if summary.chat_template is not None:
        out.append({"anchor": "chat-template", "title": "Chat-template control", "text": "",
                    "table": html_table(summary.chat_template, {
                        "display": ("model", _text), "no_template": ("NLL raw", _num(3)),
                        "template": ("NLL chat template", _num(3)),
                        "n_studies": ("studies", _int)})})
    if summary.persona is not None:
        out.append({"anchor": "persona", "title": "Persona induction",
                    "text": "Benefit d = (mean without persona − mean with persona) / pooled SD "
                            "per study (population SD), averaged over studies; positive = the "
                            "persona helps. Benefit in nats: the same difference per response, "
                            "paired on the same responses of the same participants, with a "
                            "bootstrap interval (pooled: studies and participants; per study: "
                            "participants).",
                    "table": _persona_tables(summary)})
    if summary.pseudo_r2 is not None:
        out.append({"anchor": "baselines", "title": "Random baseline (pseudo-R²)",
                    "text": f"{PSEUDO_R2_TEXT} Computed as 1 − Σ NLL / Σ log k over "
                            "responses with k known options; mean over studies and pooled.",
                    "table": html_table(summary.pseudo_r2, {
                        "model": ("model", _text), "pseudo_r2": ("pseudo-R² (study mean)",
                                                                 _num(3)),
                        "pseudo_r2_pooled": ("pooled", _num(3)),
                        "n_studies": ("studies", _int), "n_responses": ("responses", _int)})})
    if summary.population is not None:
        out.append({"anchor": "population", "title": "Population baseline",
                    "text": "Mean NLL of the model and of the training participants' choice "
                            "frequencies at the same trial (stimulus text, option letters "
                            "normalised; a likelihood over the offered options), on the "
                            "responses it covers. Covered (discrete-choice studies whose "
                            "trials recur): "
                            f"{', '.join(sorted(set(summary.population['study']))) or 'none'}.",
                    "table": html_table(summary.population, {
                        "model": ("model", _text), "study": ("study", _text),
                        "n_responses": ("responses", _int), "nll": ("NLL model", _num(3)),
                        "nll_population": ("NLL population", _num(3))})})
    if summary.generation is not None and not summary.generation.mean_d.empty:
        gen = summary.generation.mean_d
        out.append({"anchor": "generations", "title": "Generations",
                    "text": "Mean pair d of each generation's standard post-trained models "
                            "(paper Fig. 3a), with coupled bootstrap intervals.",
                    "table": html_table(gen.assign(interval=_ci(gen)), {
                        "family": ("generation", _text), "d": ("mean pair d", _num(3)),
                        "interval": ("interval", _text), "p_value": ("p", _p),
                        "n_pairs": ("pairs", _int), "n_studies": ("studies", _int)})})
    if summary.domains is not None:
        out.append({"anchor": "domains", "title": "Domains",
                    "text": "Mean per-study d within each domain of categories.csv (population "
                            "SD, as the authors), per pair; last row: mean over pairs.",
                    "table": html_table(summary.domains.rename_axis("pair"), index="pair")})
    if not summary.scaling_fits.empty:
        out.append({"anchor": "scaling", "title": "Size scaling",
                    "text": "Least-squares slope of NLL on log10(parameters): change per "
                            "tenfold size.",
                    "table": html_table(summary.scaling_fits, {
                        "family": ("family", _text), "line": ("line", _text),
                        "slope_per_decade": ("Δ NLL per 10×", _num(3)),
                        "n_sizes": ("sizes", _int)})})
    return out


def _paper_sections(paper: PaperTables) -> list[dict[str, Any]]:
    """One section per paper-mode table, with the line on how psych201's default differs."""
    out: list[dict[str, Any]] = []
    for name, table in paper.tables.items():
        text = DEFAULT_DIFFERS.get(name, "")
        out.append({"anchor": f"paper-{name.replace('_', '-')}",
                    "title": f"Paper mode: {name}", "text": text, "table": html_table(table)})
    return out


def write_report(path: str | Path, summary: Summary, results: Results,
                 registry: ModelRegistry, **kw: Any) -> Path:
    """Render and write the page atomically (a half-written report never replaces a good one)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = build_report(summary, results, registry, **kw)
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write leaves nothing behind
        raise
    return out


def _version() -> str:
    try:
        return metadata.version("psych201")
    except metadata.PackageNotFoundError:
        return "unknown"
