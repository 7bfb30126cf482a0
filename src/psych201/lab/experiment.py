"""The worked post-training experiment: train adapters, score them beside their base, compare.

A plan (``studies/posttraining_lab.yaml``) names a base model, a few studies, the adapters to
train (recipe, step budget, seed) and how to evaluate them. :func:`run_experiment`

1. trains each adapter (or reuses one already in the output folder with the same card settings);
2. writes the registry fragment that pairs every adapter with its base;
3. scores the base and every adapter with the regular pipeline on the *test* split of the same
   studies (the human recipe never saw those participants) and on freshly simulated
   participants (:mod:`psych201.simulate`, a seed no recipe trains on);
4. compares each adapter with the base on the very same responses
   (:func:`psych201.analysis.effects.compare_pair`: mean paired NLL difference with a
   participant bootstrap, the paper's d, a sign test over studies) and writes ``results.json``
   and ``summary.md``.

Every step is resumable: a finished adapter or score run is not redone.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from psych201.lab.adapter import CARD_FILE, AdapterCard, is_adapter_dir, read_card
from psych201.lab.adapter_plan import AdapterPlan, same_training
from psych201.lab.posttrain import DataSpec, posttrain
from psych201.lab.registry_entry import write_registry_fragment
from psych201.lab.settings import RECIPES, LabError, TrainSettings
from psych201.lab.train import StepLog
from psych201.yaml_files import read_yaml_model

PLAN_FORMAT = "psych201-posttraining-lab/1"
CONDITION = "raw"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SimulatedPlan(_Strict):
    kinds: list[str] = Field(default_factory=lambda: ["bandit", "risky"])
    n_participants: int = Field(default=20, ge=1)
    n_trials: int | None = Field(default=None, ge=1)
    seed: int = Field(default=7, ge=0)


class EvaluationPlan(_Strict):
    """How adapters are scored and compared (participants per study, numerics, bootstrap)."""

    limit: int | None = Field(default=15, ge=1)
    dtype: str = "float32"
    device: str = "cpu"
    simulated: SimulatedPlan | None = Field(default_factory=SimulatedPlan)
    n_boot: int = Field(default=2000, ge=100)
    ci: float = Field(default=0.95, gt=0, lt=1)
    seed: int = Field(default=0, ge=0)
    #: HF engine settings for every model (``--engine-args``), e.g. ``{temperatures: "on"}`` to
    #: fill ``nll_temperature`` for the calibration control on a CPU.
    engine_args: dict[str, str | int | float | bool] = Field(default_factory=dict)


class ExperimentPlan(_Strict):
    format: Literal["psych201-posttraining-lab/1"]
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    description: str = ""
    base: str = "gemma-3-270m"
    data: str
    studies: list[str] = Field(min_length=1)
    split_seed: int = Field(default=0, ge=0)
    adapters: list[AdapterPlan] = Field(min_length=1)
    evaluation: EvaluationPlan = Field(default_factory=EvaluationPlan)

    def train_settings(self, adapter: AdapterPlan) -> TrainSettings:
        return adapter.train_settings()

    def data_spec(self, adapter: AdapterPlan, data: Path) -> DataSpec:
        # use_dataset: a preference adapter trains on the plan's studies instead of simulations
        return adapter.data_spec(data, tuple(self.studies), self.split_seed)


def read_plan(path: str | Path) -> ExperimentPlan:
    """The plan in YAML file ``path``; errors name the file and the offending field."""
    p = Path(path)
    plan = read_yaml_model(p, ExperimentPlan, LabError, kind="plan",
                           expected=f"format: {PLAN_FORMAT}, ...",
                           invalid="invalid plan ({reasons})")
    for adapter in plan.adapters:
        if adapter.recipe not in RECIPES:  # pragma: no cover - Literal already checks
            raise LabError(f"{p}: adapter {adapter.name}: unknown recipe {adapter.recipe}")
        try:
            plan.train_settings(adapter)  # settings errors surface before any work starts
        except LabError as exc:
            raise LabError(f"{p}: adapter {adapter.name}: {exc}") from exc
    names = [a.name for a in plan.adapters]
    if len(set(names)) != len(names):
        raise LabError(f"{p}: adapter names must be unique, got {names}")
    return plan


def resolve_data(plan: ExperimentPlan, plan_path: Path) -> Path:
    """``plan.data``, relative paths taken from the plan file's folder."""
    data = Path(plan.data).expanduser()
    return data if data.is_absolute() else (plan_path.parent / data).resolve()


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExperimentResult:
    out_dir: Path
    results: dict[str, Any]
    summary_path: Path


def _train_adapters(
    plan: ExperimentPlan, data: Path, out: Path, *, retrain: bool,
    note: Callable[[str], None], progress: Callable[[str, StepLog], None] | None,
) -> list[tuple[Path, AdapterCard]]:
    adapters: list[tuple[Path, AdapterCard]] = []
    for adapter in plan.adapters:
        settings = plan.train_settings(adapter)
        spec = plan.data_spec(adapter, data)
        folder = out / "adapters" / adapter.name
        if not retrain and is_adapter_dir(folder):
            card = read_card(folder)
            if same_training(card, plan.base, settings, spec):
                note(f"{adapter.name}: reusing the adapter in {folder}")
                adapters.append((folder, card))
                continue
            note(f"{adapter.name}: settings changed since {folder / CARD_FILE}; retraining")
        # A retrained adapter invalidates every score made with the old one.
        shutil.rmtree(out / "scores" / "psych201-test" / adapter.name, ignore_errors=True)
        shutil.rmtree(out / "scores" / "simulated" / adapter.name, ignore_errors=True)
        step_note = (lambda log, n=adapter.name: progress(n, log)) if progress else None
        result = posttrain(plan.base, settings, spec, out_dir=folder, name=adapter.name,
                           progress=step_note, note=note)
        adapters.append((result.path, result.card))
    return adapters


def _simulate(plan: SimulatedPlan, out: Path) -> Path:
    from psych201.simulate import simulate_study, write_study

    folder = out / "simulated-data"
    for kind in plan.kinds:
        records = simulate_study(kind, n_participants=plan.n_participants,
                                 n_trials=plan.n_trials, seed=plan.seed)
        write_study(records, folder / f"simulated_{kind}.jsonl")
    return folder


def _score_all(
    models: list[tuple[str, str]], sets: list[tuple[str, Path, str, tuple[str, ...], int | None]],
    plan: ExperimentPlan, out: Path, note: Callable[[str], None],
) -> dict[str, dict[str, Path]]:
    """Score every model on every evaluation set; {set: {model label: run dir}}."""
    from psych201.lab.scoring import scoring_setup
    from psych201.pipeline import ScoreConfig, score_run

    ev = plan.evaluation
    runs: dict[str, dict[str, Path]] = {name: {} for name, *_ in sets}
    for label, model in models:
        setup = None
        for set_name, data, split, studies, limit in sets:
            config = ScoreConfig(
                data=data, out=out / "scores" / set_name / label, model=model,
                split=split,  # type: ignore[arg-type]
                studies=studies, limit=limit, seed=plan.split_seed, device=ev.device,
                dtype=ev.dtype, condition=CONDITION,
            )
            if setup is None:
                note(f"loading {label} for scoring")
                setup = scoring_setup(config, ev.engine_args)
            t0 = time.perf_counter()
            summary = score_run(config, setup=setup)
            note(f"scored {label} on {set_name}: {summary.sessions} sessions, "
                 f"{summary.responses} responses ({time.perf_counter() - t0:.0f} s)")
            runs[set_name][label] = config.out
    return runs


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _compare(frame: pd.DataFrame, base_id: str, adapter_ids: list[str], plan: ExperimentPlan,
             oracle: dict[tuple[str, int, int], float] | None) -> dict[str, Any]:
    from psych201.analysis.effects import compare_pair

    ev = plan.evaluation
    per_model = (
        frame.groupby(["model", "study"], observed=True)["nll"].agg(["mean", "size"]).reset_index()
    )
    models: dict[str, Any] = {}
    for model, group in per_model.groupby("model", observed=True):
        models[str(model)] = {
            "mean_nll": float(group["mean"].mean()),  # studies weighted equally (the paper's)
            "per_study": {str(r.study): float(r.mean) for r in group.itertuples()},
        }
    if oracle is not None:
        base_rows = frame[frame["model"] == base_id]
        values = [oracle.get((str(s), int(ln), int(i))) for s, ln, i in
                  zip(base_rows["study"], base_rows["line"], base_rows["response_index"],
                      strict=True)]
        if values and all(v is not None for v in values):
            ora = base_rows.assign(nll=[float(v) for v in values if v is not None])
            by_study = ora.groupby("study", observed=True)["nll"].mean()
            models["oracle (generating model)"] = {
                "mean_nll": float(by_study.mean()),
                "per_study": {str(k): float(v) for k, v in by_study.items()},
            }
    comparisons: dict[str, Any] = {}
    for adapter in adapter_ids:
        cmp = compare_pair(frame, adapter, base_id, condition=CONDITION, n_boot=ev.n_boot,
                           ci=ev.ci, seed=ev.seed, levels="participants", mixed_level=None)
        comparisons[adapter] = {
            "effects": [
                {k: (_finite(v) if isinstance(v, float) else v) for k, v in e.to_dict().items()}
                for e in cmp.effects
            ],
            "per_study": [
                {k: (_finite(v) if isinstance(v, float) else v) for k, v in row.items()}
                for row in cmp.per_study.to_dict(orient="records")
            ],
        }
    n_participants = int(
        frame[frame["model"] == base_id][["study", "experiment", "participant", "line"]]
        .drop_duplicates().shape[0]
    )
    return {
        "n_participants": n_participants,
        "n_responses": int((frame["model"] == base_id).sum()),
        "models": models,
        "comparisons": comparisons,
    }


def run_experiment(
    plan: ExperimentPlan,
    *,
    data: Path,
    out_dir: Path,
    retrain: bool = False,
    note: Callable[[str], None] | None = None,
    progress: Callable[[str, StepLog], None] | None = None,
) -> ExperimentResult:
    """Run ``plan`` into ``out_dir`` (see the module notes); resumable."""
    from psych201.results.io import read_responses
    from psych201.scoring.oracle import oracle_nll

    say = note or (lambda _msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    adapters = _train_adapters(plan, data, out, retrain=retrain, note=say, progress=progress)
    fragment = write_registry_fragment([card for _, card in adapters], out / "registry.yaml")
    say(f"registry fragment: {fragment}")
    trained = time.perf_counter()

    ev = plan.evaluation
    sets: list[tuple[str, Path, str, tuple[str, ...], int | None]] = [
        ("psych201-test", data, "test", tuple(plan.studies), ev.limit)
    ]
    sim_dir = _simulate(ev.simulated, out) if ev.simulated is not None else None
    if sim_dir is not None:
        sets.append(("simulated", sim_dir, "all", (), None))
    models = [("base", plan.base)] + [(card.name, str(path)) for path, card in adapters]
    runs = _score_all(models, sets, plan, out, say)
    scored = time.perf_counter()

    evaluations: dict[str, Any] = {}
    base_id = ""
    for set_name, by_label in runs.items():
        frame = pd.concat([read_responses(d) for d in by_label.values()], ignore_index=True)
        base_id = str(read_responses(by_label["base"])["model"].iloc[0])
        oracle = oracle_nll(sim_dir) if (set_name == "simulated" and sim_dir) else None
        evaluations[set_name] = _compare(frame, base_id, [c.name for _, c in adapters], plan,
                                         oracle)
    results = {
        "plan": plan.model_dump(),
        "data": str(data),
        "base_model_id": base_id,
        "adapters": {card.name: _card_summary(path, card) for path, card in adapters},
        "evaluations": evaluations,
        "timings_s": {
            "training_and_loading": round(trained - started, 1),
            "scoring": round(scored - trained, 1),
            "total": round(time.perf_counter() - started, 1),
        },
        "registry_fragment": str(fragment),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    summary = out / "summary.md"
    summary.write_text(summary_markdown(results), encoding="utf-8")
    return ExperimentResult(out, results, summary)


def _card_summary(path: Path, card: AdapterCard) -> dict[str, Any]:
    losses = list(card.losses)
    k = max(1, min(10, len(losses) // 4))
    return {
        "path": str(path),
        "recipe": card.recipe,
        "post_training": card.post_training,
        "steps": card.steps,
        "seed": card.seed,
        "settings": card.settings,
        "train_wall_s": card.train_wall_s,
        "n_trainable": card.n_trainable,
        "n_sequences": card.n_sequences,
        "n_target_tokens": card.n_target_tokens,
        "loss_first": sum(losses[:k]) / k,
        "loss_last": sum(losses[-k:]) / k,
        "loss_window": k,
        "data": card.data,
    }


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def summary_markdown(results: dict[str, Any]) -> str:
    """Markdown tables of an experiment's ``results.json``."""
    lines = [f"# Post-training lab: {results['plan']['name']}", ""]
    lines += ["## Adapters", "",
              "| adapter | recipe | steps × batch | max tokens | train time (s) "
              "| loss first→last |",
              "|---|---|---|---|---|---|"]
    for name, a in results["adapters"].items():
        s = a["settings"]
        lines.append(
            f"| {name} | {a['recipe']} | {a['steps']} × {s['batch_size']} | {s['max_tokens']} | "
            f"{a['train_wall_s']:.0f} | {a['loss_first']:.3f} → {a['loss_last']:.3f} |"
        )
    for set_name, ev in results["evaluations"].items():
        lines += ["", f"## {set_name}: {ev['n_participants']} participants, "
                  f"{ev['n_responses']} responses", ""]
        models = ev["models"]
        studies = sorted({s for m in models.values() for s in m["per_study"]})
        lines.append("| model | mean NLL (studies equal) | " + " | ".join(studies) + " |")
        lines.append("|---|---|" + "---|" * len(studies))
        for name, m in models.items():
            cells = " | ".join(_fmt(m["per_study"].get(s)) for s in studies)
            lines.append(f"| {name} | {_fmt(m['mean_nll'])} | {cells} |")
        for adapter, cmp in ev["comparisons"].items():
            lines += ["", f"### {adapter} − base (positive = adapter fits humans worse)", "",
                      "| effect | estimate | 95% CI | p | n studies / participants / responses |",
                      "|---|---|---|---|---|"]
            for e in cmp["effects"]:
                lines.append(
                    f"| {e['name']} | {_fmt(e['estimate'])} | [{_fmt(e['ci_low'])}, "
                    f"{_fmt(e['ci_high'])}] | {_fmt(e['p_value'], 4)} | {e['n_studies']} / "
                    f"{e['n_participants']} / {e['n_responses']} |"
                )
            lines += ["", "| study | mean NLL adapter | mean NLL base | mean diff | 95% CI | d |",
                      "|---|---|---|---|---|---|"]
            for row in cmp["per_study"]:
                lines.append(
                    f"| {row['study']} | {_fmt(row['mean_post'])} | {_fmt(row['mean_base'])} | "
                    f"{_fmt(row['mean_diff'])} | [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"
                    f" | {_fmt(row['d_sample'])} |"
                )
    t = results["timings_s"]
    lines += ["", f"Timings: training (incl. loading) {t['training_and_loading']:.0f} s, "
              f"scoring {t['scoring']:.0f} s, total {t['total']:.0f} s.", ""]
    return "\n".join(lines)
