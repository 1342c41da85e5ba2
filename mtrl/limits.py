"""The most a config, a spec or a command may ask for, checked before anything is built.

A few bytes of config can ask for more than any machine has (``mmoe:experts=100000000`` is a
hundred million modules to build just to check the spec), so sizes are bounded by arithmetic on
the values first, each well above what the shipped presets and the papers use, and a value past
its bound is one line naming the key and the bound. A body's parameter count is then read off
its shapes on the meta device (no memory), which the bounds keep to a few thousand modules.
"""

from __future__ import annotations

from mtrl.errors import ConfigError, UserError

MAX_WIDTH = 65_536  # a hidden layer's width (agent.hidden_sizes, a spec's width=, embeddings)
MAX_DEPTH = 32  # hidden layers (agent.hidden_sizes)
MAX_NETWORK_OPTION = 256  # any other integer option of a network spec (experts, modules, blocks)
MAX_BODY_PARAMETERS = 2**28  # parameters of one actor or critic body (1 GiB of float32)
MAX_TASKS = 1_000  # tasks of a synthetic env (Meta-World's largest set is 50)
MAX_BINS = 10_001  # a distributional critic's bins (BRC uses 101)
MAX_REPLAY_PER_TASK = 100_000_000  # replay transitions per task (the papers use 1e5 to 1e6)
MAX_BATCH_PER_TASK = 1_048_576  # transitions sampled per task per update
MAX_EPISODES = 100_000  # evaluation episodes per task (Meta-World's protocol uses 50)
# Seeds: numpy's legacy seeding takes 32 bits and a run seeds with seed + an offset + a task's
# index, so a seed stays below 2**31.
MAX_SEED = 2**31 - 1
# |v_min|, |v_max| of a distributional critic's support, and its least bin spacing relative to
# the largest |v| (float32 keeps 24 bits, so narrower bins would collapse onto one value).
MAX_VALUE = 10**12
MIN_RELATIVE_SPACING = 2**-16


def at_most(
    key: str, value: int | float, bound: int | float, error: type[UserError] = ConfigError
) -> None:
    """A one-line ``error`` (a ConfigError unless a command's option) unless ``value <= bound``."""
    if value > bound:
        raise error(f"{key}: at most {bound:,} (mtrl.limits), got {value:,}")
