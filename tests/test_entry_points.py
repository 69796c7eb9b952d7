"""Every entry script is a console script of the package: declared in pyproject.toml, importable
as a package module (no script-only ``sys.path`` set-up needed) and answering ``--help``."""
import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DECLARED = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def _has_main(path: Path) -> bool:
    return any(isinstance(node, ast.FunctionDef) and node.name == "main"
               for node in ast.parse(path.read_text()).body)


def test_every_entry_script_is_declared():
    scripts = [*sorted((REPO / "pipeline").glob("*.py")), REPO / "train" / "main.py"]
    modules = {".".join(path.relative_to(REPO).with_suffix("").parts)
               for path in scripts if _has_main(path)}
    assert "pipeline.stylize" in modules and "train.main" in modules     # the scan finds them
    assert {value.partition(":")[0] for value in DECLARED.values()} == modules
    assert all(value.endswith(":main") and name.startswith("nststyle-")
               for name, value in DECLARED.items())


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_each_console_script_answers_help(name, capsys):
    main = importlib.metadata.EntryPoint(name, DECLARED[name], "console_scripts").load()
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: ")


def test_the_installed_scripts_are_the_declared_ones():
    """An install made from an older pyproject.toml is stale (``make setup`` reinstalls)."""
    installed = {ep.name: ep.value for ep in importlib.metadata.distribution("nststyle").entry_points
                 if ep.group == "console_scripts"}
    if not installed:
        pytest.skip("the installed nststyle predates its console scripts: run make setup")
    assert installed == DECLARED
    for name in DECLARED:
        assert (Path(sys.executable).parent / name).is_file(), name
