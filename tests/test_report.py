"""The report stage: the tables, the conclusions and the caveats follow the numbers of a
synthetic study of 3 losses x 3 seeds (tests/studies.py)."""

import json
import re

import numpy as np
import pytest
from scipy import stats

from lossbench import compare, figures, report
from lossbench.report import findings, paper_setup
from lossbench.report import tables as report_tables
from lossbench.report import text as report_text
from lossbench.report.hypotheses import hypotheses_section
from studies import PNG_SIGNATURE, STUDY, study_params, write_study

JPEG_COPY_SHA256 = "ff26949c34c4e67da3fa472a1f142e33365dea058f94f1fa369b14ef3d986968"


def table_rows(text: str, heading: str) -> dict[str, list[str]]:
    """{column name or loss: cells} of the table under `### heading` ("header" holds the names)."""
    lines = text.splitlines()
    start = lines.index(f"### {heading}") + 2
    rows = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if not set(line) <= set("|-"):
            rows["header" if not rows else cells[0].strip("`")] = cells
    return rows


def table_row(text: str, loss: str, heading: str = "Test accuracy") -> list[str]:
    return table_rows(text, heading)[loss]


def add_planned_fields(summary_path, metrics_paths) -> dict:
    """The summary with the per-loss fields compare is to provide, where it does not yet.

    `above_chance_runs` counts the runs whose `above_chance_p_value` (written by evaluate)
    is below alpha; `above_chance_across_seeds` is the one-sided one-sample t-test of the
    seeds' accuracies against chance (None with fewer than 2 runs).
    """
    summary = json.loads(summary_path.read_text())
    runs = [json.loads(path.read_text()) for path in metrics_paths]
    for loss, entry in summary["losses"].items():
        mine = [run for run in runs if run["loss"] == loss]
        entry.setdefault("above_chance_runs", sum(
            run["above_chance_p_value"] is not None and run["above_chance_p_value"] < summary["alpha"]
            for run in mine))
        accuracies = [run["test_accuracy"] for run in mine]
        chance = 1.0 / len(mine[0]["class_names"])
        # No spread (fewer than 2 runs, or equal accuracies) leaves the t-test undefined.
        entry.setdefault("above_chance_across_seeds", {"p_value": None if np.ptp(accuracies) == 0 else float(
            stats.ttest_1samp(accuracies, chance, alternative="greater").pvalue)})
    summary_path.write_text(json.dumps(summary))
    return summary


def write_report(root, study, figures_dir=None, dead=frozenset(), **data_changes) -> str:
    """The report of a synthetic study, its summary given the fields compare is to provide."""
    summary_path, metrics_paths, _ = write_study(root, study, dead=dead)
    add_planned_fields(summary_path, metrics_paths)
    if figures_dir is None:
        figures_dir = root / "figures"
        figures_dir.mkdir()
    params = study_params(**data_changes)
    return report.run(params["report"], summary_path, figures_dir, root / "report.md", params)


def test_report_has_the_tables_paper_columns_and_figure_links(rendered, tmp_path):
    root, rendered_summary, metrics_paths, _, output_dir = rendered
    summary_path = tmp_path / "summary.json"
    summary_path.write_text(rendered_summary.read_text())
    add_planned_fields(summary_path, metrics_paths)
    params = study_params(source="../shared/data/cifar10-jpeg.tar.gz", dataset="image_folder",
                          sha256=JPEG_COPY_SHA256, md5=None)
    output = root / "reports" / "report.md"
    text = report.run(params["report"], summary_path, output_dir, output, params)
    assert output.read_text() == text

    # Three tables, none wider than seven columns, so that each fits a screen.
    headings = ["Test accuracy", "Fit to the training data", "Convergence and failed runs"]
    for heading in headings:
        assert len(table_rows(text, heading)["header"]) <= 7, heading
    assert "Paper val. accuracy" in table_rows(text, "Test accuracy")["header"]
    assert "Paper train accuracy (running)" in table_rows(text, "Fit to the training data")["header"]
    assert "Epochs to 80 % val." in table_rows(text, "Convergence and failed runs")["header"]
    ce = table_row(text, "categorical_crossentropy")
    mean = np.mean(STUDY["categorical_crossentropy"])
    assert ce[1] == "3"
    assert ce[2].startswith(f"{100 * mean:.1f} % ± ")
    assert ce[3] == "3 of 3"  # every run beats chance by its binomial test
    # Width 0.1 and 6 epochs are not the paper's scale: no difference to its figures is given.
    assert ce[4] == "85 %" and ce[5] == "not comparable"
    assert "not comparable: this study ran at width 0.1" in text
    assert table_row(text, "categorical_crossentropy", "Fit to the training data")[4] == "91 %"
    convergence = table_rows(text, "Convergence and failed runs")
    assert convergence["categorical_crossentropy"][2] == "2.0" and convergence["squared_hinge"][2] == "6.0"
    assert convergence["hinge"][2] == "never"
    hinge = table_row(text, "hinge")
    assert hinge[4] == "55 %" and table_row(text, "squared_hinge")[4] == "82 %"
    # Ranked rows: best first in every table.
    assert list(table_rows(text, "Test accuracy"))[1:] == ["categorical_crossentropy", "squared_hinge", "hinge"]

    for name in ("loss_shapes", "test_accuracy", "validation_accuracy", "per_loss/curves_hinge",
                 "per_loss/confusion_hinge"):
        assert f"](figures/{name}.png)" in text
        assert (output.parent / "figures" / f"{name}.png").is_file()
    assert "Not rendered" not in text
    assert ("| Dataset | CIFAR-10, JPEG copy (quality 75) from `../shared/data/cifar10-jpeg.tar.gz` "
            "(`preprocess.dataset: image_folder`) |") in text
    assert "not the official archive" in text and "measured on that copy" in text
    assert "far shorter than the paper's 100" in text
    assert "width 0.1" in text and "13,000 parameters" in text
    assert "CPU: synthetic" in text and "keras 3.15.1" in text
    assert re.search(r"Produced by `.+` with lossbench \S+, Python", text)


def test_the_dataset_row_names_cifar10_and_its_copy():
    params = study_params()
    assert report.dataset_text(params) == (
        "CIFAR-10, official python release from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz "
        "(`preprocess.dataset: cifar10`)")
    params = study_params(source="/data/other.tar.gz", dataset="image_folder", sha256="ab" * 32, md5=None)
    assert report.dataset_text(params) == (
        "CIFAR-10, image-folder copy from `/data/other.tar.gz` (`preprocess.dataset: image_folder`)")
    params = study_params(source="/data/cifar-10-python.tar.gz")
    assert report.dataset_text(params).startswith("CIFAR-10, python release, local copy from `/data/")


def test_conclusions_follow_the_numbers(tmp_path):
    text = write_report(tmp_path / "a", STUDY)
    assert "**`categorical_crossentropy` has the highest mean test accuracy**" in text
    assert "significantly higher than `squared_hinge`" in text
    assert ("The paper's ranking (`categorical_crossentropy` > `squared_hinge` > `hinge`) is "
            "reproduced: every pairwise difference is significant.") in text
    assert "Fastest to 80 % validation accuracy: `categorical_crossentropy`" in text
    assert "final ReLU layer" not in text and "dead final layer" not in text

    swapped = dict(STUDY, hinge=[0.90, 0.91, 0.92])
    text = write_report(tmp_path / "b", swapped)
    assert "**`hinge` has the highest mean test accuracy**" in text
    assert "**`categorical_crossentropy` has the highest" not in text
    assert "is not reproduced: ours is `hinge` > `categorical_crossentropy` > `squared_hinge`" in text

    close = dict(STUDY, squared_hinge=[0.87, 0.84, 0.86])
    text = write_report(tmp_path / "c", close)
    assert "not significantly different from `squared_hinge`" in text


def test_one_seed_gives_no_significance_test_and_notes_missing_figures(tmp_path):
    one_seed = {loss: accuracies[:1] for loss, accuracies in STUDY.items()}
    text = write_report(tmp_path, one_seed)
    assert "Fewer than 3 seeds shared by any two losses: no significance test" in text
    assert "Paired t-tests" not in text
    # One run per loss: no bold claim, and the ranking says what it rests on.
    assert "**`categorical_crossentropy` has the highest" not in text
    assert ("`categorical_crossentropy` has the highest mean test accuracy: 86.0 % (n = 1). Then "
            "`squared_hinge` 80.0 %, `hinge` 53.0 %. This ranking rests on one run per loss and is "
            "not tested.") in text
    assert "tests above" not in text
    assert table_row(text, "hinge")[2] == "53.0 %"  # no interval with one seed
    assert "Not rendered: loss_shapes.png" in text
    assert "downloaded from https://www.cs.toronto.edu" in text
    assert "not the official archive" not in text


def test_report_names_missing_inputs(tmp_path):
    params = study_params()
    with pytest.raises(FileNotFoundError, match="lossbench compare"):
        report.run(params["report"], tmp_path / "absent.json", tmp_path, tmp_path / "r.md", params)
    (tmp_path / "summary.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="lossbench figures"):
        report.run(params["report"], tmp_path / "summary.json", tmp_path / "nope", tmp_path / "r.md", params)
    with pytest.raises(ValueError, match="not a summary"):
        report.run(params["report"], tmp_path / "summary.json", tmp_path, tmp_path / "r.md", params)


def test_ties_and_chance_level_are_stated(tmp_path):
    study = {
        "categorical_crossentropy": [0.86, 0.85, 0.875],
        "hinge": [0.10, 0.105, 0.095],  # chance for 10 classes
        "squared_hinge": [0.86, 0.85, 0.875],
    }
    text = write_report(tmp_path, study)
    assert "**`categorical_crossentropy`, `squared_hinge` tie for the highest mean test accuracy**" in text
    bullet = next(line for line in text.splitlines() if line.startswith("- Runs above chance"))
    assert bullet.startswith("- Runs above chance, 10.0 % for 10 classes (exact one-sided binomial "
                             "test of each run's correct test images, α = 0.05): ")
    assert "`categorical_crossentropy` 3 of 3 runs; `squared_hinge` 3 of 3 runs; `hinge` 0 of 3 runs." in bullet
    assert bullet.endswith("Not above chance in any run: `hinge` (0 of 3).")
    # Issue 32: the report's first finding, before the setup, says whether anything learned.
    lines = text.splitlines()
    learned = next(index for index, line in enumerate(lines) if line.startswith("**Did the models learn?**"))
    assert learned < lines.index("## Setup")
    assert lines[learned].endswith("Not above chance in any run: `hinge` (0 of 3).")
    assert "not significantly different from `squared_hinge`" in text
    # A loss at chance and a tie: the ranking can be neither reproduced nor refuted.
    assert "is not testable at this scale: `hinge` did not rise above chance in any run" in text
    assert "is reproduced" not in text and "is not reproduced" not in text


def test_a_diverged_run_is_drawn_and_reported(tmp_path):
    summary_path, metrics_paths, log_dirs = write_study(tmp_path, STUDY, diverged=("hinge", 2))
    summary = json.loads(summary_path.read_text())
    assert summary["losses"]["hinge"]["diverged_seeds"] == [2]
    assert summary["losses"]["hinge"]["test_accuracy"]["mean"] == pytest.approx((0.53 + 0.56 + 0.0) / 3)
    written = figures.run(summary_path, metrics_paths, log_dirs, tmp_path / "figures")
    assert all(path.read_bytes()[:8] == PNG_SIGNATURE for path in written)
    params = study_params()
    text = report.run(params["report"], summary_path, tmp_path / "figures", tmp_path / "report.md", params)
    assert "Diverged runs" in text and "`hinge` (seed 2)" in text


def test_runs_with_a_dead_final_layer_are_named_not_blamed_on_the_loss(tmp_path):
    study = {
        "categorical_crossentropy": [0.10, 0.60, 0.62],   # seed 0: final layer dead
        "hinge": [0.53, 0.56, 0.545],
        "squared_hinge": [0.10, 0.10, 0.10],               # every seed dead
    }
    dead = frozenset({("categorical_crossentropy", 0)} | {("squared_hinge", seed) for seed in range(3)})
    text = write_report(tmp_path, study, dead=dead)
    bullet = next(line for line in text.splitlines() if "final ReLU layer" in line)
    assert ("**4 runs lost their final ReLU layer** (at least 99 % of the last convolution's "
            "activations on the test images zero, `evaluate.dead_layer_share`): "
            "`categorical_crossentropy` (seed 0): 100.00 % of conv_9's activations are zero; "
            "`squared_hinge` (seeds 0, 1, 2): 100.00 % of conv_9's activations are zero.") in bullet
    assert "not evidence about the loss" in bullet
    summary = json.loads((tmp_path / "summary.json").read_text())
    alive = summary["losses"]["categorical_crossentropy"]["test_accuracy_alive"]
    assert alive["n"] == 2 and alive["mean"] == pytest.approx(0.61)
    assert f"`categorical_crossentropy` {report_text.accuracy_with_interval(alive)} (n = 2)" in bullet
    assert bullet.rstrip().endswith("`squared_hinge`: none remain.")
    assert "`hinge`" not in bullet
    # Cross-entropy's two live runs beat chance, so the loss is not called "not above chance"
    # (its t interval over 0.10, 0.60 and 0.62 reaches down to chance, which the old rule took
    # for a loss at chance). The chance bullet points squared hinge at its dead layers.
    assert "`categorical_crossentropy` 2 of 3 runs" in text
    assert "Not above chance in any run: `squared_hinge` (0 of 3; 3 with a dead final layer, below)." in text
    assert "`categorical_crossentropy` (0 of" not in text


def test_a_ranking_without_significant_differences_is_not_testable(tmp_path):
    close = dict(STUDY, squared_hinge=[0.87, 0.84, 0.86])
    text = write_report(tmp_path, close)
    line = next(line for line in text.splitlines() if "The paper's ranking" in line)
    assert "is not testable at this scale: ours is `categorical_crossentropy` > `squared_hinge` > `hinge`" in line
    assert "`categorical_crossentropy` vs `squared_hinge`: " in line and "Holm-adjusted p = " in line


def test_differences_to_the_paper_only_at_the_papers_scale(tmp_path):
    summary_path, _, _ = write_study(tmp_path, STUDY)
    summary = json.loads(summary_path.read_text())
    params = study_params()
    assert paper_setup.paper_scale_gaps(summary, params) == [
        "width 0.1 (13,000 parameters)", "6 epochs", "400 training images", "200 test images"]
    params["model"]["width"] = 1.0
    summary["setup"].update(model_parameters=[1_376_148], epochs_planned=[100],
                            train_size=[50_000], test_size=[10_000])
    assert paper_setup.paper_scale_gaps(summary, params) == []
    table = report_tables.results_tables(summary, params["report"]["paper"], params)
    ce = next(line for line in table if line.startswith("| `categorical_crossentropy` |"))
    mean = np.mean(STUDY["categorical_crossentropy"])
    assert f"| {100 * (mean - 0.85):+.1f} pp |" in ce
    bullets = "\n".join(findings.conclusions(summary, params["report"]["paper"], params))
    assert "Test accuracy minus the paper's validation accuracy: `categorical_crossentropy` " in bullets


def test_intervals_are_clipped_to_the_possible_accuracies():
    wide = {"n": 3, "mean": 0.136, "std": 0.06, "ci_low": -0.017, "ci_high": 0.289}
    assert report_text.accuracy_with_interval(wide) == "13.6 % (0.0–28.9 %)"
    narrow = {"n": 3, "mean": 0.5, "std": 0.01, "ci_low": 0.49, "ci_high": 0.51}
    assert report_text.accuracy_with_interval(narrow) == "50.0 % ± 1.0"


def test_collapsed_runs_are_counted_with_both_means(tmp_path):
    study = {"categorical_crossentropy": [0.10, 0.60, 0.62], "hinge": [0.53, 0.56, 0.545]}
    summary_path, metrics_paths, _ = write_study(tmp_path, study)
    # Make seed 0 of cross-entropy a collapsed run, as evaluate marks one.
    path = next(path for path in metrics_paths if path.name == "categorical_crossentropy-seed0.json")
    metrics = json.loads(path.read_text())
    metrics.update(collapsed=True, top_predicted_class_share=1.0)
    path.write_text(json.dumps(metrics))
    compare.run({"confidence_level": 0.95}, metrics_paths, summary_path)
    add_planned_fields(summary_path, metrics_paths)
    params = study_params()
    text = report.run(params["report"], summary_path, tmp_path, tmp_path / "report.md", params)
    bullet = next(line for line in text.splitlines() if "collapsed**" in line)
    assert bullet.startswith("- **1 run collapsed** (one class predicted for at least 90 % of the test images): "
                             "`categorical_crossentropy` 1 of 3 (seed 0).")
    assert "`categorical_crossentropy` 44.0 % (0.0–100.0 %) with them, 61.0 % ± 12.7 (n = 2) without" in bullet
    # Three seeds each: the paired tests ran, and the bullet says they include the run.
    assert "The ranking and the paired tests include these runs" in bullet and "tests above" not in bullet
    row = table_row(text, "categorical_crossentropy", "Convergence and failed runs")
    assert row[4] == "1 of 3" and row[5].startswith("61.0 % ± ")
    assert table_row(text, "hinge", "Convergence and failed runs")[4] == "0 of 3"
    # The collapsed run is the one below chance; the two others beat it.
    assert "`categorical_crossentropy` 2 of 3 runs" in text and "Not above chance in any run" not in text


# ---------------------------------------------------------------------------------------------
# The pre-registered hypotheses.
# ---------------------------------------------------------------------------------------------


def hypothesis(loss_a, loss_b, verdict, difference=0.03, n=5, **fields):
    """One pre-registered pair as compare writes it (fractions; a - b)."""
    pair = {"loss_a": loss_a, "loss_b": loss_b, "n": n, "tested": verdict != "not tested",
            "mean_difference": difference, "ci_low": difference - 0.02, "ci_high": difference + 0.02,
            "effect_size": 1.234, "p_value": 0.01, "p_value_holm": 0.02, "equivalence_p_value": 0.6,
            "verdict": verdict, "minimum_detectable_difference": 0.043}
    pair.update(fields)
    return pair


HYPOTHESES = {
    "alpha": 0.05, "equivalence_margin": 0.02, "power": 0.8,
    "pairs": [
        hypothesis("categorical_crossentropy", "squared_hinge", "reproduced"),
        hypothesis("squared_hinge", "hinge", "reversed", difference=-0.05),
        hypothesis("categorical_crossentropy", "ova_hinge", "equivalent", difference=0.004,
                   equivalence_p_value=0.01, p_value_holm=0.8),
        hypothesis("ova_squared_hinge", "ova_hinge", "inconclusive", difference=0.01, p_value_holm=0.4,
                   equivalence_p_value=0.3),
        hypothesis("categorical_crossentropy", "crammer_singer_hinge", "not tested", n=5, mean_difference=None,
                   ci_low=None, ci_high=None, effect_size=None, p_value=None, p_value_holm=None,
                   equivalence_p_value=None, minimum_detectable_difference=None),
        hypothesis("hinge", "ova_hinge", "not tested", n=2, mean_difference=None, ci_low=None, ci_high=None,
                   effect_size=None, p_value_holm=None, equivalence_p_value=None),
    ],
    "untrainable_losses": {"crammer_singer_hinge": "It collapsed to one class in every run."},
}


def test_the_hypotheses_section_has_a_table_and_a_sentence_per_verdict():
    lines = hypotheses_section({"confidence_level": 0.95, "alpha": 0.05, "hypotheses": HYPOTHESES})
    text = "\n".join(lines)
    assert lines[0] == "## Pre-registered hypotheses"
    header = next(line for line in lines if line.startswith("| Paper's claim"))
    assert header == "| Paper's claim | n | Difference a − b (95 % CI) | d_z | Holm p | TOST p | Verdict |"
    assert ("| `categorical_crossentropy` > `squared_hinge` | 5 | +3.0 pp (+1.0 pp to +5.0 pp) | 1.23 | "
            "p = 0.020 | p = 0.600 | reproduced |") in lines
    assert "| `hinge` > `ova_hinge` | 2 | — | — | — | — | not tested |" in lines
    assert ("- `categorical_crossentropy` > `squared_hinge`: reproduced. `categorical_crossentropy` is "
            "significantly higher (a − b = +3.0 pp, 95 % CI +1.0 pp to +5.0 pp, Holm-adjusted p = 0.020, "
            "n = 5).") in lines
    assert "- `squared_hinge` > `hinge`: reversed. `hinge` is significantly higher, against the paper's claim" in text
    assert ("- `categorical_crossentropy` > `ova_hinge`: not reproduced. The two are equivalent within "
            "±2.0 points (TOST p = 0.010; a − b = +0.4 pp") in text
    inconclusive = next(line for line in lines if "inconclusive." in line)
    assert inconclusive.endswith("with n = 5 the study could have detected a difference of 4.3 points at 80 % power.")
    assert "neither significant nor shown to lie within ±2.0 points (TOST p = 0.300)" in inconclusive
    assert ("- `categorical_crossentropy` > `crammer_singer_hinge`: not tested. `crammer_singer_hinge` is "
            "untrainable here. It collapsed to one class in every run.") in lines
    assert "- `hinge` > `ova_hinge`: not tested. 2 shared seeds, at least 3 needed." in lines
    assert ("- `crammer_singer_hinge` is untrainable here, so left out of the ranking. It collapsed to one "
            "class in every run.") in lines
    assert hypotheses_section({"losses": {}}) == []


def test_an_inconclusive_pair_without_a_detectable_difference_says_so():
    pair = hypothesis("a", "b", "inconclusive", minimum_detectable_difference=None)
    text = "\n".join(hypotheses_section({"confidence_level": 0.95,
                                          "hypotheses": dict(HYPOTHESES, pairs=[pair], power=0.9)}))
    assert "the smallest difference it could have detected at 90 % power is unknown" in text


def test_the_report_renders_the_hypotheses_before_the_conclusions(tmp_path):
    summary_path, metrics_paths, _ = write_study(tmp_path, STUDY)
    summary = add_planned_fields(summary_path, metrics_paths)
    summary["hypotheses"] = dict(HYPOTHESES, pairs=HYPOTHESES["pairs"][:1], untrainable_losses={
        "hinge": "Its loss did not fall in any run."})
    summary_path.write_text(json.dumps(summary))
    params = study_params()
    text = report.run(params["report"], summary_path, tmp_path, tmp_path / "report.md", params)
    assert text.index("## Pre-registered hypotheses") < text.index("## Conclusions")
    ranking = next(line for line in text.splitlines() if "has the highest mean test accuracy" in line)
    assert "Then `squared_hinge` 80.8 %." in ranking
    assert ranking.endswith("`hinge` is left out of the ranking as untrainable here: Its loss did not fall in any run.")


def test_the_fit_table_keeps_the_running_accuracy_apart_from_training_accuracy():
    entry = {"runs": 3, "test_accuracy": {"n": 3, "mean": 0.6, "std": 0.01, "ci_low": 0.59, "ci_high": 0.61},
             "train_accuracy": {"n": 3, "mean": 0.7}, "generalization_gap": {"n": 3, "mean": 0.1},
             "running_accuracy": {"n": 3, "mean": 0.65}}
    data = {"losses": {"a": entry}, "setup": {"train_accuracy_images": [2000]}}
    lines = report_tables.fit_table(data, {"a": {"train_accuracy": 0.91}}, gaps=[])
    assert lines[0] == ("| Loss | Train accuracy (no augmentation) | Gap train − test | Running accuracy on "
                        "augmented batches | Paper train accuracy (running) | Δ running − paper |")
    assert lines[2] == "| `a` | 70.0 % | +10.0 pp | 65.0 % | 91 % | -26.0 pp |"
    assert "accuracy on 2,000 training images it trained on, predicted without augmentation" in lines[-1]
    assert "it is not the model's training accuracy" in lines[-1]
    row = report_tables.accuracy_row("a", dict(entry, above_chance_runs=2,
                                               initial_output_gradient_scale={"n": 3, "mean": 0.0032}), {}, [])
    assert row[3] == "2 of 3" and row[6] == "0.0032"


def test_the_report_shows_calibration_label_noise_and_the_hinge_as_mae(rendered, tmp_path):
    root, rendered_summary, metrics_paths, _, output_dir = rendered
    summary_path = tmp_path / "summary.json"
    summary_path.write_text(rendered_summary.read_text())
    add_planned_fields(summary_path, metrics_paths)
    params = study_params()
    text = report.run(params["report"], summary_path, output_dir, root / "reports" / "report.md", params)
    rows = table_rows(text, "Calibration")
    assert rows["header"] == ["Loss", "Probabilities", "ECE", "NLL", "Brier", "Temperature",
                              "ECE after temperature"]
    assert list(rows)[1:] == ["categorical_crossentropy", "squared_hinge", "hinge"]  # ranked
    runs = [json.loads(path.read_text()) for path in metrics_paths]
    hinge_ece = [run["test_ece"] for run in runs if run["loss"] == "hinge"]
    assert rows["hinge"][1] == "softmax outputs"
    assert rows["hinge"][2].startswith(f"{np.mean(hinge_ece):.3f} ± ")
    assert "fitted by NLL on a stratified `evaluate.temperature_fraction` of the training images" in text
    assert "](figures/per_loss/reliability_hinge.png)" in text
    assert "0.9 + 0.05 · MAE" in text and "Ghosh et al. (2017)" in text
    assert "| Training labels | clean (`preprocess.label_noise: 0`, as in the paper); test labels clean |" in text

    summary = json.loads(summary_path.read_text())
    summary["setup"]["label_noise"] = [0.4]
    summary_path.write_text(json.dumps(summary))
    params["preprocess"]["label_noise"] = 0.4
    noisy = report.run(params["report"], summary_path, output_dir, tmp_path / "noisy.md", params)
    assert ("| Training labels | 40.00 % replaced by a wrong class (`preprocess.label_noise: 0.4`, "
            "symmetric); test labels clean |") in noisy
    assert "40.00 % of the training labels were replaced by wrong classes" in noisy
    assert "fitted on the noisy training labels (40.0 % of them wrong)" in noisy


def test_no_calibration_table_for_evaluations_without_it():
    summary = {"losses": {"hinge": {"test_accuracy": {"mean": 0.5}}}}
    from lossbench.report.calibration import calibration_section, hinge_as_mae_note

    assert calibration_section(summary, ["hinge"]) == []
    summary["setup"] = {"num_classes": [3]}
    assert "for 3 classes mean_k max(0, 1 - y_k p_k) = 0.666667 + 0.166667 · MAE" in hinge_as_mae_note(summary)
    assert hinge_as_mae_note({"losses": {"mae": {}}}) is None


def test_the_calibration_table_flags_collapsed_runs_bound_temperatures_and_worse_scaling():
    """Issues 30 and 32: a collapsed model topped the calibration table without a word, a
    temperature at its bound (100) was not labelled, and scaling that made CE's ECE worse at
    40 % noise (0.162 -> 0.177) went unreported."""
    from lossbench.report.calibration import calibration_flags, calibration_section

    def stats(mean, low=None, high=None):
        return {"n": 3, "mean": mean, "ci_low": mean if low is None else low,
                "ci_high": mean if high is None else high}

    losses = {
        "categorical_crossentropy": {"runs": 3, "collapsed_runs": 0, "test_ece": stats(0.162),
                                     "test_ece_after_temperature": stats(0.177),
                                     "temperature": stats(1.09, 1.04, 1.13)},
        "mae": {"runs": 3, "collapsed_runs": 3, "test_ece": stats(0.001),
                "test_ece_after_temperature": stats(0.0009), "temperature": stats(99.99999, 99.9999, 100.0)},
        "hinge": {"runs": 3, "collapsed_runs": 0, "test_ece": stats(0.5),
                  "test_ece_after_temperature": stats(0.05), "temperature": stats(0.2, 0.1, 0.3)},
    }
    order = list(losses)
    assert calibration_flags(losses, order) == [
        "`categorical_crossentropy`: temperature scaling made its test ECE worse (0.162 → 0.177).",
        "`mae`: 3 of 3 runs collapsed to one class; their calibration measures the collapse, not the loss.",
        "`mae`: the fitted temperature reaches the fit's bound, so no temperature fits its scores; "
        "leave it out of any range of temperatures or of scaled ECEs.",
    ]
    summary = {"losses": losses, "confidence_level": 0.95, "setup": {}}
    lines = calibration_section(summary, order)
    mae_row = next(line for line in lines if line.startswith("| `mae`"))
    assert "(3 of 3 runs collapsed)" in mae_row and "(at its bound)" in mae_row
    assert "(at its bound)" not in next(line for line in lines if line.startswith("| `hinge`"))
    assert "- `mae`: 3 of 3 runs collapsed to one class" in "\n".join(lines)



def test_the_first_finding_says_whether_the_models_learned():
    """Every run above chance, some not, and a summary that does not count them: three
    sentences, each from the summary's own counts."""
    every = {"runs": 2, "above_chance_runs": 2, "test_accuracy": {"mean": 0.3}}
    line = report.learned_line({"losses": {"hinge": every}, "alpha": 0.05, "setup": {"num_classes": [10]}})
    assert line == ("**Did the models learn?** Every run is above chance, 10.0 % for 10 classes (2 runs; "
                    "exact one-sided binomial test of each run's correct test images, α = 0.05).")
    uncounted = report.learned_line({"losses": {"hinge": {"runs": 2, "test_accuracy": {"mean": 0.3}}}})
    assert uncounted.startswith("**Did the models learn?** Unknown: ")


def test_the_model_row_names_a_final_convolution_that_is_not_the_papers():
    assert report.final_convolution_text({"model": {"final_convolution_activation": "relu"}}) == ""
    assert report.final_convolution_text({}) == ""
    assert report.final_convolution_text({"model": {"final_convolution_activation": "linear"}}) == (
        "; final convolution linear, not the paper's ReLU (`model.final_convolution_activation`)")
