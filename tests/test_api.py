"""The public API: ``lorex.__all__`` is documented name by name, no function shadows a module, the commands are
Python functions with keyword arguments and the command line calls them."""

import types

import pytest

import lorex
from lorex import api
from lorex.cli import main
from lorex.errors import LorexError


def test_every_public_name_resolves_and_is_documented():
    for name in lorex.__all__:
        assert getattr(lorex, name) is not None
        assert f"``{name}``" in lorex.__doc__, f"{name} is not described in the package docstring"
    assert "distill_command" not in dir(lorex)


def test_modules_are_not_shadowed_by_functions():
    import lorex.benchmark
    import lorex.distill
    import lorex.evaluate

    for module in (lorex.evaluate, lorex.benchmark, lorex.distill):
        assert isinstance(module, types.ModuleType)
    assert lorex.evaluate_optimizer is lorex.evaluate.evaluate
    assert (lorex.train, lorex.benchmark_optimizer, lorex.distill_optimizer, lorex.reproduce) == (
        api.train, api.benchmark_optimizer, api.distill_optimizer, api.reproduce)


@pytest.mark.parametrize("fn", [api.train, api.benchmark_optimizer, api.distill_optimizer, api.reproduce])
def test_commands_take_keywords_after_the_first_argument(fn):
    import inspect

    params = list(inspect.signature(fn).parameters.values())
    positional = [p for p in params if p.kind == p.POSITIONAL_OR_KEYWORD]
    assert len(positional) <= 2 and fn.__doc__


def record_call(monkeypatch, name, result):
    calls = []

    def fake(*args, **kwargs):
        calls.append((args, kwargs))
        return result

    monkeypatch.setattr(api, name, fake)
    return calls


def test_cli_train_calls_lorex_train(monkeypatch, tmp_path, capsys):
    calls = record_call(monkeypatch, "train", [tmp_path / "run"])
    assert main(["train", "--task", "linreg", "--out", str(tmp_path / "run"), "--hidden", "4", "--set", "n=3"]) == 0
    (args, kwargs), = calls
    assert args == ("linreg", tmp_path / "run") and kwargs["hidden"] == 4 and kwargs["task_overrides"] == {"n": 3}
    assert "trained optimizer in" in capsys.readouterr().out
    calls.clear()
    assert main(["train", "--resume", str(tmp_path / "run")]) == 0
    assert calls == [((None,), {"resume": tmp_path / "run"})]


def test_cli_benchmark_and_distill_call_the_api(monkeypatch, capsys):
    import lorex.benchmark
    import lorex.distill

    bench = record_call(monkeypatch, "benchmark_optimizer", {})
    monkeypatch.setattr(lorex.benchmark, "format_table", lambda r: "TABLE")
    assert main(["benchmark", "--task", "linreg", "--test-seeds", "4", "--no-learned", "--search", "grid"]) == 0
    (args, kwargs), = bench
    assert args == ("linreg",) and kwargs["test_seeds"] == 4 and kwargs["learned"] is False
    assert kwargs["search"] == "grid"
    dist = record_call(monkeypatch, "distill_optimizer", {"wall_seconds": {"total": 1.0}})
    monkeypatch.setattr(lorex.distill, "format_table", lambda r: "TABLE")
    assert main(["distill", "--optimizer", "linreg", "--seed", "3"]) == 0
    (args, kwargs), = dist
    assert args == ("linreg",) and kwargs["seed"] == 3 and kwargs["task"] is None


def test_train_refuses_what_it_would_ignore(tmp_path):
    with pytest.raises(LorexError, match="task and out"):
        lorex.train("linreg")
    with pytest.raises(LorexError, match="resume"):
        lorex.train(resume=tmp_path, hidden=4)
    with pytest.raises(LorexError, match="seeds"):
        lorex.train("linreg", tmp_path / "x", seed=1, seeds=[0, 1])
    with pytest.raises(LorexError, match="hidden"):
        lorex.train("linreg", tmp_path / "x", hidden=0)


def test_train_then_load_a_tiny_optimizer(tmp_path):
    (run,) = lorex.train("linreg", tmp_path / "run", hidden=4, batch=2, unroll=6, steps=2, val_every=1, val_batch=2,
                         checkpoint_every=1, task_overrides={"n": 3, "m": 3}, progress=False)
    assert run == tmp_path / "run"
    import jax.numpy as jnp

    tx = lorex.load_optimizer(run)
    updates, _ = tx.update(jnp.ones(3), tx.init(jnp.zeros(3)))
    assert updates.shape == (3,)
