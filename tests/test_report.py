"""The report stage: the table, the conclusions and the caveats follow the numbers of a
synthetic study of 3 losses x 3 seeds (tests/studies.py)."""

import json
import re

import numpy as np
import pytest

from lossbench import compare, figures, findings, paper_setup, report, report_text
from studies import PNG_SIGNATURE, STUDY, study_params, write_report, write_study


def table_row(text: str, loss: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| `{loss}` |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_report_has_the_table_paper_columns_and_figure_links(rendered, tmp_path):
    root, summary_path, _, _, output_dir = rendered
    params = study_params(source="../shared/data/cifar10-jpeg.tar.gz", dataset="image_folder")
    output = root / "reports" / "report.md"
    text = report.run(params["report"], summary_path, output_dir, output, params)
    assert output.read_text() == text

    header = next(line for line in text.splitlines() if line.startswith("| Loss |"))
    assert "Paper val. accuracy" in header and "Paper train accuracy" in header and "Epochs to 80 %" in header
    ce = table_row(text, "categorical_crossentropy")
    mean = np.mean(STUDY["categorical_crossentropy"])
    assert ce[1] == "3"
    assert ce[2].startswith(f"{100 * mean:.1f} % ± ")
    # Width 0.1 and 6 epochs are not the paper's scale: no difference to its figures is given.
    assert ce[3] == "85 %" and ce[4] == "not comparable" and ce[7] == "not comparable"
    assert "not comparable: this study ran at width 0.1" in text
    assert ce[6] == "91 %"
    assert ce[9] == "2.0" and table_row(text, "squared_hinge")[9] == "6.0"
    hinge = table_row(text, "hinge")
    assert hinge[3] == "55 %" and hinge[9] == "never"
    assert table_row(text, "squared_hinge")[3] == "82 %"

    for name in ("loss_shapes", "test_accuracy", "validation_accuracy", "curves_hinge", "confusion_hinge"):
        assert f"](figures/{name}.png)" in text
        assert (output.parent / "figures" / f"{name}.png").is_file()
    assert "Not rendered" not in text
    assert "not the official archive" in text and "measured on that copy" in text
    assert "far shorter than the paper's 100" in text
    assert "width 0.1" in text and "13,000 parameters" in text
    assert "CPU: synthetic" in text and "keras 3.15.1" in text
    assert re.search(r"Produced by `.+` with lossbench \S+, Python", text)


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
    assert "Not above chance (10.0 % for 10 classes): `hinge`." in text
    assert "not significantly different from `squared_hinge`" in text
    # A loss at chance and a tie: the ranking can be neither reproduced nor refuted.
    assert "is not testable at this scale: `hinge` did not rise above chance" in text
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
    assert "**4 runs lost their final ReLU layer**: `categorical_crossentropy` (seed 0), `squared_hinge` (seeds 0, 1, 2)." in bullet
    assert "all 10 class-score units of the last convolution (`conv_9`" in bullet
    assert "output 0 on every test image" in bullet and "chance (10.0 % for 10 classes)" in bullet
    assert "not evidence about the loss" in bullet
    summary = json.loads((tmp_path / "summary.json").read_text())
    alive = summary["losses"]["categorical_crossentropy"]["test_accuracy_alive"]
    assert alive["n"] == 2 and alive["mean"] == pytest.approx(0.61)
    assert f"`categorical_crossentropy` {report_text.accuracy_with_interval(alive)} (n = 2)" in bullet
    assert bullet.rstrip().endswith("`squared_hinge`: none remain.")
    assert "`hinge`" not in bullet
    # The chance-level bullet points at the dead layers instead of leaving the loss blamed.
    # (categorical_crossentropy's interval, over 0.10, 0.60 and 0.62, reaches down to chance too.)
    assert (
        "Not above chance (10.0 % for 10 classes): `categorical_crossentropy` (1 of 3 runs with a dead "
        "final layer, below), `squared_hinge` (3 of 3 runs with a dead final layer, below)."
    ) in text


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
    table = report.results_table(summary, params["report"]["paper"], params)
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
    params = study_params()
    text = report.run(params["report"], summary_path, tmp_path, tmp_path / "report.md", params)
    bullet = next(line for line in text.splitlines() if "collapsed**" in line)
    assert bullet.startswith("- **1 run collapsed** (one class predicted for at least 90 % of the test images): "
                             "`categorical_crossentropy` 1 of 3 (seed 0).")
    assert "`categorical_crossentropy` 44.0 % (0.0–100.0 %) with them, 61.0 % ± 12.7 (n = 2) without" in bullet
    row = table_row(text, "categorical_crossentropy")
    assert row[11] == "1 of 3" and row[12].startswith("61.0 % ± ")
    assert table_row(text, "hinge")[11] == "0 of 3"
    assert "(1 of 3 runs collapsed, below)" in text
