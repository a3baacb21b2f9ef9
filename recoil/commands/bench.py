"""``recoil bench NAME``: benchmarks that print their figures and a ratio to a reference.

Each module in the top-level ``bench`` package with a ``register(subparsers)``
function is one benchmark. ``freshness`` runs the whole loop (``recoil.loop``), so it
lives with the app (``_bench_freshness``): bench/ imports no app module.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "bench", help="run a benchmark (recoil bench --help lists them)"
    )
    benches = parser.add_subparsers(dest="bench", metavar="NAME", required=True)
    import bench

    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda m: m.name):
        # Every recoil command builds this parser: import only modules that register,
        # not stand-alone scripts with heavy imports (bench/index.py loads FAISS).
        source = Path(bench.__path__[0], f"{info.name}.py")
        if source.is_file() and "def register(" not in source.read_text():
            continue
        module = importlib.import_module(f"bench.{info.name}")
        if hasattr(module, "register"):
            module.register(benches)
    from recoil.commands import _bench_freshness

    _bench_freshness.register(benches)
