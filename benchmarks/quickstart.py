"""The Quickstart's first command, timed and recorded: ``mtrl train --config quickstart`` in a fresh
run directory, its wall-clock, its env steps/s and its printed per-task table, written to
``benchmarks/results/quickstart/record.json``, from which docs/getting-started.md shows the output
and the time at build time (``docs/hooks.py``), so the page cannot drift from the preset.

    python benchmarks/quickstart.py       # ~6-10 min on a 2-core CPU; say what else was running
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from learning_runs import MTRL, ROOT

from mtrl.training.logging import read_metrics

OUT = ROOT / "benchmarks" / "results" / "quickstart" / "record.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--beside", default="nothing else", help="what else was running")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        run_dir = Path(directory) / "MT10-seed0-<time>"
        command = [*MTRL, "train", "--config", "quickstart", f"run_dir={run_dir}", "progress=false"]
        load = os.getloadavg()[0]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - start
        rates = [
            r["charts/env_steps_per_s"]
            for r in read_metrics(run_dir)
            if r["kind"] == "train" and r["step"] > 1000  # the first window holds the warm-up
        ]
    output = done.stdout.replace(str(run_dir), "runs/MT10-seed0-<time>")
    table = output[output.index("task ") :].rstrip()  # the per-task table and the paths after it
    record = {
        "date": time.strftime("%Y-%m-%d"),
        "command": "mtrl train --config quickstart",
        "seconds": round(seconds, 1),
        "env_steps_per_s": [round(min(rates)), round(max(rates))],
        "load_average_before": round(load, 2),
        "beside": args.beside,
        "output": re.sub(r"[ \t]+\n", "\n", table),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{seconds / 60:.1f} min; {record['env_steps_per_s']} env steps/s; {OUT}")


if __name__ == "__main__":
    main()
