"""`psych201 posttrain`: LoRA post-training recipes, the worked experiment, adapter cards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from psych201.bounds import option_range
from psych201.cli.console import fail

if TYPE_CHECKING:  # torch is imported only when a command runs
    from psych201.lab.train import StepLog

_console = Console(stderr=True, soft_wrap=True)  # log lines stay one line in files

posttrain_app = typer.Typer(
    help="Post-train a base model with LoRA (instruct, preference or human recipe), run the "
    "worked post-training experiment, inspect adapters.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``posttrain`` (with its sub-commands) to ``app``."""
    app.add_typer(posttrain_app, name="posttrain")


def _set_threads(threads: int | None) -> None:
    """On a shared CPU, fewer torch threads than cores avoids OpenMP barrier stalls (measured:
    one thread 2.4x faster than two for Gemma 3 270M on a loaded 2-core machine)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


ThreadsOpt = Annotated[
    int | None,
    typer.Option(**option_range("threads"), help="torch CPU threads (default: torch's). On a "
                 "busy machine, 1 can be faster than all cores."),
]


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


def _layers(value: str | None) -> tuple[int, ...]:
    """``"9-17"`` or ``"12,13,14"`` → layer indices."""
    if not value:
        return ()
    out: list[int] = []
    try:
        for part in _csv(value):
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r}: expected e.g. 9-17 or 0,1,2", param_hint="--layers"
                                 ) from exc
    return tuple(out)


def _show_step(log: StepLog, label: str = "") -> None:
    prefix = f"{label}: " if label else ""
    more = "".join(f"  {k} {v:.3f}" for k, v in log.extra.items())
    _console.print(
        f"{prefix}step {log.step:4d}  loss {log.loss:.4f}  lr {log.learning_rate:.2e}  "
        f"targets {log.n_targets:5d}  {log.seconds:5.1f}s{more}",
        highlight=False,
    )


def _show_labelled_step(label: str, log: StepLog) -> None:
    _show_step(log, label)


def _note(message: str) -> None:
    _console.print(message, highlight=False)


@posttrain_app.command("train", no_args_is_help=True)
def train_cmd(
    recipe: Annotated[str, typer.Argument(help="instruct | preference | human")],
    base: Annotated[str, typer.Option(help="Base model: built-in name or local folder.")] = (
        "gemma-3-270m"
    ),
    data: Annotated[
        Path | None,
        typer.Option(help="Psych-201 dataset (human: required; preference: lottery studies, "
                     "else simulated participants)."),
    ] = None,
    studies: Annotated[str | None, typer.Option(help="Comma-separated study ids.")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Optimiser steps.")] = 150,
    batch_size: Annotated[int, typer.Option(min=1, help="Sequences per step.")] = 4,
    lr: Annotated[float, typer.Option(min=0.0, help="Peak learning rate.")] = 2e-4,
    warmup: Annotated[int, typer.Option(min=0, help="Warm-up steps.")] = 10,
    max_tokens: Annotated[int, typer.Option(min=8, help="Tokens per training sequence.")] = 1024,
    rank: Annotated[int, typer.Option(min=1, help="LoRA rank r.")] = 8,
    alpha: Annotated[int, typer.Option(min=1, help="LoRA alpha.")] = 16,
    dropout: Annotated[float, typer.Option(min=0.0, max=0.99, help="LoRA dropout.")] = 0.0,
    targets: Annotated[str, typer.Option(help="Comma-separated module names to adapt.")] = (
        "q_proj,k_proj,v_proj,o_proj"
    ),
    layers: Annotated[
        str | None, typer.Option(help="Layers to adapt, e.g. 9-17 (default: all).")
    ] = None,
    dpo_beta: Annotated[float, typer.Option(min=0.0, help="DPO temperature (preference).")] = 0.1,
    seed: Annotated[int, typer.Option(**option_range("seed"),
                                      help="Seed: adapter init, data order, dialogues.")] = 0,
    split_seed: Annotated[
        int, typer.Option(**option_range("seed"), help="Seed of the train/test split.")
    ] = 0,
    max_sessions_per_study: Annotated[
        int | None, typer.Option(min=1, help="Human: at most this many sessions per study.")
    ] = None,
    n_dialogues: Annotated[int, typer.Option(min=1, help="Instruct: dialogues generated.")] = 2000,
    template: Annotated[str, typer.Option(help="Instruct: plain | chat.")] = "plain",
    n_simulated: Annotated[
        int, typer.Option(min=1, help="Preference without --data: simulated participants.")
    ] = 200,
    simulate_seed: Annotated[
        int, typer.Option(**option_range("seed"), help="Seed of simulated participants.")
    ] = 1000,
    dtype: Annotated[str, typer.Option(help="float32 | bfloat16")] = "float32",
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1 …")] = "cpu",
    name: Annotated[
        str | None, typer.Option(help="Adapter name = registry id (default: <base>-lora-<recipe>-"
                                 "s<seed>).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Adapter folder (default: the cache).")
    ] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Train one LoRA adapter and write it with its card and registry entry."""
    from psych201.lab.posttrain import DataSpec, posttrain
    from psych201.lab.settings import LabError, LoRASettings, TrainSettings

    _set_threads(threads)
    try:
        settings = TrainSettings(
            recipe=recipe,  # type: ignore[arg-type]
            steps=steps, batch_size=batch_size, learning_rate=lr, warmup_steps=warmup,
            max_tokens=max_tokens, dpo_beta=dpo_beta, seed=seed, dtype=dtype, device=device,
            lora=LoRASettings(r=rank, alpha=alpha, dropout=dropout,
                              target_modules=_csv(targets), layers=_layers(layers)),
        )
        if template not in ("plain", "chat"):
            raise LabError(f"--template must be plain or chat, got {template!r}")
        spec = DataSpec(
            data=data, studies=_csv(studies), split_seed=split_seed,
            max_sessions_per_study=max_sessions_per_study, n_dialogues=n_dialogues,
            template=template,  # type: ignore[arg-type]
            n_simulated=n_simulated, simulate_seed=simulate_seed,
        )
        result = posttrain(base, settings, spec, out_dir=out, name=name, progress=_show_step,
                           note=_note)
    except KeyboardInterrupt:
        from psych201.errors import EXIT_INTERRUPTED
        from psych201.lab.train import CHECKPOINT_EVERY

        fail(f"interrupted: the steps trained so far are kept in a checkpoint (saved every "
              f"{CHECKPOINT_EVERY} steps and at the interrupt); rerun the same command to "
              "resume")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except (LabError, ValueError, OSError) as exc:
        raise fail(str(exc)) from exc
    card = result.card
    _console.print(
        f"{card.name}: {card.steps} steps in {card.train_wall_s:.0f} s, loss "
        f"{card.losses[0]:.4f} → {card.losses[-1]:.4f}; adapter at {result.path}",
        highlight=False,
    )
    typer.echo(str(result.path))


@posttrain_app.command("experiment", no_args_is_help=True)
def experiment_cmd(
    plan: Annotated[Path, typer.Argument(help="Plan YAML, e.g. studies/posttraining_lab.yaml.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default: the cache).")
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Dataset (overrides the plan's).")] = None,
    retrain: Annotated[
        bool, typer.Option("--retrain", help="Retrain adapters even when they exist.")
    ] = False,
    threads: ThreadsOpt = None,
) -> None:
    """Run a post-training experiment plan: train, score beside the base, compare with CIs.

    Trains the plan's adapters, scores them and their base on the test split of the plan's studies and on simulated participants, and reports paired effects with bootstrap intervals. Resumable.
    """  # noqa: E501 - one line, so the help text wraps to the terminal, not to the source
    from psych201.lab.adapter import default_adapter_root
    from psych201.lab.experiment import read_plan, resolve_data, run_experiment
    from psych201.lab.settings import LabError

    _set_threads(threads)
    try:
        parsed = read_plan(plan)
        dataset = data if data is not None else resolve_data(parsed, plan)
        out_dir = out if out is not None else default_adapter_root().parent / "lab" / parsed.name
        result = run_experiment(parsed, data=dataset, out_dir=out_dir, retrain=retrain,
                                note=_note, progress=_show_labelled_step)
    except (LabError, ValueError, OSError) as exc:
        raise fail(str(exc)) from exc
    typer.echo(result.summary_path.read_text(encoding="utf-8"))
    _console.print(f"results: {out_dir / 'results.json'}", highlight=False)


@posttrain_app.command("show", no_args_is_help=True)
def show_cmd(
    adapter: Annotated[Path, typer.Argument(help="Adapter folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole card.")] = False,
) -> None:
    """Print an adapter's card: base, recipe, data, steps, seed, losses."""
    from psych201.lab.adapter import read_card
    from psych201.lab.settings import LabError

    try:
        card = read_card(adapter)
    except LabError as exc:
        raise fail(str(exc)) from exc
    if as_json:
        typer.echo(json.dumps(card.to_dict(), indent=2))
        return
    s = card.settings
    typer.echo(
        f"{card.name}\n  base: {card.base} ({card.base_sha256[:12]})\n"
        f"  recipe: {card.recipe} (registry type {card.post_training})\n"
        f"  data: {card.data.get('source', '')}\n"
        f"  steps: {card.steps} x {s.get('batch_size')} sequences, max {s.get('max_tokens')} "
        f"tokens, lr {s.get('learning_rate')}, seed {card.seed}\n"
        f"  LoRA: r={s['lora']['r']} alpha={s['lora']['alpha']} on "
        f"{','.join(s['lora']['target_modules'])}\n"
        f"  loss: {card.losses[0]:.4f} → {card.losses[-1]:.4f} in {card.train_wall_s:.0f} s"
    )


@posttrain_app.command("registry", no_args_is_help=True)
def registry_cmd(
    adapters: Annotated[list[Path], typer.Argument(help="Adapter folders.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Registry YAML to write.")],
) -> None:
    """Write one registry fragment for several adapters (for compare/report --registry)."""
    from psych201.lab.adapter import read_card
    from psych201.lab.registry_entry import write_registry_fragment
    from psych201.lab.settings import LabError

    try:
        cards = [read_card(a) for a in adapters]
        aliases = {c.name: [a.name] for c, a in zip(cards, adapters, strict=True)}
        path = write_registry_fragment(cards, out, aliases=aliases)
    except LabError as exc:
        raise fail(str(exc)) from exc
    typer.echo(str(path))
