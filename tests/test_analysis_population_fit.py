"""Population-level fit on data with known ground truth: shared trials, choices drawn from p."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wasserstein_distance

from paths import DATA, needs_data
from psych201.analysis.an_population_fit import ABOVE, AT, BELOW, PopulationFit
from psych201.analysis.baselines import letters_only, trial_responses
from psych201.analysis.plugin import AnalysisContext, AnalysisInputs, AnalysisOptions
from psych201.analysis.population_fit import (
    SharedTrials,
    _divergences,
    population_fit,
    shared_trials,
)
from psych201.analysis.registry import ModelRegistry
from psych201.analysis.tables import Results
from psych201.data.readers import discover_studies
from psych201.data.records import ResponseSpan, Session
from psych201.data.split import iter_split
from psych201.simulate import simulate_study, write_study

LETTERS = np.array(list("ABCDEFGHJKLMNPQRSTUVWXYZ"))


def _shared_study(n_participants: int = 60, n_trials: int = 30, k: int = 3, seed: int = 0,
                  study: str = "s") -> tuple[pd.DataFrame, pd.DataFrame]:
    """A response table (models ``oracle`` and ``T3``) and its trial table.

    Every participant sees the same ``n_trials`` trials, each with its own known choice
    distribution ``p_t`` over ``k`` options, labelled with letters drawn per participant.
    ``oracle`` predicts ``p_t``; ``T3`` predicts ``p_t^(1/3)`` renormalised (too flat).
    """
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(k, 0.7), size=n_trials)
    flat = p ** (1 / 3)
    flat /= flat.sum(axis=1, keepdims=True)
    rows, trials = [], []
    for i in range(n_participants):
        letters = [str(x) for x in rng.choice(LETTERS, size=k, replace=False)]
        labels = {letter: f"<{j + 1}>" for j, letter in enumerate(letters)}
        for t in range(n_trials):
            c = int(rng.choice(k, p=p[t]))
            key = {"study": study, "experiment": "e", "participant": str(i), "line": i + 1,
                   "response_index": t}
            trials.append({**key, "trial": f"trial {t}: <1> or <2> or <3>",
                           "choice": f"<{c + 1}>", "n_options": float(k), "labels": labels})
            order = rng.permutation(k)  # the engine may list the options in any order
            for model, dist in (("oracle", p[t]), ("T3", flat[t])):
                rows.append({**key, "model": model, "condition": "raw", "nll": -np.log(dist[c]),
                             "offered_options": [letters[j] for j in order],
                             "offered_logprobs": [float(np.log(dist[j]) - 2.0) for j in order]})
    return pd.DataFrame(rows), pd.DataFrame(trials)


def test_shared_trials_maps_offered_options_to_the_normalised_labels() -> None:
    table, trials = _shared_study(n_participants=6, n_trials=4)
    data, dropped = shared_trials(table[table["model"] == "oracle"], trials)
    assert data is not None and dropped == 0
    assert (data.n_trials, data.n_participants, len(data.cell)) == (4, 6, 24)
    np.testing.assert_allclose(data.probs.sum(axis=1), 1.0)
    # every participant's prediction for a trial is the same p_t, whatever the letters
    for t in range(4):
        assert np.ptp(data.probs[data.trial == t], axis=0).max() < 1e-12
    # fewer than five participants: no shared trial
    assert shared_trials(table[table["participant"].isin(list("0123"))], trials)[0] is None


def test_options_that_differ_from_the_transcripts_are_left_out() -> None:
    table, trials = _shared_study(n_participants=6, n_trials=2)
    table.loc[0, "offered_options"] = ["Q", "R"]
    table.loc[0, "offered_logprobs"] = [-1.0, -1.0]
    _, dropped = shared_trials(table[table["model"] == "oracle"], trials)
    assert dropped == 1


def test_oracle_sits_at_the_floor_and_a_flattened_model_is_above_it() -> None:
    table, trials = _shared_study()
    fits = {}
    for model in ("oracle", "T3"):
        data, _ = shared_trials(table[table["model"] == model], trials)
        assert data is not None
        fits[model] = population_fit(data, n_boot=400, seed=1, floor_draws=100)
    oracle, flat = fits["oracle"], fits["T3"]
    assert oracle.excess_ci[0] <= 0 <= oracle.excess_ci[1] and not oracle.above_floor
    assert abs(oracle.excess) < 0.25 * oracle.floor
    assert flat.above_floor and flat.excess_ci[0] > 0
    assert flat.jsd > 2 * flat.floor
    assert oracle.jsd_ci[0] <= oracle.jsd <= oracle.jsd_ci[1]


def test_wasserstein_on_numeric_options_is_scipys() -> None:
    rng = np.random.default_rng(3)
    values = np.array([[1.0, 2.0, 3.0, 5.0], [1.0, 2.0, 4.0, np.nan]])
    q = rng.dirichlet(np.ones(4), size=2)
    f = rng.dirichlet(np.ones(4), size=2)
    q[1, 3] = f[1, 3] = 0.0
    q[1] /= q[1].sum()
    f[1] /= f[1].sum()
    # one participant, one response per trial, carrying q as prediction and f as counts
    _, w1 = _divergences(np.ones((1, 1)), f.reshape(1, -1), q.reshape(1, -1), np.ones((1, 2)),
                         values)
    expected = np.mean([wasserstein_distance(values[t, :n], values[t, :n], q[t, :n], f[t, :n])
                        for t, n in ((0, 4), (1, 3))])
    assert w1[0] == pytest.approx(expected)


def _context(table: pd.DataFrame, trials: pd.DataFrame | None) -> AnalysisContext:
    return AnalysisContext(
        results=Results(table, ()), frame=table, main=table, condition="raw", studies=("s",),
        models=("T3", "oracle"), registry=ModelRegistry([]),
        options=AnalysisOptions(n_boot=300), pairs=(), inputs=AnalysisInputs(trials=trials))


def test_the_analysis_reports_per_model_and_study() -> None:
    table, trials = _shared_study()
    analysis = PopulationFit()
    assert analysis.skip(_context(table, None)) is not None  # no transcripts
    no_logprobs = table.assign(offered_logprobs=None)
    assert "offered_logprobs" in str(analysis.skip(_context(no_logprobs, trials)))
    context = _context(table, trials)
    assert analysis.skip(context) is None
    section = analysis.run(context)
    assert section is not None and section.anchor == "population-fit"
    got = section.table("per_study").set_index("model")
    assert bool(got.loc["T3", "above_floor"]) and not bool(got.loc["oracle", "above_floor"])
    assert "crowd" in section.text
    fig = section.figures[0].draw()
    assert fig is not None


def test_without_options_in_the_main_condition_the_discrete_variant_is_fitted() -> None:
    # Only a condition that states the offered options records their log-probs (the discrete
    # variant): a study run's raw cells have none, its discrete cells the same trials with them.
    table, trials = _shared_study()
    raw = table.assign(offered_options=None, offered_logprobs=None)
    both = pd.concat([raw, table.assign(condition="discrete")], ignore_index=True)
    context = AnalysisContext(
        results=Results(both, ()), frame=both, main=raw, condition="raw", studies=("s",),
        models=("T3", "oracle"), registry=ModelRegistry([]),
        options=AnalysisOptions(n_boot=300), pairs=(), inputs=AnalysisInputs(trials=trials))
    analysis = PopulationFit()
    assert analysis.skip(context) is None
    section = analysis.run(context)
    assert section is not None
    assert any("from condition discrete" in note for note in section.notes)
    expected = analysis.run(_context(table, trials))
    assert expected is not None
    pd.testing.assert_frame_equal(section.table("per_study"), expected.table("per_study"))
    # neither condition recorded them: skipped, saying where it looked
    none = both.assign(offered_logprobs=None)
    context = AnalysisContext(
        results=Results(none, ()), frame=none, main=raw, condition="raw", studies=("s",),
        models=("T3", "oracle"), registry=ModelRegistry([]),
        options=AnalysisOptions(n_boot=300), pairs=(), inputs=AnalysisInputs(trials=trials))
    assert "discrete variant" in str(analysis.skip(context))


def test_a_study_without_a_crowd_is_named() -> None:
    table, trials = _shared_study(n_participants=4)
    section = PopulationFit().run(_context(table, trials))
    assert section is not None and not section.tables
    assert any(note.startswith("s: not pooled: no trial seen in the same form by ≥ 5") for note in
               section.notes)


def test_simulated_shared_trials_are_recognised_by_the_trial_keying(tmp_path: Path) -> None:
    records = simulate_study("risky", n_participants=8, n_trials=5, seed=3, shared_trials=True)
    assert len({r["text"].split("Problem 1:")[1] for r in records}) > 1  # letters differ
    write_study(records, tmp_path / "risky_shared.jsonl")
    source = discover_studies(tmp_path)[0]
    trials = trial_responses(iter_split(source, "all", seed=0), numeric=True, snippet=60)
    assert trials["trial"].notna().all()
    assert trials.groupby("trial")["participant"].nunique().tolist() == [8] * 5
    assert set(trials["choice"]) <= {"<1>", "<2>"}
    assert all(sorted(labels.values()) == ["<1>", "<2>"] for labels in trials["labels"])
    assert trials["snippet"].str.len().max() <= 60
    # without the option, every participant's problems are their own
    own = simulate_study("risky", n_participants=8, n_trials=5, seed=3)
    write_study(own, tmp_path / "own" / "risky_own.jsonl")
    own_trials = trial_responses(iter_split(discover_studies(tmp_path / "own")[0], "all",
                                            seed=0))
    assert own_trials.groupby("trial")["participant"].nunique().max() < 5


def test_shared_trials_option_is_refused_for_tasks_without_a_problem_set() -> None:
    with pytest.raises(ValueError, match="no shared problem set"):
        simulate_study("bandit", n_participants=2, seed=0, shared_trials=True)


def test_letters_only_is_the_keying_without_numeric_scales() -> None:
    trials = pd.DataFrame({
        "study": "s", "experiment": "e", "participant": ["1", "2"], "line": [1, 2],
        "response_index": 0, "trial": ["pick <1> or <2>", "rate 1-5"], "choice": ["<1>", "3"],
        "n_options": [2.0, 5.0], "labels": [{"K": "<1>", "C": "<2>"}, {"3": "3"}]})
    out = letters_only(trials)
    assert out["trial"].tolist()[0] == "pick <1> or <2>" and out["trial"].isna().tolist()[1]
    assert np.isnan(out["n_options"].iloc[1])


def _oracle_table(records: list[dict[str, object]], trials: pd.DataFrame,
                  temperature: float) -> pd.DataFrame:
    """What the oracle engine at ``temperature`` records for the simulated responses: the
    generating model's choice probabilities p^(1/T), renormalised over the two options."""
    loglik = {(str(r["participant"]), i): float(ll)  # type: ignore[arg-type]
              for r in records for i, ll in enumerate(r["loglik"])}  # type: ignore[arg-type]
    rows = []
    for t in trials.itertuples():
        chosen = next(o for o, label in t.labels.items() if label == t.choice)
        other = next(o for o in t.labels if o != chosen)
        p = np.exp(loglik[(t.participant, t.response_index)])
        dist = np.array([p, 1 - p]) ** (1 / temperature)
        dist /= dist.sum()
        rows.append({"model": f"oracle T={temperature:g}", "study": t.study,
                     "experiment": t.experiment, "participant": t.participant, "line": t.line,
                     "response_index": t.response_index, "offered_options": [chosen, other],
                     "offered_logprobs": np.log(np.maximum(dist, 1e-300)).tolist()})
    return pd.DataFrame(rows)


def test_simulated_shared_study_oracle_at_floor_and_flattened_oracle_above(
        tmp_path: Path) -> None:
    """The done-when check on a simulated risky-choice study whose participants share trials:
    each participant has their own prospect-theory parameters, so the crowd is a mixture."""
    records = simulate_study("risky", n_participants=80, n_trials=15, seed=5, shared_trials=True)
    write_study(records, tmp_path / "risky_shared.jsonl")
    trials = trial_responses(iter_split(discover_studies(tmp_path)[0], "all", seed=0))
    fits = {}
    for temperature in (1.0, 3.0):
        table = _oracle_table(records, trials, temperature)
        data, dropped = shared_trials(table, trials)
        assert data is not None and dropped == 0 and data.n_trials == 15
        fits[temperature] = population_fit(data, n_boot=400, seed=2, floor_draws=100)
    oracle, flat = fits[1.0], fits[3.0]
    assert oracle.excess_ci[0] <= 0 <= oracle.excess_ci[1]
    assert flat.excess_ci[0] > 0 and flat.jsd > oracle.jsd


def test_the_cli_writes_a_shared_trials_study(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from psych201.cli.simulate_cmds import register

    app = typer.Typer()
    register(app)
    app.command("other")(lambda: None)
    out = tmp_path / "shared.jsonl"
    runner = CliRunner()
    ok = runner.invoke(app, ["simulate", "risky", "-n", "6", "-t", "3", "--shared-trials",
                             "-o", str(out)])
    assert ok.exit_code == 0, ok.output
    trials = trial_responses(iter_split(discover_studies(out)[0], "all", seed=0))
    assert trials.groupby("trial")["participant"].nunique().tolist() == [6] * 3
    refused = runner.invoke(app, ["simulate", "bandit", "--shared-trials", "-o", str(out)])
    assert refused.exit_code == 2 and "shared" in refused.output


def _rating_session(participant: int, ratings: list[str]) -> Session:
    text, spans = "", []
    for i, r in enumerate(ratings):
        text += f"Item {i}: how much do you like it, from 1 to 5? <<"
        spans.append(ResponseSpan(i, len(text), len(text) + len(r), r))
        text += r + ">>\n"
    return Session("likert", "e", str(participant), participant + 1, text, tuple(spans))


def test_rating_scales_are_keyed_with_numeric_option_and_get_a_wasserstein_distance() -> None:
    rng = np.random.default_rng(4)
    scale = ["1", "2", "3", "4", "5"]
    p = rng.dirichlet(np.ones(5), size=6)
    sessions = [_rating_session(i, [str(rng.choice(5, p=p[t]) + 1) for t in range(6)])
                for i in range(40)]
    options = [frozenset(scale)] * 6
    trials = trial_responses(sessions, lambda s: options, numeric=True)
    assert trials["trial"].notna().all() and trial_responses(
        sessions, lambda s: options)["trial"].isna().all()  # without numeric: not keyed
    assert trials["labels"].iloc[0] == {o: o for o in scale}
    results = {}
    for name, dist in (("oracle", p), ("flat", np.full((6, 5), 0.2))):
        table = trials[["study", "experiment", "participant", "line", "response_index"]].assign(
            offered_options=[scale] * len(trials),
            offered_logprobs=[np.log(dist[t]).tolist() for t in trials["response_index"]])
        data, _ = shared_trials(table, trials)
        assert data is not None
        np.testing.assert_array_equal(data.values, np.tile(np.arange(1.0, 6.0), (6, 1)))
        results[name] = population_fit(data, n_boot=200, floor_draws=50)
    assert np.isfinite(results["oracle"].w1) and results["flat"].w1 > results["oracle"].w1
    assert results["oracle"].w1_ci[0] <= results["oracle"].w1 <= results["oracle"].w1_ci[1]
    # options are ordered: W1 gets its own floor test (the model's own crowds)
    oracle_w1, flat_w1 = results["oracle"].w1_test, results["flat"].w1_test
    assert oracle_w1 is not None and flat_w1 is not None
    assert oracle_w1.verdict(0.95) == AT and flat_w1.verdict(0.95) == ABOVE
    assert 0 < oracle_w1.floor < flat_w1.observed
    table, letter_trials = _shared_study(n_participants=6, n_trials=2)
    letters, _ = shared_trials(table[table["model"] == "oracle"], letter_trials)
    assert letters is not None and population_fit(letters, n_boot=0).w1_test is None


@needs_data
def test_numeric_keying_leaves_the_population_baselines_input_unchanged_on_real_data() -> None:
    from psych201.prompts.options import response_options

    sessions = [s for st in ("frey2017lotteries", "franke2024bayesian")
                for s in list(iter_split(DATA / st, "all"))[:40]]
    parsed = {s.key: response_options(s) for s in sessions}  # parse the transcripts once
    plain = trial_responses(sessions, lambda s: parsed[s.key])
    keyed = trial_responses(sessions, lambda s: parsed[s.key], numeric=True, snippet=80)
    back = letters_only(keyed)
    columns = ["trial", "choice", "n_options"]
    pd.testing.assert_frame_equal(back[columns].astype(object).where(back[columns].notna(), None),
                                  plain[columns].astype(object).where(plain[columns].notna(),
                                                                      None))
    # frey2017lotteries: the same lottery pairs for everyone, so trials are shared
    frey = keyed[(keyed["study"] == "frey2017lotteries") & keyed["trial"].notna()]
    shared = frey.groupby("trial")["participant"].nunique()
    assert (shared >= 5).sum() > 10


def test_data_baselines_carry_the_trial_table_for_the_analyses(tmp_path: Path) -> None:
    from psych201.report.make import data_baselines

    records = simulate_study("risky", n_participants=10, n_trials=4, seed=1, shared_trials=True)
    write_study(records, tmp_path / "risky_shared.jsonl")
    name = discover_studies(tmp_path)[0].name
    results = Results(pd.DataFrame({"study": [name]}), ())
    baselines = data_baselines([tmp_path], results)
    trials = baselines.trials
    assert trials is not None
    assert {"trial", "labels", "snippet"} <= set(trials.columns) and len(trials) == 40
    assert trials["snippet"].str.contains("Lottery").all()
    # the population baseline still sees the shared trials
    assert baselines.population.studies.set_index("study").loc[name, "discrete"] == 1.0


def test_bootstrap_blocks_give_the_same_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    import psych201.analysis.population_fit as pf

    table, trials = _shared_study(n_participants=10, n_trials=5)
    data, _ = shared_trials(table[table["model"] == "T3"], trials)
    assert data is not None
    whole = population_fit(data, n_boot=50, floor_draws=5)
    monkeypatch.setattr(pf, "_BLOCK_CELLS", 7 * data.n_trials * data.width)
    blocked = population_fit(data, n_boot=50, floor_draws=5)
    for name in ("jsd", "floor", "jsd_ci", "excess_ci"):
        assert getattr(blocked, name) == pytest.approx(getattr(whole, name), rel=1e-9)


def _crowd(rng: np.random.Generator, n_participants: int, n_trials: int,
           temperature: float) -> SharedTrials:
    """Binary trials shared by every participant; participant i chooses option 1 at trial t
    with p = logistic(a_t + b_i) (a crowd of different people); the model predicts each
    response as p^(1/T) renormalised (T = 1: the exact oracle)."""
    a = rng.normal(0.0, 1.5, size=n_trials)
    b = rng.normal(0.0, 1.0, size=n_participants)
    p = 1 / (1 + np.exp(-(a[None, :] + b[:, None])))  # (participants, trials)
    choice = (rng.random(p.shape) < p).astype(np.int64)
    q = np.stack([p, 1 - p], axis=-1) ** (1 / temperature)
    q /= q.sum(axis=-1, keepdims=True)
    participant, trial = (x.ravel() for x in np.indices(p.shape))
    return SharedTrials(participant=participant, trial=trial,
                        cell=trial * 2 + 1 - choice.ravel(), probs=q.reshape(-1, 2),
                        values=np.full((n_trials, 2), np.nan), n_participants=n_participants)


def test_a_crowd_closer_than_sampling_allows_is_below_the_floor() -> None:
    """Issue 25 row 2: a model significantly below its floor was reported "at floor" (the old
    interval was one-sided). Here everyone is predicted 50/50 and exactly half choose each
    option at every trial: the JSD is 0, which no crowd drawn from the model reaches."""
    n, t = 40, 10
    data = SharedTrials(
        participant=np.repeat(np.arange(n), t), trial=np.tile(np.arange(t), n),
        cell=np.tile(np.arange(t), n) * 2 + np.repeat(np.arange(n) % 2, t),
        probs=np.full((n * t, 2), 0.5), values=np.full((t, 2), np.nan), n_participants=n)
    fit = population_fit(data, n_boot=0, floor_draws=200)
    assert fit.jsd == pytest.approx(0.0, abs=1e-12) and fit.floor > 0
    assert fit.verdict == BELOW and fit.p_value < 0.05 and not fit.above_floor
    assert fit.excess_ci[1] < 0  # the range excludes 0 on the side the verdict names


def test_the_floor_test_p_agrees_with_its_range() -> None:
    rng = np.random.default_rng(0)
    for temperature in (0.5, 1.0, 1.4, 3.0):
        fit = population_fit(_crowd(rng, 40, 20, temperature), n_boot=0, floor_draws=200)
        low, high = fit.excess_ci
        assert (fit.p_value < 0.05) == (low > 0 or high < 0), (temperature, fit)
        assert (fit.verdict == AT) == (fit.p_value >= 0.05)


@pytest.mark.slow
def test_floor_test_size_and_power_on_simulated_crowds() -> None:
    """Issue 25 done-when: size 2–8 % on the exact oracle; power ≥ 50 % at T = 1.4 with 40
    participants per trial (30 trials); power at T = 0.7 stated. Measured (seed 25, 400
    replicates, 200 crowds each): see POWER_T14 / POWER_T07 in the module."""
    rng = np.random.default_rng(25)
    rejected: dict[float, list[bool]] = {1.0: [], 1.4: [], 0.7: []}
    for _ in range(250):
        for temperature, hits in rejected.items():
            fit = population_fit(_crowd(rng, 40, 40, temperature), n_boot=0,
                                 seed=int(rng.integers(1 << 31)), floor_draws=200)
            hits.append(fit.verdict != AT)
    rate = {t: float(np.mean(h)) for t, h in rejected.items()}
    print("floor test rejection rates", rate)
    assert 0.02 <= rate[1.0] <= 0.08
    assert rate[1.4] >= 0.5
    assert rate[0.7] >= 0.2


def test_responses_the_fit_cannot_use_are_counted() -> None:
    """Issue 25 row 9: free-text responses were dropped from the population fit silently."""
    table, trials = _shared_study(n_participants=6, n_trials=3)
    trials.loc[trials["response_index"] == 2, ["trial", "choice", "labels"]] = None  # free text
    section = PopulationFit().run(_context(table, trials))
    assert section is not None
    # per model: 6 of the 18 scored responses have no key
    assert any(note.startswith("s: 6 of 18 scored responses are not choices among offered "
                               "options") for note in section.notes), section.notes


def test_above_floor_counts_are_read_with_a_multiplicity_control() -> None:
    """Issue #25 row 9: "above floor in k of N" over N per-study tests is also given after
    Benjamini–Hochberg (q = p·N/rank, monotone), so two nominal hits of three can be one."""
    from psych201.analysis.an_population_fit import ABOVE, AT, _reading, with_study_q_values

    table = pd.DataFrame({
        "model": ["m", "m", "m", "other"], "study": ["a", "b", "c", "a"],
        "p_value": [0.01, 0.04, 0.5, 0.2], "verdict": [ABOVE, ABOVE, AT, AT],
        "jsd": [0.1, 0.05, 0.01, 0.02], "jsd_floor": [0.01, 0.01, 0.01, 0.02]})
    got = with_study_q_values(table)
    assert got["q_value"].tolist() == pytest.approx([0.03, 0.06, 0.5, 0.2])
    text = _reading(got)
    assert "2 above floor" in text
    assert "1 of 3 differ from the floor at q < 0.05 after Benjamini–Hochberg" in text
