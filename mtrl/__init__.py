"""mtrl: multi-task reinforcement learning on Meta-World, from the command line or from Python.

    import mtrl

    result = mtrl.train("synthetic", total_steps=2_000)      # a preset's name, a file or a Config
    policy = mtrl.load_policy(result.run_dir)                # a run directory or a checkpoint file
    action = policy.predict(state, task=policy.task_names[0])
    results = mtrl.evaluate(policy, episodes=10)             # per-task success and returns

The names below are imported on first use, so ``import mtrl`` (and every ``mtrl`` command) stays
fast and does not load torch until it is needed.
"""

from __future__ import annotations

from importlib import import_module, metadata

try:
    __version__ = metadata.version("mtrl-suite")
except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

# Public name -> the module that defines it.
_API = {
    "train": "mtrl.api",
    "load_policy": "mtrl.api",
    "evaluate": "mtrl.api",
    "RunResult": "mtrl.api",
    "Callback": "mtrl.callbacks",
    "Policy": "mtrl.evaluation.policy",
    "Config": "mtrl.config",
    "build_config": "mtrl.config",
    "MultiTaskVecEnv": "mtrl.envs.base",
    "GradientMethod": "mtrl.gradients.base",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        value = getattr(import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mtrl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
