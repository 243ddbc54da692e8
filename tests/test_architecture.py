"""The architecture the code promises (docs/architecture.md), checked: the import
contracts of .importlinter (layers tools > firmware > emu, roms as data, no device
model importing the firmware, no cycles) and no import hidden inside a function."""
import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The folders pip installs as pvboot.<name> (pyproject.toml [tool.setuptools.package-dir]).
SUBPACKAGES = ("emu", "firmware", "roms", "tools")

# Function-level imports that are right: optional dependencies, imported only on the
# path that needs them so that pvboot runs without them.
OPTIONAL_DEPENDENCIES = {
    "capstone": "disassembly in crash reports only (emu/faults.py)",
    "dask": "fleet runs only; plain boots never need it",
}
# Files that load pvboot's own heavier modules on first use, and why. Nothing else may
# import inside a function: such an import hides a cycle or a layer breach.
LAZY_LOADERS = {
    "tools/__init__.py": "console_main loads the command line with the cyclic GC off, which "
                         "has to be switched off before those modules load",
    "tools/cli.py": "a subcommand's module loads when that subcommand runs: a boot does "
                    "not pay for compare, bench, batch or fuzz (start-up is a bench row)",
    "tools/pytest_plugin.py": "the plugin loads in every pytest session of a project that "
                              "installed pvboot; the runner loads when a test boots",
    "tools/manifest.py": "loaded by the pytest plugin: the runner loads when a boot runs",
    "tools/batch.py": "the Dask path is the optional extra pvboot[dask]",
    "tools/runner.py": "the GDB stub and the kernel check load only in the runs that ask "
                       "for them (--gdb, --stop-at/--expect-kernel): a plain boot's start-up "
                       "is a bench row",
}


def package_sources():
    for folder in ("pvboot",) + SUBPACKAGES:
        yield from sorted((ROOT / folder).rglob("*.py"))


def nested_imports(tree):
    """(line, imported module) of every import inside a function or class body."""
    found = []

    def walk(node, nested):
        for child in ast.iter_child_nodes(node):
            if nested and isinstance(child, ast.Import):
                found.extend((child.lineno, alias.name) for alias in child.names)
            elif nested and isinstance(child, ast.ImportFrom):
                found.append((child.lineno, "." * child.level + (child.module or "")))
            walk(child, nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                     ast.ClassDef, ast.Lambda)))
    walk(tree, False)
    return found


def test_no_function_level_imports():
    problems = []
    for path in package_sources():
        rel = path.relative_to(ROOT).as_posix()
        for line, module in nested_imports(ast.parse(path.read_text(), str(path))):
            if module.split(".")[0] in OPTIONAL_DEPENDENCIES:
                continue
            if rel in LAZY_LOADERS and module.startswith("pvboot."):
                continue
            problems.append(f"{rel}:{line}: import of {module} inside a function")
    assert not problems, "\n".join(problems)


def test_the_check_finds_a_hidden_import():
    tree = ast.parse("import os\ndef f():\n    from pvboot.firmware import block\n"
                     "class C:\n    def g(self):\n        import json\n")
    assert nested_imports(tree) == [(3, "pvboot.firmware"), (6, "json")]


def test_the_package_folder_links_the_card_folders():
    """pvboot/emu, pvboot/firmware, ... are links to the top-level folders, so the
    checkout has the layout pip installs (and import-linter can read it)."""
    for name in SUBPACKAGES:
        link = ROOT / "pvboot" / name
        assert link.is_symlink() and link.resolve() == (ROOT / name).resolve(), link


def test_import_contracts():
    pytest.importorskip("importlinter", reason="import-linter is in the test extra "
                                               "(pip install -e '.[test]')")
    lint = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([lint, "--no-cache", "--config", str(ROOT / ".importlinter")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 broken" in proc.stdout
