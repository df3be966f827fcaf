"""The dependency rules between this repository's packages (docs/DESIGN.md), read from the source.

The data layer (`hf_dataset`), the model families (`modeling`) and the metrics (`metrics`) are the
bottom of the project: the scripts, the app, the cards and the benchmarks build on them, never the
other way round. The data layer does not know the models (a dataset is built and analysed without
torch models) but uses the metrics, so its baselines are the ones training reports.
Imports inside functions count too: a lazy import is still a dependency.
"""

import ast
from pathlib import Path

import pytest

from .conftest import REPO_ROOT


def our_modules() -> set[str]:
    """The top-level names this repository defines: its scripts and its packages."""
    return {p.stem for p in REPO_ROOT.glob("*.py")} | {
        p.parent.name for p in REPO_ROOT.glob("*/__init__.py")
    }


def imported(path: Path) -> set[str]:
    """The top-level names of every absolute import in `path`, wherever it is in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}  # fmt: skip
    names |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module}  # fmt: skip
    return names


def test_our_modules_are_found():
    """Without this the rules below would pass on an empty set."""
    expected = {"app", "train_rating", "train_caption", "evaluate_models", "model_cards",
                "benchmarks", "modeling", "metrics", "hf_dataset", "training", "serving"}  # fmt: skip
    assert expected <= our_modules()


@pytest.mark.parametrize(
    "package, allowed", [("modeling", set()), ("metrics", set()), ("hf_dataset", {"metrics"})]
)
def test_bottom_packages_import_only_what_the_rules_allow(package, allowed):
    forbidden = our_modules() - {package} - allowed
    found = {
        str(path.relative_to(REPO_ROOT)): sorted(imported(path) & forbidden)
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
    }
    assert found, f"no Python file under {package}/"
    assert not {path: names for path, names in found.items() if names}


def test_metric_modules_import_only_their_own_folder():
    """`evaluate.load(path)` copies a metric module's folder and nothing more: a module imports
    nothing of ours by name, and what it imports relatively is a file of its own folder."""
    modules = sorted((REPO_ROOT / "metrics").glob("*/*.py"))
    assert modules
    for path in modules:
        assert not imported(path) & our_modules(), path
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and node.module, f"{path}: use `from .module import name`"
                assert (path.parent / f"{node.module}.py").is_file(), path


def test_training_imports_only_modeling_and_metrics():
    """The scripts' shared pieces never import a script (nor the app, the cards, the benchmarks)."""
    forbidden = our_modules() - {"training", "modeling", "metrics"}
    found = {
        str(path.relative_to(REPO_ROOT)): sorted(imported(path) & forbidden)
        for path in sorted((REPO_ROOT / "training").rglob("*.py"))
    }
    assert found and not {path: names for path, names in found.items() if names}


# import name -> distribution name, where they differ
DISTRIBUTIONS = {"PIL": "pillow", "gradio_client": "gradio-client"}


def declared() -> set[str]:
    import re

    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    requirements = project["project"]["dependencies"] + [
        r for group in project["dependency-groups"].values() for r in group
    ]
    return {
        re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements
    }


def test_every_imported_package_is_declared():
    """Each third-party package the code imports is in pyproject.toml, not only pulled in by another."""
    import sys

    ours = our_modules() | {"tests"}
    third_party = {}
    for path in sorted(REPO_ROOT.rglob("*.py")):
        if {".venv", "outputs"} & set(path.relative_to(REPO_ROOT).parts):
            continue
        for name in imported(path) - ours - set(sys.stdlib_module_names):
            third_party.setdefault(name, str(path.relative_to(REPO_ROOT)))
    assert {"torch", "transformers", "pyarrow", "safetensors"} <= set(third_party)
    missing = {
        name: where
        for name, where in third_party.items()
        if DISTRIBUTIONS.get(name, name).lower().replace("_", "-") not in declared()
    }
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
