"""The committed headline study agrees with a recomputation from its committed per-run files."""

import json
import sys
from pathlib import Path

import pytest
import yaml

from lossbench import compare, figures
from lossbench.compare.hypotheses import verdicts_markdown

STUDY = Path(__file__).resolve().parent.parent / "reports" / "studies" / "cpu-fair-lr"
ARMS = [arm for arm in ("paper-lr", "tuned-lr") if (STUDY / arm / "summary.json").is_file()]


def close(first, second):
    """Equal JSON values, numbers to 1e-9."""
    if isinstance(first, dict):
        return first.keys() == second.keys() and all(close(first[key], second[key]) for key in first)
    if isinstance(first, list):
        return len(first) == len(second) and all(map(close, first, second))
    if isinstance(first, float) and isinstance(second, float):
        return second == pytest.approx(first, rel=1e-9, abs=1e-12)
    return first == second


# Per-loss counts added to compare's summary after a committed study was assembled.
NEWER_SUMMARY_COUNTS = ("dead_final_layer_unknown_runs",)


def assert_summary_recomputes(folder: Path) -> tuple[dict, list[Path]]:
    """Assert that compare, rerun on `folder`'s committed evaluations with its params, gives
    its committed summary (verdicts and per-loss entries); return (params, evaluation paths)."""
    params = yaml.safe_load((folder / "params.yaml").read_text())
    evaluations = sorted((folder / "evaluation").glob("*.json"))
    recomputed = compare.summarise(compare.read_metrics(evaluations), params["compare"])
    committed = json.loads((folder / "summary.json").read_text())
    assert close(json.loads(json.dumps(recomputed["hypotheses"])), committed["hypotheses"])
    losses = json.loads(json.dumps(recomputed["losses"]))
    for loss, entry in losses.items():
        # Counts compare learned after these studies were assembled: each must say nothing new
        # (no run of unknown state here), and is then left out of the comparison.
        for key in NEWER_SUMMARY_COUNTS:
            if key not in committed["losses"][loss]:
                assert entry.pop(key) == 0, (loss, key)
    assert close(losses, committed["losses"])
    return params, evaluations


@pytest.mark.skipif(not ARMS, reason="the cpu-fair-lr study has no assembled arm yet")
@pytest.mark.parametrize("arm", ARMS)
def test_summary_verdicts_and_epoch_table_recompute_from_the_per_run_files(arm):
    folder = STUDY / arm
    params, evaluations = assert_summary_recomputes(folder)
    # The per-epoch table behind the curves (and dvc plots), from the committed training logs.
    histories = figures.read_histories([folder / "training" / path.stem for path in evaluations])
    assert figures.epochs_table(histories) == (folder / "epochs.csv").read_text()


@pytest.mark.skipif(len(ARMS) < 2, reason="the cpu-fair-lr study has not both arms yet")
def test_the_committed_verdict_table_is_the_summaries():
    families = {f"{arm.split('-')[0]} lr": json.loads((STUDY / arm / "summary.json").read_text())["hypotheses"]
                for arm in ARMS}
    assert (STUDY / "verdicts.md").read_text() == verdicts_markdown(families)


@pytest.mark.skipif(len(ARMS) < 2, reason="the cpu-fair-lr study has not both arms yet")
def test_the_study_readme_quotes_the_verdict_table_and_every_seed():
    """The study's README states its answer from the committed verdicts, not from memory: each
    row of verdicts.md appears in it, and the n of each row is every seed the arms hold."""
    readme = (STUDY / "README.md").read_text()
    rows = [line for line in (STUDY / "verdicts.md").read_text().splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 3 * len(ARMS)  # header, rule, three claims per arm
    missing = [row for row in rows if row not in readme]
    assert missing == []
    seeds = {json.loads(path.read_text())["seed"] for path in (STUDY / "paper-lr" / "evaluation").glob("*.json")}
    assert all(f"| {len(seeds)} |" in row for row in rows[2:])


NOISE_STUDY = STUDY.parent / "cpu-label-noise"
NOISE_RATES = sorted(path.name for path in NOISE_STUDY.glob("noise*") if (path / "summary.json").is_file())


def load_noise_assembly():
    """reports/studies/cpu-label-noise/assemble.py as a module (it is a script, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("noise_assemble", NOISE_STUDY / "assemble.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not NOISE_RATES, reason="the cpu-label-noise study is not assembled yet")
@pytest.mark.parametrize("rate", NOISE_RATES)
def test_the_noise_study_summaries_recompute_from_the_per_run_files(rate):
    params, evaluations = assert_summary_recomputes(NOISE_STUDY / rate)
    assert {json.loads(path.read_text())["setup"]["label_noise"] for path in evaluations} == {
        params["preprocess"]["label_noise"]}


@pytest.mark.skipif(not NOISE_RATES, reason="the cpu-label-noise study is not assembled yet")
def test_the_noise_study_analysis_and_readme_recompute_from_the_per_run_files():
    """analysis.md (R1-R3, the paper's claims at noise 0 and 0.4, accuracy, drops and
    calibration) is what assemble.py's functions make of the committed evaluations, and the
    README quotes each of its verdict rows."""
    assembly = load_noise_assembly()
    params = yaml.safe_load((NOISE_STUDY / "noise0" / "params.yaml").read_text())
    analysis = assembly.analysis_markdown(assembly.load_runs(NOISE_STUDY), params["compare"])
    assert analysis == (NOISE_STUDY / "analysis.md").read_text()
    verdict_rows = [line for line in analysis.splitlines() if line.startswith("| noise ")]
    assert len(verdict_rows) == 3 + 6  # R1-R3, then the paper's three claims at two rates
    readme = (NOISE_STUDY / "README.md").read_text()
    assert [row for row in verdict_rows if row not in readme] == []


def test_the_noise_studys_confound_sentence_names_untrainable_losses_of_the_family():
    """Synthetic families: a loss of R1-R3 judged untrainable at noise 0 is named with its
    reason; one outside the family, or none, gives no sentence."""
    sentence = load_noise_assembly().confound_sentence
    pairs = [{"loss_a": "mae", "loss_b": "categorical_crossentropy"},
             {"loss_a": "hinge", "loss_b": "categorical_crossentropy"}]
    text = sentence({"pairs": pairs, "untrainable_losses": {"mae": "3 of 3 runs collapsed to predicting one class",
                                                            "crammer_singer_hinge": "2 of 3 runs collapsed"}})
    assert text.startswith("Untrainable at noise 0 by compare's judgement: `mae` (3 of 3 runs collapsed")
    assert "crammer_singer_hinge" not in text and "slowness, not robustness" in text
    assert sentence({"pairs": pairs, "untrainable_losses": {"square": "2 of 3 runs collapsed"}}) == ""
    assert sentence({"pairs": pairs, "untrainable_losses": {}}) == ""


# ---------------------------------------------------------------------------------------------
# cpu-class-scores: the pre-registered verdicts, on synthetic tuning tables.
# ---------------------------------------------------------------------------------------------


def load_study_analysis(study: str):
    """A study's own analysis script (reports/studies/<study>/analyse.py), as a module."""
    import importlib.util

    path = STUDY.parent / study / "analyse.py"
    spec = importlib.util.spec_from_file_location(f"{study.replace('-', '_')}_analysis", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_class_scores_analysis():
    return load_study_analysis("cpu-class-scores")


def synthetic_tuning(accuracies: dict[float, list[float]], selected: float) -> dict:
    """A tune result with one run per (rate, accuracy) and the given selected rate."""
    runs = [{"learning_rate": rate, "seed": 100 + index, "holdout_accuracy": accuracy, "diverged": False}
            for rate, values in accuracies.items() for index, accuracy in enumerate(values)]
    return {"runs": runs, "selected_learning_rate": selected}


def test_class_scores_verdicts_follow_the_pre_registered_rules():
    analysis = load_class_scores_analysis()
    chance, learned = 0.100, 0.300
    collapsing = {0.01: [learned] * 3, 0.03: [learned] * 3, 0.1: [chance] * 3, 0.3: [chance] * 3}
    healthy = {rate: [learned] * 3 for rate in (0.01, 0.03, 0.1, 0.3)}
    # The boundary of "at chance" with 1,000 hold-out images: 116 correct is, 117 is not.
    assert analysis.at_chance({"holdout_accuracy": 0.116}) and not analysis.at_chance({"holdout_accuracy": 0.117})
    assert analysis.at_chance({"holdout_accuracy": None, "diverged": True})
    tunings = {"relu": {"hinge": synthetic_tuning(collapsing, 0.01),
                        "categorical_crossentropy": synthetic_tuning(healthy, 0.03)},
               "linear": {"hinge": synthetic_tuning(healthy, 0.1),
                          "categorical_crossentropy": synthetic_tuning(healthy, 0.03)}}
    rows = {row["loss"]: row for row in analysis.verdict_rows(tunings)}
    assert rows["hinge"]["relu"] == [6, 6] and rows["hinge"]["linear"] == [0, 6]
    assert rows["hinge"]["p_predicted"] == pytest.approx(0.0011, abs=1e-4)
    assert rows["hinge"]["verdict"] == "reproduced"
    assert rows["categorical_crossentropy"]["verdict"] == "not testable"  # no collapse to remove
    rates = analysis.selected_rates(tunings)
    assert rates == {"loss": "hinge", "selected": {"relu": 0.01, "linear": 0.1}, "moved": True}
    lines = analysis.describe(list(rows.values()), rates)
    assert lines[0] == ("- **H1** (`hinge`, rates 0.1 and 0.3): at chance in 6 of 6 runs with the ReLU "
                        "and 0 of 6 without (difference +100 points; Fisher one-sided p = 0.00108, "
                        "Holm 0.00216): **reproduced**.")
    assert lines[2] == "- **H3** (descriptive): the hinge's selected rate moved: 0.01 with the ReLU, 0.1 without."
    # The reverse, a partial effect, and an arm whose hinge never learned.
    tunings["linear"]["hinge"] = synthetic_tuning(collapsing, 0.01)
    tunings["relu"]["hinge"] = synthetic_tuning(healthy | {0.3: [chance, learned, learned]}, 0.03)
    assert analysis.verdict_rows(tunings)[0]["verdict"] == "reversed"
    tunings["linear"]["hinge"] = synthetic_tuning(healthy | {0.3: [learned, learned, learned]}, 0.03)
    tunings["relu"]["hinge"] = synthetic_tuning(healthy | {0.3: [chance, chance, chance]}, 0.03)
    assert analysis.verdict_rows(tunings)[0]["verdict"] == "inconclusive"  # 3 of 6 against 0 of 6
    tunings["linear"]["hinge"] = synthetic_tuning({rate: [chance] * 3 for rate in healthy}, 0.01)
    assert analysis.selected_rates(tunings)["moved"] == "not testable"
    assert "H3**: not testable" in analysis.describe(analysis.verdict_rows(tunings),
                                                     analysis.selected_rates(tunings))[2]


def test_class_scores_start_records_from_a_job_log(tmp_path):
    """The relu arm's run.json files were deleted before they were copied (a slip of the
    copying script, README); its start times come from its job log, checked the same way."""
    analysis = load_class_scores_analysis()
    log = tmp_path / "relu" / "snakemake.log"
    log.parent.mkdir()
    log.write_text("localrule tune:\n"
                   "2026-12-07 19:54:22,919 lossbench.train.packs INFO: Training hinge, seed 100, on CPU\n"
                   "Epoch 1/6\n"
                   "2026-12-07 19:55:16,758 lossbench.train.packs INFO: Training hinge, seed 101, on CPU\n")
    starts = analysis.log_starts(log)
    assert list(starts.values()) == [{"started": "2026-12-07T19:54:22+00:00"},
                                     {"started": "2026-12-07T19:55:16+00:00"}]
    assert list(starts)[0] == "relu/log line 2: hinge seed 100"


CLASS_SCORES = STUDY.parent / "cpu-class-scores"


@pytest.mark.skipif(not (CLASS_SCORES / "analysis.md").is_file(), reason="cpu-class-scores has no results yet")
def test_the_class_scores_analysis_recomputes_from_its_committed_records(tmp_path, monkeypatch):
    """The committed analysis.md and analysis.json are what analyse.py writes from the committed
    tune results, after checking every run started after the pre-registration."""
    import shutil

    copy = tmp_path / "reports" / "studies" / "cpu-class-scores"
    shutil.copytree(CLASS_SCORES, copy)
    (copy / "analysis.md").unlink()
    (copy / "analysis.json").unlink()
    spec_path = copy / "analyse.py"
    import importlib.util

    spec = importlib.util.spec_from_file_location("class_scores_copy", spec_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "STUDY", copy)
    monkeypatch.setattr(sys, "path", [str(STUDY.parents[2] / "workflow"), *sys.path])
    assert module.main() == 0
    assert (copy / "analysis.md").read_text() == (CLASS_SCORES / "analysis.md").read_text()
    assert json.loads((copy / "analysis.json").read_text()) == json.loads(
        (CLASS_SCORES / "analysis.json").read_text())


def epochs_of(history_path: Path) -> list[dict]:
    history = json.loads(history_path.read_text())
    return history["epochs"] if isinstance(history, dict) else history


def test_the_rerun_on_another_cpu_is_the_cpu_not_the_code():
    """cpu-fair-lr's README, "Rerun, 2026-12-07": the numbers it gives are the committed
    records', and the rerun's training equals, epoch by epoch, the run of cpu-12-epochs made
    with the same images and seed on the same kind of CPU."""
    import math
    import statistics

    from scipy import stats

    rerun = STUDY / "rerun-zen4"
    readme = " ".join((STUDY / "README.md").read_text().split())
    record = json.loads((rerun / "run.json").read_text())
    assert record["code"]["commit"].startswith("9d31ba7") and not record["code"]["dirty"]
    assert "9d31ba7" in readme
    evaluation = json.loads((rerun / "evaluation.json").read_text())
    committed = json.loads((STUDY / "paper-lr/evaluation/categorical_crossentropy-seed0.json").read_text())
    assert f"ends at {evaluation['test_accuracy']:.2%} test accuracy".replace("%", " %") in readme
    assert f"ended at {committed['test_accuracy']:.2%}".replace("%", " %") in readme
    seeds = [json.loads(path.read_text())["test_accuracy"]
             for path in sorted((STUDY / "paper-lr/metrics").glob("categorical_crossentropy-seed*.json"))]
    half = stats.t.ppf(0.975, len(seeds) - 1) * statistics.stdev(seeds) * math.sqrt(1 + 1 / len(seeds))
    low, high = statistics.mean(seeds) - half, statistics.mean(seeds) + half
    assert f"{len(seeds)} seeds ({100 * low:.1f} to {100 * high:.1f} %)" in readme
    assert low <= evaluation["test_accuracy"] <= high
    same_cpu = epochs_of(STUDY.parent / "cpu-12-epochs/training/categorical_crossentropy-seed0/history.json")
    rerun_epochs = epochs_of(rerun / "history.json")
    assert [(epoch["loss"], epoch["accuracy"]) for epoch in rerun_epochs] == [
        (epoch["loss"], epoch["accuracy"]) for epoch in same_cpu]
    committed_epochs = epochs_of(STUDY / "paper-lr/training/categorical_crossentropy-seed0/history.json")
    first_two = ", then ".join(f"{epoch['loss']:.4f}" for epoch in rerun_epochs[:2])
    assert f"({first_two};" in readme
    assert ", ".join(f"{epoch['loss']:.4f}" for epoch in committed_epochs[:2]) in readme


def load_crammer_singer_analysis():
    return load_study_analysis("cpu-crammer-singer")


@pytest.mark.parametrize("control, linear, lower_rate, verdicts", [
    # The README's "what this cannot detect": 5 of 10 against 10 of 10 passes Holm, 7 does not.
    (10, 5, 10, {"H1": "reproduced", "H2": "inconclusive"}),
    (10, 7, 10, {"H1": "inconclusive", "H2": "inconclusive"}),
    (10, 0, 0, {"H1": "reproduced", "H2": "reproduced"}),
    # A control that mostly did not collapse leaves nothing to reduce.
    (4, 0, 0, {"H1": "not testable", "H2": "not testable"}),
    # More collapse than the control, significantly: reversed.
    (5, 10, 10, {"H1": "reversed", "H2": "reversed"}),
])
def test_crammer_singer_verdicts_follow_the_pre_registered_rules(control, linear, lower_rate, verdicts):
    analysis = load_crammer_singer_analysis()
    rows = analysis.verdict_rows({"relu-lr0.01": (control, 10), "linear-lr0.01": (linear, 10),
                                  "relu-lr0.001": (lower_rate, 10)})
    assert {row["hypothesis"]: row["verdict"] for row in rows} == verdicts
    summaries = {
        "relu-lr0.01": analysis.arm_summary([{"collapsed": True, "final_layer_dead": True, "test_accuracy": 0.1},
                                             {"collapsed": False, "final_layer_dead": False,
                                              "test_accuracy": 0.3}], relu=True),
        "linear-lr0.01": analysis.arm_summary([{"collapsed": True, "test_accuracy": 0.1}], relu=False),
        # A file without the flag (the review metrics) says nothing of the layer: unknown, not alive.
        "relu-lr0.001": analysis.arm_summary([{"collapsed": True, "final_layer_dead": False, "test_accuracy": 0.1},
                                              {"collapsed": True, "test_accuracy": 0.1}], relu=True),
    }
    text = "\n".join(analysis.describe(rows, summaries))
    first = rows[0]
    assert (f"collapsed in {linear} of 10 runs without the ReLU on `conv_9` (lr 0.01)" in text
            and f"against {control} of 10 with the ReLU at lr 0.01" in text
            and f"**{verdicts['H1']}**" in text)
    assert f"Holm {first['p_predicted_holm']:.3g}" in text
    assert "`conv_9` dead in 1 of 2 runs; mean test accuracy of the runs that did not collapse: 30.0 %" in text
    assert ("`conv_9` has no ReLU (it cannot die); mean test accuracy of the runs that did not collapse: "
            "none (every run collapsed)") in text
    assert "`relu-lr0.001` (descriptive): whether `conv_9` died is unknown (an evaluation lacks the flag)" in text


def percent(value: float, digits: int = 1) -> str:
    return f"{100 * value:.{digits}f} %"


def test_the_bf16_check_readme_numbers_are_its_records():
    """cpu-bf16-check's table (float32: cpu-12-epochs' runs of the same seeds), its spread and
    its speed figures, from the committed metrics and training logs."""
    import statistics

    folder = STUDY.parent / "cpu-bf16-check"
    readme = (folder / "README.md").read_text()
    runs = {}
    for name, study in (("float32", "cpu-12-epochs"), ("bfloat16", "cpu-bf16-check")):
        runs[name] = [(json.loads((STUDY.parent / study / f"metrics/categorical_crossentropy-seed{seed}.json")
                                  .read_text())["test_accuracy"],
                       epochs_of(STUDY.parent / study / f"training/categorical_crossentropy-seed{seed}/history.json"))
                      for seed in range(3)]
    for seed, ((single, _), (half, _)) in enumerate(zip(runs["float32"], runs["bfloat16"])):
        assert f"| {seed} | {percent(single)} | {percent(half)} | {100 * (half - single):+.1f} pp |" in readme
    singles, halves = ([accuracy for accuracy, _ in runs[name]] for name in ("float32", "bfloat16"))
    assert (f"| mean (SD) | {percent(statistics.mean(singles))} ({100 * statistics.stdev(singles):.1f}) | "
            f"{percent(statistics.mean(halves))} ({100 * statistics.stdev(halves):.1f}) | "
            f"{100 * (statistics.mean(halves) - statistics.mean(singles)):+.1f} pp |") in readme
    fastest = {name: [min(epoch["seconds"] for epoch in history) for _, history in runs[name]] for name in runs}
    totals = {name: statistics.mean(sum(epoch["seconds"] for epoch in history) for _, history in runs[name])
              for name in runs}
    text = " ".join(readme.split())
    assert (f"the fastest epoch took {min(fastest['bfloat16']):.1f}-{max(fastest['bfloat16']):.1f} s in "
            f"bfloat16 against {min(fastest['float32']):.1f}-{max(fastest['float32']):.1f} s in float32") in text
    assert (f"whole trainings {totals['bfloat16']:.0f} s against {totals['float32']:.0f} s on average "
            f"({totals['float32'] / totals['bfloat16']:.1f}×)") in text


def test_the_init_collapse_readme_table_is_its_collapse_file_and_recomputes():
    """init-collapse's table and p-values: collapse.json, recomputed from the 40 runs' metrics."""
    from lossbench.compare.collapse import collapse_table, read_run

    folder = STUDY.parent / "init-collapse"
    readme = (folder / "README.md").read_text()
    committed = json.loads((folder / "collapse.json").read_text())
    groups = {f"model.init: {init}": sorted((folder / "metrics" / init).glob("*.json"))
              for init in ("keras1", "keras3")}
    recomputed = collapse_table({name: [read_run(path) for path in paths] for name, paths in groups.items()},
                                committed["confidence_level"])
    assert close(json.loads(json.dumps(recomputed)), committed)
    for loss, cells in committed["cells"].items():
        for group, cell in cells.items():
            init = group.split(": ")[1]
            label = f"{init} (paper)" if init == "keras1" else init
            accuracy = ("—" if cell["mean_test_accuracy_not_collapsed"] is None
                        else percent(cell["mean_test_accuracy_not_collapsed"]))
            assert (f"| `{loss}` | {label} | {cell['runs']} | {cell['collapsed']} | "
                    f"{100 * cell['rate']:.0f} % ({100 * cell['ci_low']:.0f}-{100 * cell['ci_high']:.0f} %) | "
                    f"{accuracy} |") in readme
    p_value = committed["tests"]["categorical_crossentropy: model.init: keras1 vs model.init: keras3"]["p_value"]
    assert f"p = {p_value:.2f}" in readme


def test_the_12_epoch_readme_quotes_its_report_and_recomputes_its_corrected_p_values():
    """cpu-12-epochs: the table is report.md's, the cross-entropy sentence summary.json's, and
    the p-values of its dated correction come from paired t-tests over the committed metrics
    with statsmodels' Holm (all 15 pairs; then the paper's three as the family)."""
    import itertools

    from scipy import stats
    from statsmodels.stats.multitest import multipletests

    folder = STUDY.parent / "cpu-12-epochs"
    readme = (folder / "README.md").read_text()
    report = (folder / "report.md").read_text().splitlines()
    rows = [line for line in readme.splitlines() if line.startswith(("| Loss", "| `"))]
    assert len(rows) == 7 and all(row in report for row in rows)
    accuracy = json.loads((folder / "summary.json").read_text())["losses"]["categorical_crossentropy"]["test_accuracy"]
    assert (f"Cross-entropy reaches {100 * accuracy['mean']:.1f} % ({100 * accuracy['ci_low']:.1f}-"
            f"{100 * accuracy['ci_high']:.1f} %)") in readme
    runs = {}
    for path in sorted((folder / "metrics").glob("*.json")):
        loss, seed = path.stem.rsplit("-seed", 1)
        runs.setdefault(loss, {})[int(seed)] = json.loads(path.read_text())["test_accuracy"]

    def holm(pairs):
        p_values = [stats.ttest_rel([runs[a][seed] for seed in sorted(runs[a])],
                                    [runs[b][seed] for seed in sorted(runs[a])]).pvalue for a, b in pairs]
        return dict(zip(pairs, multipletests(p_values, method="holm")[1]))

    text = " ".join(readme.split())
    every = holm(list(itertools.combinations(sorted(runs), 2)))
    significant = {frozenset(pair): value for pair, value in every.items() if value < 0.05}
    assert len(significant) == 4 and "four of the 15 are" in text
    quoted = {("categorical_crossentropy", "crammer_singer_hinge"): "0.0068", ("hinge", "squared_hinge"): "0.011",
              ("crammer_singer_hinge", "ova_squared_hinge"): "0.021", ("hinge", "ova_squared_hinge"): "0.042"}
    assert {frozenset(pair) for pair in quoted} == set(significant)
    for pair, shown in quoted.items():
        assert f"{significant[frozenset(pair)]:.2g}" == shown and shown in text
    paper = holm([("categorical_crossentropy", "squared_hinge"), ("hinge", "squared_hinge"),
                  ("categorical_crossentropy", "hinge")])
    assert [f"{value:.2g}" for value in paper.values()] == ["0.03", "0.0023", "0.019"]
    assert "Holm p = 0.030 for cross-entropy vs squared hinge, 0.0023 for squared hinge vs hinge, 0.019" in text


def test_the_crammer_singer_analysis_and_readme_recompute_from_its_committed_records():
    """cpu-crammer-singer: analysis.json from the committed evaluations (every run after the
    pre-registration), the README's counts and p-values from it, its training times and
    starts from the run records."""
    from lossbench.io.preregistration import check_runs

    analysis = load_crammer_singer_analysis()
    folder = STUDY.parent / "cpu-crammer-singer"
    summaries, records = {}, {}
    for arm in analysis.ARMS:
        evaluations, arm_records = analysis.load_arm(arm)
        summaries[arm] = analysis.arm_summary(evaluations, relu=not arm.startswith("linear"))
        records.update(arm_records)
        seconds = sum(record["train_seconds"] for record in arm_records.values())
        assert f"{arm} {seconds:.0f} s" in " ".join((folder / "README.md").read_text().split())
    check_runs(folder, records)
    rows = analysis.verdict_rows({arm: (summary["collapsed"], summary["runs"]) for arm, summary in summaries.items()})
    committed = json.loads((folder / "analysis.json").read_text())
    assert close(json.loads(json.dumps({"hypotheses": rows, "arms": summaries})), committed)
    assert "\n".join(analysis.describe(rows, summaries)) in (folder / "analysis.md").read_text()
    readme = " ".join((folder / "README.md").read_text().split())
    for row in rows:
        (control, control_runs), (treated, runs) = row["control"], row["treated"]
        low, high = row["treated_interval"]
        assert f"**{row['hypothesis']} " in readme and f"{row['verdict']}.**" in readme
        assert f"{treated} of {runs} runs collapsed (95 % CI {100 * low:.0f} to {100 * high:.0f} %)" in readme
        assert f"against {control} of {control_runs}" in readme
        assert f"Holm {row['p_predicted_holm']:.2g}" in readme
    assert {record["code"]["commit"][:7] for record in records.values()} == {"8cf9d51"}
    first = min(record["started"] for record in records.values())
    assert f"run started {first[11:19]} UTC" in readme


def test_the_times_older_study_readmes_quote_are_their_run_records():
    """cpu-12-epochs' training minutes and cpu-bf16-check's, from `train_seconds` of their run
    records; cpu-crammer-singer's rerun starts; the sentences other READMEs write about
    cpu-crammer-singer, from its analysis."""
    import statistics

    def seconds(study: str) -> list[float]:
        return [json.loads(path.read_text())["train_seconds"]
                for path in sorted((STUDY.parent / study / "training").glob("*/run.json"))]

    def text(path: Path) -> str:
        return " ".join(path.read_text().split())

    twelve = seconds("cpu-12-epochs")
    assert len(twelve) == 18
    assert (f"the {sum(twelve) / 60:.1f} min of training and {statistics.mean(twelve) / 60:.1f} min per run"
            in text(STUDY.parent / "cpu-12-epochs/README.md"))
    assert f"12 epochs; {sum(twelve) / 60:.1f} minutes of training (its run records)" in text(
        STUDY.parent.parent.parent / "README.md")
    assert f"give {sum(seconds('cpu-bf16-check')) / 60:.1f} minutes of training for the 3 runs" in text(
        STUDY.parent / "cpu-bf16-check/README.md")
    folder = STUDY.parent / "cpu-crammer-singer"
    readme = text(folder / "README.md")
    for arm in ("relu-lr0.01", "relu-lr0.001"):
        first = min(json.loads(path.read_text())["started"] for path in (folder / arm / "training").glob("*/run.json"))
        assert first[11:19] in readme
    counts = {row["hypothesis"]: row for row in json.loads((folder / "analysis.json").read_text())["hypotheses"]}
    h1, h2 = counts["H1"], counts["H2"]
    init = text(STUDY.parent / "init-collapse/README.md")
    assert (f"without the ReLU on `conv_9` {h1['treated'][0]} of {h1['treated'][1]} runs collapsed against "
            f"{h1['control'][0]} of {h1['control'][1]} with it ({h1['verdict']}), at lr 0.001 "
            f"{h2['treated'][0]} of {h2['treated'][1]} ({h2['verdict']})") in init
    project = text(PROJECT_README)
    assert (f"without it, {h1['treated'][0]} of {h1['treated'][1]} collapsed (Holm p = {h1['p_predicted_holm']:.2g})"
            in project)
    assert (f"without the ReLU {h1['treated'][0]} of {h1['treated'][1]} runs collapsed against "
            f"{h1['control'][0]} of {h1['control'][1]} with it (Fisher one-sided p = {h1['p_predicted']:.2g}, "
            f"Holm {h1['p_predicted_holm']:.2g}: **{h1['verdict']}**); at lr 0.001 with it, "
            f"{h2['treated'][0]} of {h2['treated'][1]} (**{h2['verdict']}**)") in project


PROJECT_README = STUDY.parents[2] / "README.md"
