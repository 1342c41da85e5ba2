"""Plain multi-task SAC: the gradient of the mean of the task losses."""

from __future__ import annotations

from mtrl.gradients.base import GradientMethod


class Mean(GradientMethod):
    """g = (1/T) sum_i g_i: the base's weights with l = 1, one backward pass of the mean loss."""

    needs_task_grads = False
    reports_weights = False
