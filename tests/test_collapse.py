"""`lossbench collapse`: collapse rates with exact intervals and Fisher's test, by hand."""

import json

import pytest
from scipy import stats

from lossbench import cli
from lossbench.compare import collapse


def run_metrics(loss, seed, collapsed, accuracy):
    return {"loss": loss, "seed": seed, "collapsed": collapsed, "test_accuracy": accuracy}


def test_clopper_pearson_by_hand():
    # 0 of 10: the upper end is 1 - (alpha / 2) ** (1 / 10); 10 of 10 mirrors it.
    low, high = collapse.clopper_pearson(0, 10, 0.95)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 10))
    low, high = collapse.clopper_pearson(10, 10, 0.95)
    assert high == 1.0 and low == pytest.approx(0.025 ** (1 / 10))
    # k of n: the beta quantiles.
    low, high = collapse.clopper_pearson(3, 10, 0.95)
    assert low == pytest.approx(stats.beta.ppf(0.025, 3, 8))
    assert high == pytest.approx(stats.beta.ppf(0.975, 4, 7))


def test_collapse_table_and_report(tmp_path):
    groups = {
        "keras1": [run_metrics("categorical_crossentropy", seed, False, 0.3 + seed / 100) for seed in range(10)],
        "keras3": [run_metrics("categorical_crossentropy", seed, seed < 6, 0.1 if seed < 6 else 0.3)
                   for seed in range(10)],
    }
    paths = {}
    for group, runs in groups.items():
        paths[group] = []
        for run in runs:
            path = tmp_path / f"{group}-{run['seed']}.json"
            path.write_text(json.dumps(run))
            paths[group].append(str(path))
    params = tmp_path / "params.yaml"
    from test_train import write_params

    write_params(params)
    arguments = ["--params", str(params), "collapse", "--output", str(tmp_path / "out"),
                 "--title", "Init experiment", "--setup", "Ten seeds per cell."]
    for group, files in paths.items():
        arguments += ["--group", f"{group}={','.join(files)}"]
    assert cli.main(arguments) == 0

    table = json.loads((tmp_path / "out" / "collapse.json").read_text())
    keras3 = table["cells"]["categorical_crossentropy"]["keras3"]
    assert keras3["collapsed"] == 6 and keras3["runs"] == 10 and keras3["collapsed_seeds"] == [0, 1, 2, 3, 4, 5]
    assert keras3["mean_test_accuracy_not_collapsed"] == pytest.approx(0.3)
    assert table["cells"]["categorical_crossentropy"]["keras1"]["collapsed"] == 0
    [test] = table["tests"].values()
    assert test["p_value"] == pytest.approx(stats.fisher_exact([[0, 10], [6, 4]]).pvalue)
    text = (tmp_path / "out" / "collapse.md").read_text()
    assert "| `categorical_crossentropy` | keras3 | 10 | 6 | 60 % (26–88 %) | 30.0 % |" in text
    assert "0 of 10 runs collapsed with keras1, 6 of 10 with keras3" in text
    assert "a significant difference (p = 0.0108 < 0.05)" in text


def test_review_metrics_files_name_their_run(tmp_path):
    """reports/metrics/ holds numbers only (collapsed as 0/1): the run comes from the name."""
    path = tmp_path / "ova_hinge-seed3.json"
    path.write_text(json.dumps({"test_accuracy": 0.1, "collapsed": 1}))
    assert collapse.read_run(path) == {"loss": "ova_hinge", "seed": 3, "test_accuracy": 0.1, "collapsed": 1}
    table = collapse.run({"a": [path]}, tmp_path / "out", title="t", setup="s", confidence_level=0.95)
    assert table["cells"]["ova_hinge"]["a"]["collapsed"] == 1
