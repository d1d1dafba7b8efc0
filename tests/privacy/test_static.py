"""Static guard: the privacy package draws noise and keys from OpenDP / its arguments only, never
from numpy's or Python's generators (Mironov 2012; guessable or non-cryptographic streams)."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "include" / "privacy"
FORBIDDEN_MODULES = {"random", "secrets", "numpy", "scipy", "diffprivlib", "torch", "airflow"}
FORBIDDEN_CALLS = {"urandom", "getrandom", "token_bytes", "token_hex", "SystemRandom", "default_rng",
                   "laplace", "normal", "randint", "uniform", "choice", "gauss", "getrandbits"}


def offences(source: str, name: str) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Import):
            out += [f"{name}:{node.lineno} import {a.name}" for a in node.names
                    if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                out.append(f"{name}:{node.lineno} from {node.module} import ...")
        elif isinstance(node, ast.Call):
            f = node.func
            called = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
            if called in FORBIDDEN_CALLS:
                out.append(f"{name}:{node.lineno} call {called}()")
        elif isinstance(node, ast.Call) is False and isinstance(node, ast.Attribute) and node.attr == "random":
            out.append(f"{name}:{node.lineno} attribute .random")
    return out


def test_package_uses_no_forbidden_randomness():
    files = sorted(PACKAGE.rglob("*.py"))
    assert files, PACKAGE
    found = [o for f in files for o in offences(f.read_text(), str(f.relative_to(PACKAGE.parent.parent)))]
    assert not found, "forbidden randomness / imports in include/privacy:\n" + "\n".join(found)


def test_the_guard_catches_offences():
    bad = ("import numpy as np\nfrom random import random\nimport secrets\nx = np.random.laplace(0, 1)\n"
           "import os\nk = os.urandom(32)\n")
    found = offences(bad, "bad.py")
    assert len(found) >= 5, found
