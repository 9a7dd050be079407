"""Put a committed set of values into params.yaml: the one way both front ends take a config.

In:  params.yaml, and one or more overlay files (workflow/params/*.yaml): YAML mappings of
     `section: {key: value}`, each key one of params.yaml's.
Out: `use_params(params_path, overlays)`: params.yaml with each overlay's values put in, in the
     order given (a later file wins), its comments and every other value kept; validated
     against the schema before anything is written, then written under a temporary name and
     renamed. Returns one line per value that changed.

Why a command rather than `snakemake --configfile` or a second params file: every job reads
params.yaml itself (so do DVC's stages), so the values must be in that one file for Snakemake
and DVC to run the same thing. `git checkout params.yaml` puts the shipped values back.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import yaml

from lossbench.io.atomic import write_text
from lossbench.pipeline.params import ParamsError, UniqueKeyLoader, load_schema, validate_params


def read_overlay(path: Path) -> dict[str, dict[str, Any]]:
    """An overlay file's {section: {key: value}}; ParamsError naming the file and the fix when
    it is missing, not YAML, or names a section or key that params.yaml does not have."""
    if not path.is_file():
        raise ParamsError(f"{path} not found: give the path of an overlay file, for example "
                          "workflow/params/cpu-smoke.yaml.")
    try:
        overlay = yaml.load(path.read_text(), Loader=UniqueKeyLoader)
    except yaml.YAMLError as error:
        raise ParamsError(f"{path} is not valid YAML ({error}). Fix it and run again.") from None
    sections = load_schema()["properties"]
    if not isinstance(overlay, dict) or not all(isinstance(keys, dict) for keys in overlay.values()):
        raise ParamsError(f"{path} must hold `section: {{key: value}}` mappings, as params.yaml does.")
    for section, keys in overlay.items():
        if section not in sections:
            raise ParamsError(f"{path}: no section {section!r} in params.yaml; sections: "
                              f"{', '.join(sections)}.")
        unknown = sorted(set(keys) - set(sections[section].get("properties", {})))
        if unknown:
            raise ParamsError(f"{path}: no key {section}.{unknown[0]} in params.yaml; see "
                              "params.yaml for the keys of that section and what each means.")
    return overlay


def _put(section: Any, key: str, value: Any) -> None:
    """Set section[key], keeping the comments that ruamel.yaml hangs on the old value (the
    lines above the next key): a list is refilled in place rather than replaced."""
    old = section.get(key)
    if isinstance(old, list) and isinstance(value, list) and value:
        # The comment lines after a block list hang on its last item: move them to the new one.
        trailing = old.ca.items.pop(len(old) - 1, None) if old else None
        old[:] = value
        if trailing is not None:
            old.ca.items[len(old) - 1] = trailing
    else:
        section[key] = value


def use_params(params_path: Path, overlays: Sequence[Path]) -> list[str]:
    """Put the overlays' values into `params_path` (see the module docstring); the changes as
    "section.key: old -> new" lines, empty when every value was already there."""
    from ruamel.yaml import YAML

    if not params_path.is_file():
        raise ParamsError(f"{params_path} not found: run lossbench from the project root.")
    reader = YAML()
    reader.width = 4096
    # As params.yaml is written (and dvc.yaml): lists indented under their key, null spelt out.
    reader.indent(mapping=2, sequence=4, offset=2)
    reader.representer.add_representer(
        type(None), lambda representer, _: representer.represent_scalar("tag:yaml.org,2002:null", "null"))
    # Floats as PyYAML writes them (1.0e-06): ruamel.yaml writes 1e-06, which the YAML 1.1
    # readers of params.yaml (PyYAML, hence lossbench, Snakemake and DVC) read back as text.
    reader.representer.add_representer(float, _float_as_pyyaml)
    original = params_path.read_text()
    document = reader.load(original)
    # The plain values, to compare and show (ruamel.yaml's own types do not print plainly).
    values = yaml.load(original, Loader=UniqueKeyLoader)
    changes = []
    for overlay_path in overlays:
        for section, keys in read_overlay(overlay_path).items():
            for key, value in keys.items():
                old = values[section].get(key)
                if old != value:
                    changes.append(f"{section}.{key}: {_show(old)} -> {_show(value)}")
                values[section][key] = value
                _put(document[section], key, value)
    stream = io.StringIO()
    reader.dump(document, stream)
    text = stream.getvalue()
    sources = ", ".join(map(str, overlays))
    validate_params(yaml.load(text, Loader=UniqueKeyLoader), source=f"params.yaml with {sources}")
    if changes:
        write_text(params_path, text)
    return changes


def _float_as_pyyaml(representer: Any, value: float) -> Any:
    return representer.represent_scalar("tag:yaml.org,2002:float", _show(value))


def _show(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=4096).strip().removesuffix("\n...")
