"""Gradient methods against hand-computed cases, and the per-task gradient pass of the agent."""

from __future__ import annotations

import pytest
import torch

from mtrl import gradients
from mtrl.gradients.base import StepContext
from mtrl.gradients.diagnostics import MAX_TASKS_FOR_PAIRS, conflict_diagnostics
from mtrl.gradients.gradnorm import last_layer_gram
from mtrl.gradients.gram import assemble_gram, gram
from mtrl.gradients.pcgrad import pcgrad_coefficients, random_orders


@pytest.fixture(autouse=True)
def _float64():
    """Exact comparisons with the hand-computed cases; restored for the other test modules."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def project(g: torch.Tensor, onto: torch.Tensor) -> torch.Tensor:
    """g minus its component along ``onto`` where they conflict (one step of Alg. 1)."""
    dot = g @ onto
    return g - dot / (onto @ onto) * onto if dot < 0 else g


def pcgrad_loop(task_grads: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """Alg. 1 of Yu et al. (2020) on P-sized vectors, as written in the paper: [T, P] -> [T, P]."""
    projected = []
    for i in range(task_grads.shape[0]):
        g = task_grads[i].clone()
        for j in orders[i].tolist():
            g = project(g, task_grads[j])
        projected.append(g)
    return torch.stack(projected)


def conflicting_pair() -> torch.Tensor:
    return torch.tensor([[1.0, 0.0, 2.0], [-2.0, 1.0, 0.5]])  # g1 . g2 = -1 < 0


def test_pcgrad_two_tasks_closed_form():
    g1, g2 = conflicting_pair()
    expected = (project(g1, g2) + project(g2, g1)) / 2
    combined = gradients.make("pcgrad", 2).combine(conflicting_pair(), torch.zeros(2))
    assert torch.allclose(combined, expected)
    # The projected gradients no longer conflict with the original other gradient.
    assert abs(project(g1, g2) @ g2) < 1e-12 and abs(project(g2, g1) @ g1) < 1e-12


@pytest.mark.parametrize("seed", range(5))
def test_pcgrad_coefficients_equal_the_papers_loop(seed):
    generator = torch.Generator().manual_seed(seed)
    task_grads = torch.randn(6, 40, generator=generator)
    orders = random_orders(6, generator)
    coefficients = pcgrad_coefficients(gram(task_grads), orders)
    assert torch.allclose(coefficients @ task_grads, pcgrad_loop(task_grads, orders), atol=1e-10)


def test_random_orders_are_permutations_of_the_other_tasks_and_change_every_call():
    generator = torch.Generator().manual_seed(0)
    first, second = random_orders(5, generator), random_orders(5, generator)
    for i, row in enumerate(first.tolist()):
        assert sorted(row) == [k for k in range(5) if k != i]
    assert not torch.equal(first, second)


@pytest.mark.parametrize("name", ["pcgrad", "pcgrad_dir", "pcgrad_mag"])
def test_without_conflict_every_pcgrad_variant_is_the_mean(name):
    generator = torch.Generator().manual_seed(1)
    task_grads = torch.rand(5, 30, generator=generator)  # non-negative: no pair conflicts
    for scope in ("task", "combined") if name != "pcgrad" else ("task",):
        options = {} if name == "pcgrad" else {"scope": scope}
        method = gradients.make(name, 5, seed=0, **options)
        assert torch.allclose(method.combine(task_grads, torch.zeros(5)), task_grads.mean(0))


@pytest.mark.parametrize("name", ["pcgrad_dir", "pcgrad_mag"])
def test_per_task_ablations_swap_norms_and_directions(name):
    """dir: each task's own norm along its projected direction; mag: the reverse."""
    g1, g2 = conflicting_pair()
    p1, p2 = project(g1, g2), project(g2, g1)
    if name == "pcgrad_dir":
        expected = (p1 / p1.norm() * g1.norm() + p2 / p2.norm() * g2.norm()) / 2
    else:
        expected = (g1 / g1.norm() * p1.norm() + g2 / g2.norm() * p2.norm()) / 2
    combined = gradients.make(name, 2).combine(conflicting_pair(), torch.zeros(2))
    assert torch.allclose(combined, expected)


def test_combined_scope_swaps_on_the_combined_vectors():
    task_grads = conflicting_pair()
    mean = task_grads.mean(0)
    surgery = gradients.make("pcgrad", 2).combine(task_grads, torch.zeros(2))
    direction = gradients.make("pcgrad_dir", 2, scope="combined").combine(task_grads, None)
    magnitude = gradients.make("pcgrad_mag", 2, scope="combined").combine(task_grads, None)
    assert torch.allclose(direction, surgery / surgery.norm() * mean.norm())
    assert torch.allclose(magnitude, mean / mean.norm() * surgery.norm())


def test_unknown_scope_and_method_are_refused():
    with pytest.raises(ValueError, match="scope"):
        gradients.make("pcgrad_dir", 2, scope="global")
    with pytest.raises(ValueError, match="did you mean: pcgrad"):
        gradients.make("pcgard", 2)


def test_state_dict_round_trip_restores_the_random_orders():
    task_grads = torch.randn(6, 20, generator=torch.Generator().manual_seed(3))
    method = gradients.make("pcgrad", 6, seed=0)
    method.combine(task_grads, None)
    state = method.state_dict()
    expected = method.combine(task_grads, None)
    restored = gradients.make("pcgrad", 6, seed=123)
    restored.load_state_dict(state)
    assert torch.equal(restored.combine(task_grads, None), expected)


def test_zero_gradients_stay_finite():
    task_grads = torch.zeros(3, 10)
    task_grads[1, 0] = 1.0
    for name in ("pcgrad", "pcgrad_dir", "pcgrad_mag"):
        assert torch.isfinite(gradients.make(name, 3).combine(task_grads, None)).all()


def test_conflict_diagnostics_on_known_geometry():
    opposite = conflict_diagnostics(gram(torch.tensor([[1.0, 0.0], [-3.0, 0.0]])))
    assert opposite["gradients/cosine_min"] == pytest.approx(-1.0)
    assert opposite["gradients/conflict_fraction"] == pytest.approx(1.0)
    assert opposite["gradients/magnitude_similarity"] == pytest.approx(2 * 3 / (1 + 9))
    orthogonal = conflict_diagnostics(gram(torch.eye(3)))
    assert orthogonal["gradients/cosine_mean"] == pytest.approx(0.0)
    assert orthogonal["gradients/conflict_fraction"] == pytest.approx(0.0)
    assert orthogonal["gradients/magnitude_similarity"] == pytest.approx(1.0)
    assert conflict_diagnostics(gram(torch.ones(1, 4))) == {}


def test_conflict_diagnostics_name_the_conflicting_tasks():
    # Task 0 conflicts with task 2 only; task 1 is orthogonal to both.
    grads = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 1.0]])
    diagnostics = conflict_diagnostics(gram(grads))
    torch.testing.assert_close(
        diagnostics["per_task/grad_norm"], grads.norm(dim=1), check_dtype=False
    )
    torch.testing.assert_close(
        diagnostics["per_task/conflict_share"], torch.tensor([0.5, 0, 0.5]), check_dtype=False
    )
    cosine = diagnostics["per_pair/cosine"]
    assert cosine[0, 2] == pytest.approx(-2 / (2 * 2**0.5)) and cosine[2, 0] == cosine[0, 2]
    assert cosine[0, 1] == pytest.approx(0.0) and cosine[1, 2] == pytest.approx(0.0)
    many = conflict_diagnostics(gram(torch.eye(MAX_TASKS_FOR_PAIRS + 1)))
    assert "per_pair/cosine" not in many and many["per_task/grad_norm"].shape == (11,)


def test_mgda_two_tasks_closed_form():
    g1, g2 = conflicting_pair()
    share = float(((g2 - g1) @ g2) / (g1 - g2).pow(2).sum())
    expected = share * g1 + (1 - share) * g2  # the min-norm point of the segment [g1, g2]
    combined = gradients.make("mgda", 2).combine(conflicting_pair(), None)
    assert torch.allclose(combined, expected, atol=1e-6)


def test_mgda_finds_a_direction_that_no_task_opposes():
    generator = torch.Generator().manual_seed(4)
    task_grads = torch.randn(4, 50, generator=generator) + 0.5
    direction = gradients.make("mgda", 4).combine(task_grads, None)
    assert (task_grads @ direction >= -1e-6).all()
    weights = gradients.make("mgda", 4).weights(gram(task_grads), None, StepContext())
    assert weights.sum().item() == pytest.approx(1.0)


def test_cagrad_with_c_zero_is_the_mean_and_otherwise_stays_in_its_ball():
    generator = torch.Generator().manual_seed(5)
    task_grads = torch.randn(5, 30, generator=generator)
    mean = task_grads.mean(0)
    assert torch.allclose(gradients.make("cagrad", 5, c=0.0).combine(task_grads, None), mean)
    c = 0.5
    d = gradients.make("cagrad", 5, c=c).combine(task_grads, None) * (1 + c)
    assert (d - mean).norm() <= c * mean.norm() + 1e-6
    # It improves the worst task's first-order decrease over the mean direction.
    assert (task_grads @ d).min() >= (task_grads @ mean).min() - 1e-6
    with pytest.raises(ValueError, match="c must be"):
        gradients.make("cagrad", 5, c=1.0)


def test_imtl_g_makes_equal_projections_onto_every_unit_gradient():
    generator = torch.Generator().manual_seed(6)
    task_grads = torch.randn(4, 25, generator=generator)
    combined = gradients.make("imtl_g", 4).combine(task_grads, None)
    units = task_grads / task_grads.norm(dim=1, keepdim=True)
    projections = units @ combined
    assert torch.allclose(projections, projections[0].expand(4), atol=1e-8)
    # Two orthogonal gradients of norms a and b: weight b / (a + b) on the first.
    pair = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    assert torch.allclose(
        gradients.make("imtl_g", 2).combine(pair, None), torch.tensor([0.25 * 3.0, 0.75 * 1.0])
    )


def test_gradnorm_weights_sum_to_t_and_equalise_weighted_norms():
    """Unequal gradient scales, equal training rates: w_i ||g_i|| moves toward one value."""
    generator = torch.Generator().manual_seed(7)
    directions = torch.randn(3, 20, generator=generator)
    scales = torch.tensor([1.0, 4.0, 0.5])
    task_grads = directions / directions.norm(dim=1, keepdim=True) * scales.unsqueeze(1)
    method = gradients.make("gradnorm", 3, lr=0.05, norms="all")
    losses = torch.ones(3)

    def spread() -> float:
        weighted = method.weights_param.detach() * scales
        return float(weighted.max() / weighted.min())

    before = spread()
    for _ in range(200):
        method.combine(task_grads, losses)
        assert method.weights_param.detach().sum().item() == pytest.approx(3.0, rel=1e-5)
    assert spread() < 0.5 * before
    assert (
        method.weights_param.detach()[2] > method.weights_param.detach()[1]
    )  # small gradients weigh more


def test_gradnorm_keeps_the_first_losses_and_follows_training_rates():
    method = gradients.make("gradnorm", 2, alpha=1.0, lr=0.05, norms="all")
    task_grads = torch.eye(2)  # equal norms: only the rates matter
    method.combine(task_grads, torch.tensor([1.0, 1.0]))
    for _ in range(100):  # task 0's loss has not dropped, task 1's has halved
        method.combine(task_grads, torch.tensor([1.0, 0.5]))
    assert torch.equal(method.initial_losses, torch.tensor([1.0, 1.0]))
    assert method.weights_param[0] > method.weights_param[1]


def test_gradnorm_measures_norms_on_the_last_shared_weight_matrix_of_every_ensemble_member():
    """The engine's Gram assembly, the one training uses: the last weight matrix, and with twin
    critics the last one of each member together."""
    generator = torch.Generator().manual_seed(3)
    names = ["members.0.trunk.0.weight", "members.0.trunk.0.bias", "members.0.head.weight"]
    names += ["members.0.head.bias", "members.1.trunk.0.weight", "members.1.head.weight"]
    blocks = [torch.randn(2, n, generator=generator) for n in (6, 2, 4, 1, 6, 4)]
    whole, grams = assemble_gram(blocks)
    assert torch.allclose(whole, gram(torch.cat(blocks, 1)))
    layer = last_layer_gram(StepContext(tuple(names), tuple(grams)))
    assert torch.allclose(layer, gram(torch.cat([blocks[2], blocks[5]], 1)))
    assert last_layer_gram(StepContext(("a.bias",), tuple(grams[:1]))) is None  # no weight

    # combine() goes through the same assembly: with only the head's columns differing between
    # two layouts, GradNorm's weights differ only where the head's norms do.
    task_grads = torch.cat([torch.eye(2) * 5, torch.tensor([[1.0, 0.0], [0.0, 3.0]])], 1)
    layout = [("trunk.weight", 2), ("head.weight", 2)]
    method = gradients.make("gradnorm", 2, lr=0.1)
    for _ in range(20):
        method.combine(task_grads, torch.ones(2), layout)
    assert method.weights_param[0] > method.weights_param[1]  # the head's small norm weighs more


def test_loss_weightings_on_hand_computed_cases():
    losses = torch.tensor([2.0, 1.0, 4.0])
    initial = gradients.make("initial_loss", 3)
    first = initial.loss_weights(losses)
    assert torch.allclose(first, torch.tensor([0.5, 1.0, 0.25]) * 3 / 1.75)
    assert torch.allclose(initial.loss_weights(losses * 7), first)  # L(0) is kept
    realtime = gradients.make("realtime_loss", 3, normalize=False)
    assert torch.allclose(realtime.loss_weights(losses) * losses, torch.ones(3))
    lbtw = gradients.make("lbtw", 3, alpha=0.5, normalize=False)
    lbtw.loss_weights(losses)
    assert torch.allclose(lbtw.loss_weights(losses / 4), torch.full((3,), 0.5))
    grads = torch.diag(torch.tensor([1.0, 2.0, 4.0]))
    combined = gradients.make("gradnorm_normalization", 3, normalize=False).combine(grads, losses)
    assert torch.allclose(combined, torch.ones(3) / 3)


def test_dwa_uses_the_ratio_of_the_last_two_windows():
    dwa = gradients.make("dwa", 2, window=2, temperature=2.0)
    for losses in ([1.0, 1.0], [1.0, 1.0], [1.0, 0.5], [1.0, 0.5]):  # window means: 1,1 then 1,.5
        assert torch.allclose(dwa.loss_weights(torch.tensor(losses)), torch.ones(2))
    ratio = torch.tensor([1.0, 0.5])
    expected = 2 * torch.softmax(ratio / 2.0, 0)
    assert torch.allclose(dwa.loss_weights(torch.tensor([1.0, 1.0])), expected)


def test_uncertainty_weights_move_toward_inverse_losses():
    method = gradients.make("uncertainty", 2, lr=0.05)
    losses = torch.tensor([4.0, 0.25])
    for _ in range(500):
        weights = method.loss_weights(losses)
    assert torch.allclose(weights, 1.0 / losses, rtol=0.1)


def test_dtp_weighs_unsolved_tasks_more():
    dtp = gradients.make("dtp", 3, beta=0.5, gamma=2.0, normalize=False)
    for _ in range(40):
        dtp.observe(torch.tensor([0, 1, 2]), torch.tensor([0.9, 0.5, 0.1]))
    kpi = torch.tensor([0.9, 0.5, 0.1])
    expected = -((1 - kpi) ** 2) * torch.log(kpi)
    weights = dtp.loss_weights(torch.ones(3))
    assert torch.allclose(weights, expected, rtol=1e-2)
    assert weights[2] > weights[1] > weights[0]


@pytest.mark.parametrize("name", ["gradnorm", "uncertainty", "dwa", "lbtw", "dtp", "initial_loss"])
def test_stateful_methods_round_trip_through_state_dict(name, tmp_path):
    from mtrl.training.checkpoint import load_checkpoint, save_checkpoint

    generator = torch.Generator().manual_seed(8)
    task_grads = torch.randn(3, 12, generator=generator)
    method = gradients.make(name, 3, **({"window": 2} if name == "dwa" else {}))
    for k in range(5):
        losses = torch.rand(3, generator=generator) + 0.1
        method.observe(torch.tensor([k % 3]), torch.tensor([1.0]))
        method.combine(task_grads, losses)
    save_checkpoint(tmp_path / "method.pt", {"method": method.state_dict()})  # weights_only-safe
    restored = gradients.make(name, 3, **({"window": 2} if name == "dwa" else {}))
    restored.load_state_dict(load_checkpoint(tmp_path / "method.pt")["method"])
    for _ in range(3):
        losses = torch.rand(3, generator=generator) + 0.1
        assert torch.allclose(
            restored.combine(task_grads, losses), method.combine(task_grads, losses)
        )


def test_method_specs_carry_options_and_bad_options_are_refused():
    assert gradients.parse_spec("cagrad:c=0.25") == ("cagrad", {"c": 0.25})
    assert gradients.make("pcgrad_dir:scope=combined", 3).scope == "combined"
    with pytest.raises(ValueError, match="unknown option tau .*its options: c"):
        gradients.make("cagrad:tau=1", 3)


class NoKind(gradients.GradientMethod):
    """Neither a kind nor the contract before the kinds: no ``weights``."""


def test_a_method_of_no_kind_is_refused_in_one_line_before_a_run(monkeypatch):
    """It used to inherit the base's weights and train silently as the mean."""
    from mtrl.errors import ConfigError

    monkeypatch.setitem(gradients.GRADIENT_METHODS, "no_kind", NoKind)
    with pytest.raises(ConfigError, match="^agent.critic_grad: no_kind: NoKind is of no kind"):
        gradients.check_spec("agent.critic_grad", "no_kind")
