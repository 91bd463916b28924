"""The dependency direction (docs/architecture.md): common imports no app; fleet imports none of the apps
built on it. Checked on the source, so a late import inside a function counts too."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPS_ON_FLEET = ("governance", "canary", "gitops")


def imported_modules(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                yield from ((path, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                yield path, node.module


@pytest.mark.parametrize(("package", "forbidden"), [("common", ("fleet", *APPS_ON_FLEET)), ("fleet", APPS_ON_FLEET)])
def test_a_package_imports_nothing_from_the_apps_that_depend_on_it(package, forbidden):
    offending = [
        f"{path.relative_to(ROOT)}: {module}"
        for path, module in imported_modules(package)
        if module.split(".")[0] in forbidden
    ]
    assert offending == []
