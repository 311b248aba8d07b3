"""dvc.yaml declares, for every stage, exactly the code the stage runs: its script and the script's
import closure inside src/aevae. A missing dep leaves results silently stale; an extra one reruns
stages for nothing."""

import ast
from pathlib import Path

from dvc.repo import Repo

from helpers import ROOT

PACKAGE = ROOT / "src/aevae"


def imported_modules(path: Path) -> set[str]:
    """The aevae modules a file imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "aevae":
            if node.module == "aevae":  # from aevae import config, data: modules, or names in __init__
                found |= {a.name for a in node.names if (PACKAGE / f"{a.name}.py").exists()}
            found.add(node.module.removeprefix("aevae").lstrip(".") or "__init__")
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("aevae").lstrip(".") or "__init__" for a in node.names
                      if a.name.split(".")[0] == "aevae"}
    return found


def closure(script: Path) -> set[str]:
    """The script and every file of src/aevae it reaches through imports, as paths relative to the root."""
    seen, todo = {"__init__"}, imported_modules(script)  # importing any module runs the package's __init__
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo |= imported_modules(PACKAGE / f"{name}.py")
    seen |= imported_modules(PACKAGE / "__init__.py")
    return {str(script.relative_to(ROOT))} | {f"src/aevae/{name}.py" for name in seen}


def test_every_stage_declares_exactly_the_code_it_imports():
    stages = Repo(str(ROOT)).index.stages
    assert len(stages) >= 6
    for stage in stages:
        script = ROOT / stage.cmd.split()[1]  # python stages/<name>.py [args]
        code = {d.def_path for d in stage.deps if d.def_path.startswith(("src/", "stages/"))}
        assert code == closure(script), f"{stage.addressing}: dvc.yaml deps differ from the imports"


def test_the_closure_follows_imports_through_the_package():
    assert closure(ROOT / "stages/fetch.py") == {
        "stages/fetch.py", "src/aevae/__init__.py", "src/aevae/config.py", "src/aevae/download.py",
        "src/aevae/runtime.py",  # through __init__, which answers MKL's CPU check
    }


def test_a_reader_follows_an_autoencoder_stage_through_at_most_8_files():
    for stage in Repo(str(ROOT)).index.stages:
        if stage.addressing in ("train_ae", "train_vae", "evaluate@ae", "evaluate@vae"):
            code = [d.def_path for d in stage.deps if d.def_path.endswith(".py")]
            assert len(code) <= 8, f"{stage.addressing} reads {len(code)} Python files: {code}"


# The package's layers, bottom first: a module imports only from layers below its own.
LAYERS = [
    {"__init__"},  # the errors, run_command, and files written whole
    {"config", "runtime", "data", "download"},
    {"model", "classifier"},
    {"trainer", "scores", "figures", "summary", "report", "sweep", "runcache"},
]


def test_imports_run_one_way_down_the_layers():
    layer = {name: i for i, names in enumerate(LAYERS) for name in names}
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules == set(layer), "place every module of src/aevae in a layer"
    for name in modules:
        # The one import upwards: the package answers MKL's CPU check on import, before torch loads MKL.
        exempt = {"runtime"} if name == "__init__" else set()
        for dep in imported_modules(PACKAGE / f"{name}.py") - {name} - exempt:
            assert layer[dep] < layer[name], f"aevae.{name} imports aevae.{dep}, which is not below it"
    for script in (ROOT / "stages").glob("*.py"):  # the stages sit on top: nothing imports them
        assert imported_modules(script) <= modules
