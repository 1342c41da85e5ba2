"""Where a training step's time goes on this machine: sgemm peak, the update's FLOP/s, env steps/s
raw and through our vector env, the loop's time split, and end-to-end env steps/s for MT1, MT10 and
MT50 against stable-baselines3 on MT1. The same as ``mtrl bench``; see ``mtrl.experiments.bench``.

    python benchmarks/throughput.py [--quick] [--no-mt50] [--hidden 400 400 400] [--batch 128]
"""

from mtrl.experiments.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
