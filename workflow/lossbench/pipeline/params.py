"""Read and validate params.yaml, the only source of experiment values.

In: a path to params.yaml. Out: a plain nested dict, validated against
``workflow/schemas/params.schema.yaml`` with the schema's defaults filled in.

This module must stay light: Snakemake imports it while parsing the workflow, and
``snakemake -n`` must not pay for importing TensorFlow.

Which keys each stage reads is the stage table's (`lossbench.pipeline.stages`, each stage's
``params``); ``TRAIN_KEYS``, the keys that make a training's settings
(`lossbench.train.training.TrainConfig`, one field per key), is here because the stage
table and the training code both read it. (This module is no stage's code dependency,
lossbench.pipeline.sources says why: rewording it retrains nothing.)
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "params.schema.yaml"

# Set by the Snakefile to `params_digest` of the values its DAG was built from; every
# `lossbench` stage under that Snakemake run checks that params.yaml still holds them.
DAG_DIGEST_VARIABLE = "LOSSBENCH_DAG_PARAMS"

TRAIN_KEYS = (
    "model.width",
    "model.init",
    "model.stride2_padding",
    "model.final_convolution_activation",
    "train.epochs",
    "train.batch_size",
    "train.learning_rate",
    "train.decay",
    "train.momentum",
    "train.nesterov",
    "train.shift_fraction",
    "train.horizontal_flip",
    "train.shuffle",
    "train.validation",
    "train.holdout_fraction",
    "train.precision",
    "train.steps_per_execution",
    "train.device",
    "train.jit_compile",
    "train.deterministic",
)


# Before each stage had its own section, download and preprocess shared one, `data:`. It is no
# longer read: beside the new sections it could disagree with them (DVC reads only the new
# ones), so a params.yaml that has it is refused with where each of its keys now lives.
MOVED_DATA_KEYS = {
    "url": "download", "md5": "download", "sha256": "download", "source": "download",
    "dataset": "preprocess", "train_size": "preprocess", "test_size": "preprocess",
    "subset_seed": "preprocess",
    # Newer than the split, but a data: section that sets them means preprocess's too.
    "label_noise": "preprocess", "label_noise_mode": "preprocess",
}


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or holds a value the schema does not allow."""


def load_schema() -> dict:
    if not SCHEMA_PATH.is_file():
        raise ParamsError(
            f"The params schema {SCHEMA_PATH} is missing. Install lossbench from a checkout "
            "with `pip install -e .` so that workflow/schemas/ sits beside the package."
        )
    with SCHEMA_PATH.open() as handle:
        return yaml.safe_load(handle)


def _fill_defaults(value: Any, schema: dict) -> Any:
    """Return value with the schema's `default`s filled in for missing object properties."""
    if isinstance(value, dict) and schema.get("type") == "object":
        filled = dict(value)
        for key, subschema in schema.get("properties", {}).items():
            if key not in filled and "default" in subschema:
                filled[key] = copy.deepcopy(subschema["default"])
            if key in filled:
                filled[key] = _fill_defaults(filled[key], subschema)
        return filled
    return value


def with_defaults(section: str, values: dict) -> dict:
    """`values` of one params.yaml section with the schema's defaults filled in: for callers
    that build a section by hand (tests, studies) rather than load params.yaml."""
    subschema = load_schema()["properties"][section]
    return _fill_defaults(dict(values), subschema)


def _key_path(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _did_you_mean(given: Any, allowed: Iterable[str]) -> str:
    """" Did you mean 'x'?" for the allowed word closest to a misspelt one (difflib), or ""."""
    import difflib

    if not isinstance(given, str):
        return ""
    close = difflib.get_close_matches(given, list(allowed), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def _explain(error) -> str:
    """Turn one jsonschema error into a sentence naming the key and what is allowed."""
    where = _key_path(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        names = ", ".join(f"{where}.{name}" if where != "(top level)" else name for name in extra)
        hint = f" Allowed keys here: {', '.join(allowed)}." if allowed else ""
        guesses = "".join(_did_you_mean(name, allowed) for name in extra)
        return f"unknown key {names}: remove it or check its spelling.{guesses}{hint}"
    if error.validator == "enum":
        allowed = list(map(str, schema["enum"]))
        return (f"{where} is {error.instance!r}; allowed values: {', '.join(allowed)}."
                f"{_did_you_mean(error.instance, allowed)}")
    if error.validator == "type":
        expected = schema.get("type")
        return (f"{where} is {error.instance!r} ({type(error.instance).__name__}); expected "
                f"{expected}.{_number_hint(error.instance)}")
    if error.validator in ("anyOf", "oneOf"):
        return f"{where}: {error.message}.{_number_hint(error.instance)}"
    if error.validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        bound = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}
        return (
            f"{where} is {error.instance!r}; it must be {bound[error.validator]} "
            f"{error.validator_value}."
        )
    if error.validator == "required":
        return f"{where} lacks a required key: {error.message}."
    return f"{where}: {error.message}."


def _number_hint(value: Any) -> str:
    """How to write a number that YAML or the schema read otherwise than meant, or ""."""
    if isinstance(value, float) and value.is_integer():
        return f" Write a whole number without the decimal point: {int(value)}."
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ""
        return (f" YAML reads {value!r} as text: a number with an exponent needs a dot and a "
                f"signed exponent (1.0e-3, not 1e-3), or write it plainly (0.001).")
    return ""


def _validator(schema: dict):
    """Draft 2020-12 with "integer" meaning a whole number written as one: jsonschema takes
    2.0 for an integer, which then reaches `range(2.0)` or a command line as "2.0"."""
    import jsonschema
    from jsonschema import validators

    checker = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool))
    return validators.extend(jsonschema.Draft202012Validator, type_checker=checker)(schema)


def validate_params(params: Any, source: str = "params.yaml") -> dict:
    """Validate a params mapping; return it with defaults filled, or raise ParamsError."""
    schema = load_schema()
    if not isinstance(params, dict):
        raise ParamsError(f"{source} must hold a mapping of sections, found {type(params).__name__}.")
    _refuse_data_section(params, source)
    _refuse_non_finite(params, source)
    validator = _validator(schema)
    errors = sorted(validator.iter_errors(params), key=lambda error: list(error.absolute_path))
    if errors:
        lines = "\n".join(f"  - {_explain(error)}" for error in errors)
        raise ParamsError(f"{source} is not valid:\n{lines}\nFix these keys and run again.")
    params = _fill_defaults(params, schema)
    if params["train"]["learning_rate"] == "tuned" and not params["tune"]["learning_rates"]:
        raise ParamsError(
            f"{source}: train.learning_rate is `tuned` but tune.learning_rates is empty, so no "
            "rate could be chosen. List the rates to try under tune.learning_rates, or give "
            "train.learning_rate a number."
        )
    download = params["download"]
    if download.get("md5") is None and download.get("sha256") is None and download.get("source") is None:
        raise ParamsError(
            f"{source}: download.md5 and download.sha256 are both null, so a download from "
            "download.url could not be verified. Give at least one checksum."
        )
    return params


def _refuse_non_finite(value: Any, source: str, path: tuple = ()) -> None:
    """Raise ParamsError naming the first NaN or infinite number: YAML's .nan and .inf are
    floats, and a schema bound compared with NaN does not fail, so without this a NaN learning
    rate would train an epoch before anything noticed."""
    import math

    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_non_finite(item, source, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_non_finite(item, source, (*path, index))
    elif isinstance(value, float) and not math.isfinite(value):
        raise ParamsError(
            f"{source} is not valid:\n  - {_key_path(path)} is {value!r}; every number must be "
            "finite (not .nan or .inf).\nFix this key and run again."
        )


def _refuse_data_section(params: dict, source: str) -> None:
    """Raise ParamsError if `params` has the old `data:` section, saying where each key went.

    Reading it beside `download:` and `preprocess:` would let the two disagree silently: one
    tool would use one value and DVC, which reads params.yaml itself, the other.
    """
    if "data" not in params:
        return
    data = params["data"]
    keys = list(data) if isinstance(data, dict) else []
    moves = [f"data.{key} -> {MOVED_DATA_KEYS[key]}.{key}" for key in keys if key in MOVED_DATA_KEYS]
    unknown = [f"data.{key}" for key in keys if key not in MOVED_DATA_KEYS]
    raise ParamsError(
        f"{source} has a `data:` section, which is no longer read: it was split into "
        "`download:` (url, md5, sha256, source) and `preprocess:` (dataset, train_size, "
        "test_size, subset_seed). "
        + (f"Move {', '.join(moves)}" if moves else "Move its keys there")
        + (f" ({', '.join(unknown)} belong to neither)" if unknown else "")
        + ", keeping the value you mean where a key is in both places, then delete `data:`."
    )


def load_params(path: str | Path = "params.yaml") -> dict:
    """Read params.yaml, validate it and fill in defaults."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(
            f"{path} not found. Run lossbench from the project root, or pass --params PATH."
        )
    try:
        with path.open() as handle:
            params = yaml.load(handle, Loader=UniqueKeyLoader)
    except yaml.YAMLError as error:
        raise ParamsError(f"{path} is not valid YAML: {_describe_yaml_error(error)}") from error
    return validate_params(params, source=str(path))


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last
    silently, DVC refuses the file: lossbench and Snakemake now refuse it too)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice in one section; keep one",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _describe_yaml_error(error: yaml.YAMLError) -> str:
    """PyYAML's reason with the line and column (counted from 1) where it found the problem."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    if mark is None:
        return f"{problem}. Fix the syntax and run again."
    text = f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context and context_mark is not None:
        text += f" ({context} at line {context_mark.line + 1}, column {context_mark.column + 1})"
    return f"{text}. Fix the syntax there and run again."


def get_key(params: dict, dotted: str) -> Any:
    """Return params['a']['b'] for 'a.b' (None where an optional key is absent)."""
    value: Any = params
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def stage_params(params: dict, stage: str) -> dict[str, Any]:
    """The values of exactly the keys `stage` reads, as a flat {dotted key: value} dict."""
    from lossbench.pipeline.stages import STAGE_PARAMS  # the stage table, which imports this

    if stage not in STAGE_PARAMS:
        raise ParamsError(f"unknown stage {stage!r}; stages: {', '.join(STAGE_PARAMS)}.")
    return {key: get_key(params, key) for key in STAGE_PARAMS[stage]}


def stage_fingerprint(params: dict, stage: str) -> str:
    """A stable JSON text of a stage's parameter values.

    Snakemake reruns a rule when a value under its `params:` changes, so each rule passes
    this text there; DVC reruns on the same keys because dvc.yaml lists them.
    """
    return json.dumps(stage_params(params, stage), sort_keys=True)


def params_digest(params: dict) -> str:
    """A SHA-256 of the validated values (not the file's bytes: comments may change)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def check_dag_params(params: dict, source: str = "params.yaml") -> None:
    """Refuse to run a Snakemake job with other values than Snakemake built its DAG from.

    Snakemake reads params.yaml once, to decide which jobs to run; each job reads it again
    when it starts. An edit in between (a run of hours is long) would make the remaining
    jobs compute with other values than the DAG, the logs and the other jobs used.
    """
    expected = os.environ.get(DAG_DIGEST_VARIABLE)
    if expected and expected != params_digest(params):
        raise ParamsError(
            f"{source} has changed since Snakemake built its DAG from it, so this job would "
            "run with other values than the rest of the run. Leave params.yaml alone while "
            "Snakemake runs: stop the run, or restore the file; then run Snakemake again, "
            "which reruns every stage whose parameters changed. (Not running under Snakemake? "
            f"Then {DAG_DIGEST_VARIABLE}, which Snakemake sets for its jobs, was left in this "
            f"shell's environment: `unset {DAG_DIGEST_VARIABLE}`, and run again.)"
        )


def check_params_unchanged(path: str | Path, params: dict, stage: str) -> None:
    """Refuse a stage whose values changed in `path` while it ran (`params`: those it read).

    DVC records params.yaml's values in dvc.lock when a stage succeeds, and `dvc exp run -S`
    or a hand edit can rewrite the file while another run is at work: the lock would then
    record values the stage never used. Failing leaves no lock entry, and the next run redoes
    the stage with the values the file holds. (Snakemake's jobs check at their start too,
    `check_dag_params`.)
    """
    from lossbench.pipeline.stages import STAGE_PARAMS  # the stage table, which imports this

    if stage not in STAGE_PARAMS:
        return
    try:
        now = load_params(path)
    except ParamsError as error:
        raise ParamsError(f"{path} changed while `lossbench {stage}` ran and is no longer valid "
                          f"({error}); this stage's outputs were made with the earlier values.") from None
    changed = [key for key in STAGE_PARAMS[stage] if get_key(now, key) != get_key(params, key)]
    if changed:
        raise ParamsError(
            f"{path} changed while `lossbench {stage}` ran ({', '.join(changed)}): its outputs "
            "were made with the earlier values, so the stage fails rather than let DVC record "
            "the new ones beside them. Run it again (`dvc repro` or `snakemake` redo it with "
            "the values the file now holds); to try other values, wait for a run to finish "
            "(or use `dvc exp run --queue`)."
        )

