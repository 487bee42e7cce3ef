"""The package's arrows, read from its imports (ast), and its house style (ruff).

The core that trains one run is the modules directly in longmem/ and nets/;
study/, compress/ and experiments/ are built on it.
"""

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "src" / "longmem"
BUILT_ON_THE_CORE = ("longmem.study", "longmem.compress", "longmem.experiments")
ABOVE_THE_NETS = ("longmem.step", "longmem.loop", "longmem.launch", "longmem.cli", "longmem.predict",
                  *BUILT_ON_THE_CORE)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every longmem module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from longmem import x`
    return {name for name in found if name.startswith("longmem")}


def within(name: str, packages) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


MODULES = {module_name(path): imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_the_walk_finds_the_package():
    assert {"longmem.cli", "longmem.nets.lstm", "longmem.study.memory", "longmem.compress.online"} <= set(MODULES)
    assert "longmem.nets.parts" in MODULES["longmem.nets.lstm"]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if within(m, ["longmem.nets"])))
def test_nets_only_build_graphs(module):
    """A net imports nothing of the training step, the loop, launching, the CLI, the
    predictor or what is built on the core."""
    wrong = sorted(name for name in MODULES[module] if within(name, ABOVE_THE_NETS))
    assert not wrong, f"{module} imports {wrong}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not within(m, (*BUILT_ON_THE_CORE, "longmem.cli"))))
def test_the_core_does_not_import_what_is_built_on_it(module):
    wrong = sorted(name for name in MODULES[module] if within(name, BUILT_ON_THE_CORE))
    assert not wrong, f"{module} imports {wrong}"


def test_nothing_imports_the_cli():
    importers = sorted(m for m, names in MODULES.items() if "longmem.cli" in names and m != "longmem.__main__")
    assert not importers


def test_the_checks_can_fail():
    """The walk sees an import inside a function, and `within` tells packages apart."""
    assert within("longmem.study.memory", BUILT_ON_THE_CORE) and not within("longmem.studying", BUILT_ON_THE_CORE)
    assert "longmem.study.memory" in imports(PACKAGE / "cli.py")  # imported inside cmd_memory


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (pip install -e .[test])")
def test_the_house_style_holds():
    """`ruff check` with pyproject.toml's [tool.ruff] rules passes on the whole tree."""
    result = subprocess.run(["ruff", "check", "--no-cache", "src", "tests", "benchmarks"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
