"""`make bench`: run every benchmark in bench/ and print one table of figures, targets and ratios.

Each benchmark prints lines `BENCH {"name", "figure", "unit", "target", "ratio", "ratio_target", "ok"}`
(JSON) besides its own narrative; this script collects them.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    rows, failures = [], []
    scripts = sorted(p for p in HERE.glob("*.py") if p.name not in ("run_all.py",) and not p.name.startswith("_"))
    for script in scripts:
        print(f"== {script.name}", flush=True)
        started = time.monotonic()
        proc = subprocess.run([sys.executable, str(script)], cwd=HERE.parent, capture_output=True, text=True)
        print(proc.stdout[-3000:], end="")
        if proc.returncode != 0:
            failures.append(script.name)
            print(proc.stderr[-3000:])
        for line in proc.stdout.splitlines():
            if line.startswith("BENCH "):
                rows.append(json.loads(line[6:]))
        print(f"   ({time.monotonic() - started:.0f} s)\n")
    header = f"{'benchmark':<48} {'figure':>14} {'target':>14} {'ratio':>10} {'ratio target':>13}  ok"
    print(header)
    print("-" * len(header))
    for r in rows:
        figure = f"{r['figure']:.4g} {r.get('unit', '')}".strip()
        ratio = f"{r['ratio']:.3g}x" if r.get("ratio") is not None else "-"
        print(
            f"{r['name']:<48} {figure:>14} {str(r.get('target', '-')):>14} {ratio:>10} "
            f"{str(r.get('ratio_target', '-')):>13}  {'yes' if r.get('ok') else 'NO'}"
        )
    if failures:
        print("failed to run:", ", ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
