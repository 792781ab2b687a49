"""The import rule: no module imports a layer above its own, and learner/ and actors/ do not import each other.

The layers are declared once, in pyproject.toml (`[tool.memroute.layers]`, top down, in import-linter's notation:
"a | b" independent siblings, "a : b" siblings that may import each other); docs/architecture.md explains them.
This file reads every module's imports with `ast` (lazy imports inside functions included: they run too) and
checks each one against the contract. It also refuses an import of a project module that does not exist in this
tree: with an editable install of another checkout on the path, such an import would silently load that
checkout's file instead of failing.

Why not import-linter itself: its layers contract refuses a layer inside another ("Layers cannot contain other
layers"), and ours nest on purpose (the RL driver learner.rl above the rest of learner/, memroute.core below the
commands in memroute/, the error base below the rest of the core). Here the most specific entry wins.
"""

from __future__ import annotations

import ast
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Layer:
    index: int  # 0 is the bottom
    names: tuple[str, ...]
    independent: bool

    def __str__(self) -> str:
        return (" | " if self.independent else " : ").join(self.names)


def load_contract(root: Path) -> tuple[list[str], list[Layer]]:
    table = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["memroute"]["layers"]
    layers = []
    for i, entry in enumerate(reversed(table["layers"])):  # written top down; index 0 is the bottom
        independent = "|" in entry
        if independent and ":" in entry:
            raise ValueError(f"layer {entry!r} mixes '|' and ':'")
        names = tuple(n.strip() for n in entry.replace("|", ":").split(":"))
        layers.append(Layer(i, names, independent))
    return list(table["roots"]), layers


def project_modules(root: Path, roots: list[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the root packages."""
    out = {}
    for top in roots:
        for path in sorted((root / top).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imports_of(path: Path, module: str, tops: set[str], known: dict[str, Path]) -> list[tuple[int, str]]:
    """(line, imported module) for every import of a project module in `path`, resolved to the module it loads:
    `from a.b import c` is a.b.c when that is a module, else a.b."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((node.lineno, sub if sub in known else target))
    return sorted({(line, name) for line, name in found if name.split(".")[0] in tops})


def layer_of(module: str, layers: list[Layer]) -> tuple[Layer, str] | None:
    """The layer whose entry names `module` or its nearest package, and that entry."""
    best = None
    for layer in layers:
        for name in layer.names:
            if (module == name or module.startswith(name + ".")) and (best is None or len(name) > len(best[1])):
                best = (layer, name)
    return best


def check(root: Path) -> list[str]:
    """Every violation of the contract in the tree at `root`, one line each (file:line: what is wrong)."""
    roots, layers = load_contract(root)
    known = project_modules(root, roots)
    problems = [f"pyproject.toml: layer entry {name!r} names no module of this tree"
                for layer in layers for name in layer.names if name not in known]
    for module, path in sorted(known.items()):
        where = path.relative_to(root)
        mine = layer_of(module, layers)
        if mine is None:
            problems.append(f"{where}: {module} belongs to no layer of [tool.memroute.layers]")
            continue
        for line, target in imports_of(path, module, set(roots), known):
            if target not in known:
                problems.append(f"{where}:{line}: {module} imports {target}, which is not a module of this tree")
                continue
            theirs = layer_of(target, layers)
            if theirs is None or theirs[1] == mine[1]:
                continue
            if theirs[0].index > mine[0].index:
                problems.append(f"{where}:{line}: {module} (layer '{mine[0]}') imports {target}, which is in "
                                f"'{theirs[0]}', a layer above it")
            elif theirs[0] is mine[0] and mine[0].independent:
                problems.append(f"{where}:{line}: {module} imports {target}, but {mine[1]} and {theirs[1]} are "
                                f"independent (layer '{mine[0]}')")
    return problems


def test_no_upward_imports():
    problems = check(REPO)
    assert not problems, "the import rule (docs/architecture.md) is broken:\n" + "\n".join(problems)


def test_tests_and_commands_name_modules_of_this_tree():
    """Tests are not layered, but a stale import there (or in the command table) would load another checkout."""
    roots, _ = load_contract(REPO)
    known = project_modules(REPO, roots)
    stale = [f"{path.relative_to(REPO)}:{line}: {target}"
             for path in sorted((REPO / "tests").glob("*.py"))
             for line, target in imports_of(path, path.stem, set(roots), known) if target not in known]
    from memroute.cli import COMMANDS

    stale += [f"memroute/cli.py: command {name}: {module}" for name, (module, _) in COMMANDS.items()
              if module not in known]
    assert not stale, "imports of modules that are not in this tree:\n" + "\n".join(stale)


def _copy_tree(dst: Path) -> Path:
    roots, _ = load_contract(REPO)
    shutil.copy(REPO / "pyproject.toml", dst / "pyproject.toml")
    for top in roots:
        shutil.copytree(REPO / top, dst / top, ignore=shutil.ignore_patterns("__pycache__", "results", "*.jsonl",
                                                                           "*.safetensors", "*.parquet"))
    return dst


def test_the_check_refuses_an_upward_import(tmp_path):
    root = _copy_tree(tmp_path)
    assert check(root) == []
    (root / "data" / "uses_rl.py").write_text("from learner.rl import RLConfig\n")
    (root / "memroute" / "core" / "uses_serve.py").write_text("def f():\n    from serve import config\n")
    (root / "actors" / "uses_learner.py").write_text("import learner.actor\n")
    (root / "learner" / "uses_actors.py").write_text("from actors.engine import Engine\n")
    (root / "actors" / "relative.py").write_text("from ..serve import app\n")
    (root / "learner" / "stale.py").write_text("from learner.models import load_model\n")
    problems = "\n".join(check(root))
    assert "data/uses_rl.py:1: data.uses_rl (layer 'data') imports learner.rl, which is in 'learner.rl'" in problems
    assert "memroute/core/uses_serve.py:2: memroute.core.uses_serve (layer 'memroute.core : memroute.router') " \
           "imports serve.config, which is in 'serve', a layer above it" in problems
    assert "actors/uses_learner.py:1: actors.uses_learner imports learner.actor, but actors and learner are " \
           "independent" in problems
    assert "learner/uses_actors.py:1: learner.uses_actors imports actors.engine, but learner and actors" in problems
    assert "actors/relative.py:1: actors.relative (layer 'learner | actors') imports serve.app" in problems
    assert "learner/stale.py:1: learner.stale imports learner.models, which is not a module of this tree" in problems
    assert len(problems.splitlines()) == 6


def test_the_rl_driver_may_import_both_sides(tmp_path):
    root = _copy_tree(tmp_path)
    (root / "learner" / "rl.py").write_text("from actors.rollout import RolloutConfig\nfrom learner.actor import "
                                            "LearnerGroup\n")
    (root / "learner" / "actor.py").write_text("import learner.rl\n")  # ... but nothing below may import it
    assert check(root) == ["learner/actor.py:1: learner.actor (layer 'learner | actors') imports learner.rl, which "
                           "is in 'learner.rl', a layer above it"]
