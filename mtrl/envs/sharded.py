"""Env stepping across cores: the task set split into shards, one process per shard, each stepping a
sync sub-vector; the first shard steps in the calling process while the others step in theirs.

gymnasium's async vector env runs one process per task and pays a pipe round trip per task per
step, which on 2 cores is slower than stepping all tasks in one process. A shard of several tasks
per process keeps the round trips to one per core (``mtrl bench`` (c); docs/benchmarks.md).
"""

from __future__ import annotations

import multiprocessing as mp
import weakref
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection

import numpy as np

from mtrl.envs.base import EnvError, MultiTaskVecEnv, VecStep

ShardBuilder = Callable[[], MultiTaskVecEnv]
PARENT_GONE = (EOFError, ConnectionError, KeyboardInterrupt)
"""What a worker's pipe raises once the process that started it has gone (killed, even by
SIGKILL) or is being interrupted: the worker then ends quietly, as there is no one to tell."""
VEC_STEP_FIELDS = tuple(VecStep.__dataclass_fields__)


def _serve(connection: Connection, build: ShardBuilder) -> None:
    """A worker: builds its shard, then answers commands until "close"."""
    try:
        env = build()
    except Exception as error:  # reported to the parent, which raises it as one line
        connection.send(("error", f"{type(error).__name__}: {error}"))
        return
    connection.send(("ready", list(env.task_names)))
    try:
        while True:
            command, argument = connection.recv()
            if command == "step":
                connection.send(("ok", env.step(argument)))
            elif command == "reset":
                connection.send(("ok", env.reset()))
            elif command == "terminate_on_success":
                env.set_terminate_on_success(argument)
                connection.send(("ok", None))
            elif command == "goal_schedule":
                env.set_goal_schedule(argument)
                connection.send(("ok", None))
            elif command == "render":
                connection.send(("ok", env.render(argument)))
            elif command == "close":
                break
    except PARENT_GONE:  # the trainer was killed (or interrupted): nobody is left to answer
        pass
    finally:
        env.close()
        connection.close()


def _shutdown(connections: list[Connection], processes: list[mp.Process]) -> None:
    for connection in connections:
        try:
            connection.send(("close", None))
        except (BrokenPipeError, OSError):
            pass
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()


class ShardedVecEnv:
    """Shards of tasks stepped in parallel; rows keep the order of the shards' tasks."""

    def __init__(self, builders: list[ShardBuilder]) -> None:
        if not builders:
            raise EnvError("a sharded env needs at least one shard")
        context = mp.get_context("spawn")  # no inherited torch/OpenMP state in the workers
        self._connections: list[Connection] = []
        self._processes: list[mp.Process] = []
        for build in builders[1:]:
            parent, child = context.Pipe()
            process = context.Process(target=_serve, args=(child, build), daemon=True)
            process.start()
            child.close()
            self._connections.append(parent)
            self._processes.append(process)
        self._finalizer = weakref.finalize(self, _shutdown, self._connections, self._processes)
        try:
            self._local = builders[0]()
            self.task_names = list(self._local.task_names)
            sizes = [self._local.num_tasks]
            for connection in self._connections:
                status, message = connection.recv()
                if status == "error":
                    raise EnvError(f"an env worker could not build its shard ({message})")
                self.task_names += message
                sizes.append(len(message))
        except BaseException:
            self._finalizer()
            raise
        self.obs_dim, self.action_dim = self._local.obs_dim, self._local.action_dim
        self.max_episode_steps = self._local.max_episode_steps
        self._sizes = sizes
        self._bounds = np.cumsum([0, *sizes])

    @property
    def num_tasks(self) -> int:
        return int(self._bounds[-1])

    @property
    def num_goals(self) -> int:
        return self._local.num_goals  # every shard's tasks come from one spec and seed

    @staticmethod
    def _receive(connection: Connection):
        try:
            status, payload = connection.recv()
        except EOFError:
            raise EnvError("an env worker process died") from None
        return payload

    def _broadcast(self, command: str, arguments: list) -> list:
        """Sends to every worker, runs the local shard meanwhile, then collects in shard order."""
        for connection, argument in zip(self._connections, arguments[1:], strict=True):
            connection.send((command, argument))
        local = getattr(self, f"_local_{command}")(arguments[0])
        return [local] + [self._receive(c) for c in self._connections]

    def _local_reset(self, _: object) -> np.ndarray:
        return self._local.reset()

    def _local_step(self, actions: np.ndarray) -> VecStep:
        return self._local.step(actions)

    def reset(self) -> np.ndarray:
        return np.concatenate(self._broadcast("reset", [None] * len(self._sizes)))

    def step(self, actions: np.ndarray) -> VecStep:
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != (self.num_tasks, self.action_dim):
            raise ValueError(
                f"actions must have shape {(self.num_tasks, self.action_dim)}, got {actions.shape}"
            )
        pieces = [actions[a:b] for a, b in zip(self._bounds[:-1], self._bounds[1:], strict=True)]
        steps = self._broadcast("step", pieces)
        return VecStep(
            **{name: np.concatenate([getattr(s, name) for s in steps]) for name in VEC_STEP_FIELDS}
        )

    def set_terminate_on_success(self, flag: bool) -> None:
        self._local.set_terminate_on_success(flag)
        self._tell_workers("terminate_on_success", bool(flag))

    def set_goal_schedule(self, indices: Sequence[int] | None) -> None:
        self._local.set_goal_schedule(indices)
        self._tell_workers("goal_schedule", None if indices is None else list(indices))

    def _tell_workers(self, command: str, argument: object) -> None:
        for connection in self._connections:
            connection.send((command, argument))
        for connection in self._connections:
            self._receive(connection)

    def render(self, task_index: int) -> np.ndarray:
        shard = int(np.searchsorted(self._bounds, task_index, side="right") - 1)
        row = task_index - int(self._bounds[shard])
        if shard == 0:
            return self._local.render(row)
        self._connections[shard - 1].send(("render", row))
        return self._receive(self._connections[shard - 1])

    def close(self) -> None:
        self._local.close()
        self._finalizer()

    def __enter__(self) -> ShardedVecEnv:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
