"""The layering of the packages, stated once so that it cannot rot."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PACKAGES = {
    "tm_domain": ROOT / "domain" / "tm_domain",
    "tm_adapters": ROOT / "adapters" / "tm_adapters",
    "tm_service": ROOT / "services" / "tm_service",
    "tm_streams": ROOT / "streams" / "tm_streams",
    "tm_operator": ROOT / "operator" / "tm_operator",
    "tm_local": ROOT / "local" / "tm_local",
    "tm_cli": ROOT / "cli" / "tm_cli",
}

# What each of our packages may import from the others.
ALLOWED = {
    "tm_domain": set(),
    "tm_adapters": {"tm_domain"},
    "tm_service": {"tm_domain", "tm_adapters"},
    "tm_streams": {"tm_domain", "tm_adapters"},
    "tm_operator": {"tm_domain", "tm_adapters"},
    # The single-process mode is the service with the engine beside it.
    "tm_local": {"tm_domain", "tm_adapters", "tm_service"},
    # `tmctl dev` runs the single-process mode; every other command is HTTP.
    "tm_cli": {"tm_local"},
}


def imported_top_levels(package_dir: Path) -> dict[str, set[Path]]:
    found: dict[str, set[Path]] = {}
    for path in package_dir.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path)
    return found


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_package_imports_only_the_layers_below_it(package: str) -> None:
    imports = imported_top_levels(PACKAGES[package])

    ours = {name for name in imports if name in PACKAGES and name != package}

    assert ours <= ALLOWED[package], {n: imports[n] for n in ours - ALLOWED[package]}


def test_domain_imports_nothing_but_the_standard_library() -> None:
    imports = imported_top_levels(PACKAGES["tm_domain"])

    foreign = {
        name
        for name in imports
        if name not in sys.stdlib_module_names
        and name not in {"tm_domain", "__future__"}
    }

    assert not foreign, {name: imports[name] for name in foreign}


def test_no_package_can_be_imported_as_operator() -> None:
    import operator

    assert operator.__file__ is not None
    assert "site-packages" not in operator.__file__
    assert Path(sys.base_prefix) in Path(operator.__file__).parents
