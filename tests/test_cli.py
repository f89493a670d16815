import json

import pytest

from lorex.cli import main


@pytest.mark.parametrize("argv,field", [
    (["benchmark", "--task", "nope"], "task"),
    (["benchmark", "--task", "linreg", "--optimizers", "lbfgs"], "optimizer"),
    (["benchmark", "--task", "linreg", "--steps", "0"], "steps"),
    (["benchmark", "--task", "linreg", "--test-seeds", "-3"], "test-seeds"),
    (["tune", "--task", "linreg", "--tuning-seeds", "0"], "tuning-seeds"),
    (["tune", "--task", "not a module:x:y"], "task"),
    (["tune", "--task", "no_such_module_xyz:task"], "task"),
    (["tune", "--task", "linreg", "--set", "bogus=1"], "linreg.bogus"),
    (["train", "--task", "linreg", "--out", "x", "--hidden", "0"], "hidden"),
    (["train", "--task", "linreg", "--out", "x", "--objective", "max"], "objective"),
    (["benchmark", "--task", "linreg", "--optimizer", "/no/such/dir"], "optimizer"),
])
def test_bad_input_exits_2_with_one_line(argv, field, capsys):
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main(argv))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("lorex: error:") and field in err
    assert "Traceback" not in err


def test_benchmark_writes_results_and_figure(tmp_path, capsys):
    code = main(["benchmark", "--task", "linreg", "--steps", "20", "--tuning-seeds", "4", "--test-seeds", "8",
                 "--optimizers", "sgd", "momentum", "--no-learned", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "momentum" in out and "final loss" in out
    res = json.loads((tmp_path / "results.json").read_text())["benchmark"]
    assert set(res["optimizers"]) == {"sgd", "momentum"}
    row = res["optimizers"]["momentum"]
    assert row["n_runs"] == 8 and len(row["curve_mean"]) == 21 and "momentum" in row["hyperparameters"]
    assert (tmp_path / "performance_linreg.png").stat().st_size > 1000
    assert (tmp_path / "performance_linreg.pdf").exists()
