"""wanka.core imports nothing else of wanka (numpy and the standard library only)."""

import ast
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "src" / "wanka" / "core"
ALLOWED_THIRD_PARTY = {"numpy"}


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            names.append("wanka.core")  # relative imports stay inside the package
    return names


def test_core_imports_only_core_numpy_and_stdlib():
    files = sorted(CORE.rglob("*.py"))
    assert files, "no core modules found"
    bad = []
    for f in files:
        for name in imports_of(f):
            top = name.split(".")[0]
            if name == "wanka.core" or name.startswith("wanka.core."):
                continue
            if top == "wanka" or (top not in sys.stdlib_module_names and top not in ALLOWED_THIRD_PARTY):
                bad.append(f"{f.relative_to(CORE.parent)}: imports {name}")
    assert not bad, "wanka.core must import only itself, numpy and the standard library:\n" + "\n".join(bad)


def test_the_check_catches_an_outer_import(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("from wanka.models.cluster import load_cluster\nimport pydantic\n")
    assert imports_of(bad) == ["wanka.models.cluster", "pydantic"]
