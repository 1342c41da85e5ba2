"""MOORE, PaCo, CARE and FiLM against their papers' formulas, and CARE's context file."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from test_networks import HIDDEN, OBS, OUT, STATE, T, _obs

from mtrl.agents.networks import bind_task_names, make_network, parameter_count
from mtrl.agents.networks.care import CAREBody
from mtrl.agents.networks.film import FiLMBody
from mtrl.agents.networks.moore import MOOREBody
from mtrl.agents.networks.paco import PaCoBody
from mtrl.errors import ConfigError

NAMES = ["reach", "push", "pick", "door"]


def _linear(a: int, b: int) -> int:
    return (a + 1) * b


def test_moores_expert_representations_are_orthonormal_per_state():
    body = MOOREBody(OBS, OUT, T, (16, 12), experts=5)
    x = _obs([0, 1, 2, 3]) * 3
    basis = body.basis(x)  # [G, B, k, d]
    gram = basis @ basis.transpose(-1, -2)  # [G, B, k, k]
    assert basis.shape == (T, 6, 5, 12)
    assert torch.allclose(gram, torch.eye(5).expand_as(gram), atol=1e-5)
    # The basis spans the experts' outputs: each output is its coordinates times the basis.
    raw = torch.stack([e(x[:1, :, :STATE]) for e in body.experts], -2)
    coords = raw @ basis[:1].transpose(-1, -2)
    assert torch.allclose(coords @ basis[:1], raw, atol=1e-4)


def test_moore_output_is_the_tasks_head_on_tanh_of_its_weighted_basis():
    body = MOOREBody(OBS, OUT, T, (16, 12), experts=3)
    x = _obs([2, 0])
    basis = body.basis(x)
    for group, task in enumerate([2, 0]):
        features = torch.tanh(torch.einsum("k,bkd->bd", body.task_weights[task], basis[group]))
        expected = features @ body.heads.weight[task] + body.heads.bias[task]
        assert torch.allclose(body(x)[group], expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"moore: experts \(13\) must be at most .* \(12\)"):
        MOOREBody(OBS, OUT, T, (16, 12), experts=13)


def test_pacos_task_weights_are_the_composition_of_the_shared_set():
    body = PaCoBody(OBS, OUT, T, HIDDEN, sets=3)
    x = _obs([3, 1])
    for group, task in enumerate([3, 1]):
        w = body.compositions[task]
        h = x[group, :, :STATE]
        for k, (layer, (weight, bias)) in enumerate(
            zip(body.layers, body.task_layers(task), strict=True)
        ):
            # theta_tau = Phi w_tau, layer by layer: sum_k w_k phi_k.
            hand_weight = sum(w[j] * layer.weight[j] for j in range(3))
            hand_bias = sum(w[j] * layer.bias[j] for j in range(3))
            assert torch.allclose(weight, hand_weight, atol=1e-6)
            assert torch.allclose(bias, hand_bias, atol=1e-6)
            h = h @ hand_weight + hand_bias
            h = torch.relu(h) if k < len(body.layers) - 1 else h
        assert torch.allclose(body(x)[group], h, atol=1e-5)
    # Phi is K sets of the whole network; w is K numbers per task.
    per_set = _linear(STATE, 16) + _linear(16, 12) + _linear(12, OUT)
    assert parameter_count(body) == 3 * per_set + T * 3


def test_cares_attention_sums_to_one_per_task_and_depends_on_the_task_only():
    body = CAREBody(OBS, OUT, T, HIDDEN, experts=4)
    x = _obs([0, 1, 2, 3]) * 4
    weights = body.attention(x)  # [G, B, experts]
    assert weights.shape == (T, 6, 4) and (weights >= 0).all()
    assert torch.allclose(weights.sum(-1), torch.ones(T, 6))
    assert torch.allclose(weights, weights[:, :1].expand_as(weights))  # the same for every state
    assert not torch.allclose(weights[0], weights[1])  # each task its own
    # The output is the torso on [sum_j alpha_j e_j(s), z_tau].
    context = body.context(x)
    encoded = torch.stack([e(x[..., :STATE]) for e in body.encoders], -2)
    mixture = torch.einsum("gbk,gbkd->gbd", weights, encoded)
    expected = body.torso(torch.cat([mixture, context.expand_as(mixture)], -1))
    assert torch.allclose(body(x), expected, atol=1e-6)


def test_care_reads_its_context_file_in_the_runs_task_order(tmp_path):
    vectors = {name: [float(i), 1.0, -float(i)] for i, name in enumerate(NAMES)}
    vectors["unused-task"] = [9.0, 9.0, 9.0]
    path = tmp_path / "context.json"
    path.write_text(json.dumps(vectors))
    body = make_network(f"care:context={path}", OBS, OUT, T, HIDDEN, ensemble=2)
    order = ["door", "reach", "pick", "push"]
    bind_task_names(body, order)
    for member in body.members:
        assert member.task_embedding is None
        assert torch.equal(member.metadata, torch.tensor([vectors[n] for n in order]))
    assert body(_obs([0, 1])).shape == (2, 2, 6, OUT)
    npz = tmp_path / "context.npz"
    np.savez(npz, **{name: np.array(vector) for name, vector in vectors.items()})
    from_npz = make_network(f"care:context={npz}", OBS, OUT, T, HIDDEN)
    bind_task_names(from_npz, order)
    assert torch.equal(from_npz.metadata, body.members[0].metadata)
    # A state dict carries the vectors: a copy built from the file is unbound until it loads one.
    fresh = make_network(f"care:context={path}", OBS, OUT, T, HIDDEN)
    with pytest.raises(RuntimeError, match="bind_task_names"):
        fresh(_obs([0]))
    fresh.load_state_dict(from_npz.state_dict())
    assert torch.equal(fresh(_obs([1])), from_npz(_obs([1])))


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "cannot read context file"),
        ("{not json", "cannot read context file"),
        ("[[1, 2]]", "must map task names to vectors"),
        ('{"reach": [1, 2], "push": [1, 2, 3]}', "'push' has 3 values, 'reach' has 2"),
        ('{"reach": [1, NaN]}', "'reach' has a NaN or infinite value"),
        ('{"reach": "text"}', "'reach' must be a non-empty list of numbers"),
    ],
)
def test_a_bad_context_file_is_one_line(tmp_path, content, message):
    path = tmp_path / "context.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message) as error:
        make_network(f"care:context={path}", OBS, OUT, T, HIDDEN)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_a_context_file_without_a_runs_task_is_one_line(tmp_path):
    path = tmp_path / "context.json"
    path.write_text(json.dumps({"reach": [1.0], "push": [2.0]}))
    body = make_network(f"care:context={path}", OBS, OUT, T, HIDDEN)
    with pytest.raises(ConfigError, match=r"no vector for task 'pick' \(and 1 more\)"):
        bind_task_names(body, NAMES)


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"point-0": [1, NaN]}', "agent.critic: care: context file .* NaN or infinite"),
        ('{"point-0": [1.0]}', "care: context file .* no vector for task 'point-1'"),
    ],
)
def test_a_bad_context_file_stops_the_cli_with_exit_2_and_one_line(tmp_path, content, message):
    """Read at the config check (a bad vector) or when the run binds its task names (a task the
    file lacks): either way one line and exit 2, before any step."""
    from mtrl_process import TINY, run_mtrl

    path = tmp_path / "context.json"
    path.write_text(content)
    run_dir = tmp_path / "run"
    spec = f"agent.critic=care:context={path}"
    result = run_mtrl("train", "--config", "synthetic", *TINY, spec, f"run_dir={run_dir}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), result.stderr
    assert not (run_dir / "checkpoints").exists()  # no step was taken


def test_films_modulation_is_gamma_times_h_plus_beta():
    body = FiLMBody(OBS, OUT, T, (16, 12))
    with torch.no_grad():
        body.modulation.normal_()
    x = _obs([1, 3])
    for group, task in enumerate([1, 3]):
        h = x[group]
        gammas = body.modulation[task, 0].split((16, 12))
        betas = body.modulation[task, 1].split((16, 12))
        for layer, gamma, beta in zip(body.hidden, gammas, betas, strict=True):
            pre = h @ layer.weight.T + layer.bias
            h = torch.relu(gamma * pre + beta)
        expected = h @ body.output.weight.T + body.output.bias
        assert torch.allclose(body(x)[group], expected, atol=1e-6)


def test_film_starts_as_the_plain_mlp():
    """gamma = 1, beta = 0 at initialisation: the shared MLP on state + one-hot."""
    film = FiLMBody(OBS, OUT, T, (16, 12))
    shared = make_network("shared", OBS, OUT, T, (16, 12))
    linears = [*film.hidden, film.output]
    with torch.no_grad():
        for mine, theirs in zip(linears, shared.net[::2], strict=True):
            theirs.load_state_dict(mine.state_dict())
    x = _obs([0, 1, 2, 3])
    assert torch.allclose(film(x), shared(x), atol=1e-6)


def _context_file(tmp_path, tasks: int = 4):
    """A context file for the synthetic env's tasks (point-0 ..), 3 numbers each."""
    path = tmp_path / "context.json"
    path.write_text(json.dumps({f"point-{i}": [float(i), 1.0, -float(i)] for i in range(tasks)}))
    return path


@pytest.mark.parametrize("pair", ["moore/paco", "film/care"])
def test_the_new_bodies_resume_exactly_from_a_checkpoint(tmp_path, pair):
    """Straight through and split at a checkpoint then resumed give the same records, with the
    bodies' task-specific parameters (and CARE's context vectors) in the checkpoint."""
    from test_critic_recipe import _split_and_whole

    actor, critic = pair.split("/")
    if critic == "care":
        critic = f"care:context={_context_file(tmp_path)},experts=2"
    _split_and_whole(tmp_path, [f"agent.actor={actor}", f"agent.critic={critic}"])


def test_a_care_run_loads_evaluates_and_resumes_without_its_context_file(tmp_path):
    """The checkpoint holds the context vectors: mtrl.load_policy, mtrl eval and a resume use
    them when the file is gone; a resume whose file now says otherwise is one line, exit 2."""
    from mtrl_process import TINY, run_mtrl

    import mtrl

    path = _context_file(tmp_path)
    run_dir = tmp_path / "run"
    spec = f"agent.critic=care:context={path},experts=2"
    actor = f"agent.actor=care:context={path},experts=2"
    tiny = [*TINY, "total_steps=200"]
    trained = run_mtrl("train", "--config", "synthetic", *tiny, spec, actor, f"run_dir={run_dir}")
    assert trained.returncode == 0, trained.stderr
    before = mtrl.load_policy(run_dir)
    path.unlink()
    policy = mtrl.load_policy(run_dir)
    obs = np.zeros((4, policy.state_dim), dtype=np.float32)
    tasks = policy.trained_tasks
    assert np.array_equal(policy.predict(obs, tasks), before.predict(obs, tasks))
    evaluated = run_mtrl("eval", str(run_dir), "--episodes", "1")
    assert evaluated.returncode == 0, evaluated.stderr
    resumed = run_mtrl("train", "--resume", str(run_dir), "total_steps=300")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run_dir / "run.json").read_text())["step"] == 300
    path.write_text(json.dumps({f"point-{i}": [0.0, 0.0, 0.0] for i in range(4)}))
    changed = run_mtrl("train", "--resume", str(run_dir), "total_steps=400")
    assert changed.returncode == 2
    lines = changed.stderr.strip().splitlines()
    assert len(lines) == 1 and "differ from the run's checkpoint" in lines[0], changed.stderr


def _paco_agent(spec: str):
    from test_sac import _agent

    return _agent(actor=spec, critic=spec)


def _tables(agent) -> list[torch.Tensor]:
    return [body.compositions.detach().clone() for body in agent.paco_bodies]


def test_paco_resets_a_diverging_tasks_vector_to_a_convex_combination_of_the_others():
    """Task 1's critic loss passes the threshold: its w in every PaCo body (actor, critics,
    targets) becomes one random convex combination of tasks 0 and 2's, the same draw for all,
    reproducible from torch's seed; the other tasks' vectors are untouched."""
    agent = _paco_agent("paco:reset_threshold=3000,sets=3")
    assert len(agent.paco_bodies) == 5  # actor, two critics, two targets
    before = _tables(agent)
    torch.manual_seed(11)
    metrics = {"per_task/critic_loss": torch.tensor([10.0, 4000.0, 2999.0])}
    agent.after_update(metrics, None, False)
    torch.manual_seed(11)
    mixing = torch.rand(1, 2)
    mixing /= mixing.sum()
    assert (mixing >= 0).all() and torch.isclose(mixing.sum(), torch.tensor(1.0))
    for old, new in zip(before, _tables(agent), strict=True):
        assert torch.equal(new[[0, 2]], old[[0, 2]])
        assert torch.allclose(new[1], (mixing @ old[[0, 2]])[0], atol=1e-6)
        assert not torch.allclose(new[1], old[1])
    assert agent.paco_resets == 1 and float(metrics["charts/paco_resets"]) == 1.0
    # Every task above the threshold: none to combine, nothing reset.
    agent.after_update({"per_task/critic_loss": torch.full((3,), 1e4)}, None, False)
    assert agent.paco_resets == 1


def test_paco_reset_state_survives_a_checkpoint_round_trip():
    agent = _paco_agent("paco:reset_threshold=5")
    agent.after_update({"per_task/critic_loss": torch.tensor([1.0, 2.0, 9.0])}, None, False)
    fresh = _paco_agent("paco:reset_threshold=5")
    fresh.load_state_dict(agent.state_dict())
    assert fresh.paco_resets == 1
    for mine, theirs in zip(_tables(agent), _tables(fresh), strict=True):
        assert torch.equal(mine, theirs)


def test_paco_without_reset_threshold_changes_nothing():
    """Off (the default): no body to reset, no metric, the vectors and torch's random stream as
    they were whatever the losses; on but never exceeded, the updates are bit for bit those of
    the default."""
    from test_sac import _batch

    plain = _paco_agent("paco")
    assert plain.paco_bodies == []
    tables = [m.compositions for m in plain.critic.modules() if isinstance(m, PaCoBody)]
    before, rng = [table.detach().clone() for table in tables], torch.get_rng_state()
    metrics = {"per_task/critic_loss": torch.full((3,), 1e9)}
    plain.after_update(metrics, None, False)
    assert "charts/paco_resets" not in metrics and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(a, b) for a, b in zip(before, tables, strict=True))
    runs = []
    for spec in ("paco", "paco:reset_threshold=1000000"):
        agent = _paco_agent(spec)
        records = [agent.update(_batch(seed=k)) for k in range(3)]
        runs.append((agent.state_dict(), records))
    (state, records), (state_on, records_on) = runs
    for part in ("actor", "critic", "critic_target"):
        assert all(torch.equal(v, state_on[part][k]) for k, v in state[part].items())
    for record, record_on in zip(records, records_on, strict=True):
        assert record_on.pop("charts/paco_resets") == 0
        assert record.keys() == record_on.keys()
        assert all(torch.equal(v, record_on[k]) for k, v in record.items())


@pytest.mark.parametrize("value", ["0", "-3", "3e3", "true", "big"])
def test_a_bad_paco_reset_threshold_is_one_line(value):
    from mtrl.agents.networks import check_spec

    with pytest.raises(ConfigError, match="paco: reset_threshold must be a positive number") as e:
        check_spec("agent.critic", f"paco:reset_threshold={value}", HIDDEN, T)
    assert "\n" not in str(e.value) and str(e.value).startswith("agent.critic: ")


def test_paco_resets_resume_exactly_from_a_checkpoint(tmp_path):
    """synthetic-scaled:3's third task (rewards x100) passes the reference's threshold: its
    vectors are reset again and again, and a run split at a checkpoint and resumed logs what the
    straight run does (vectors, counter and random stream in the checkpoint)."""
    from test_critic_recipe import _split_and_whole

    spec = "paco:reset_threshold=3000"
    options = ["env.name=synthetic-scaled:3", f"agent.actor={spec}", f"agent.critic={spec}"]
    whole, _ = _split_and_whole(tmp_path, options)
    resets = [r["charts/paco_resets"] for r in whole if "charts/paco_resets" in r]
    assert resets[-1] > resets[0] >= 0 and resets == sorted(resets)
