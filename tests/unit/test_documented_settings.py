"""Every environment variable the code reads is in docs/configuration.md.

Found by reading the code, not a list kept by hand: the Settings fields, the per-service database
URL variables, and every string literal used as a key into an environment mapping (`os.environ`,
an `env` dict, `env_value`).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import msgspec

from shared.base.config import Settings
from shared.store.db import SERVICE_ROLES, database_url_variable

ROOT = Path(__file__).resolve().parents[2]
CODE = [p for folder in ("shared", "services", "ops") for p in sorted((ROOT / folder).rglob("*.py"))]
DOC = ROOT / "docs" / "configuration.md"
NAME = re.compile(r"^[A-Z][A-Z0-9_]{2,}$")
ENV_NAMES = {"environ", "env", "base_env", "environment"}
READERS = {"get", "setdefault", "pop", "env_value", "getenv"}


def _mapping_name(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def variables_read(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        key: ast.expr | None = None
        if isinstance(node, ast.Subscript) and _mapping_name(node.value) in ENV_NAMES:
            key = node.slice
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in READERS and _mapping_name(func.value) in ENV_NAMES:
                key = node.args[0]
            elif isinstance(func, ast.Name) and func.id in READERS:
                key = node.args[0]
        elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant):
            if any(_mapping_name(c) in ENV_NAMES for c in node.comparators):  # "NAME" in os.environ
                key = node.left
        if isinstance(key, ast.Constant) and isinstance(key.value, str) and NAME.match(key.value):
            found.add(key.value)
    return found


def test_the_scan_finds_what_it_should() -> None:
    code = 'os.environ.get("A_B"); env["C_D"]; env_value("E_F_FILE"); "G_H" in os.environ; d.get("NOT_ENV")'
    assert variables_read(ast.parse(code)) == {"A_B", "C_D", "E_F_FILE", "G_H"}


def test_every_variable_the_code_reads_is_documented() -> None:
    read = {f.name.upper() for f in msgspec.structs.fields(Settings)}
    read |= {database_url_variable(service) for service in SERVICE_ROLES}
    for path in CODE:
        read |= variables_read(ast.parse(path.read_text(), str(path)))
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]{2,})`", DOC.read_text()))
    # NAME_FILE is documented by the rule that every NAME may come from a file.
    undocumented = {n for n in read if n not in documented and n.removesuffix("_FILE") not in documented}
    assert undocumented == set()
    assert len(read) > 40  # the scan saw the code
