"""Shared by the benchmarks: one machine-readable line per figure, collected by `make bench`."""

import json


def report(
    name: str, figure: float, unit: str, target: str, ok: bool, ratio: float | None = None, ratio_target: str = ""
):
    print(
        "BENCH "
        + json.dumps(
            {
                "name": name,
                "figure": figure,
                "unit": unit,
                "target": target,
                "ratio": ratio,
                "ratio_target": ratio_target,
                "ok": ok,
            }
        ),
        flush=True,
    )
