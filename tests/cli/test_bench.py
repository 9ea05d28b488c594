"""``gradstep bench`` end to end on a tiny configuration (no timing assertions)."""

import json

import pytest

from gradstep.cli import main


def test_bench_writes_a_report(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(
        [
            "bench",
            "--optimizers",
            "sgd,adam",
            "--layouts",
            "3x100,1x0",
            "--repeats",
            "1",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert report["bandwidth_gbs"]["best"] > 0
    rows = report["results"]
    assert [(r["optimizer"], r["layout"]) for r in rows] == [
        ("sgd", "3x100"),
        ("sgd", "1x0"),
        ("adam", "3x100"),
        ("adam", "1x0"),
    ]
    adam = rows[2]
    assert adam["traffic_bytes"] == 4 * 300 * (3 + 2 * 2)
    assert adam["torch_fused_s"] > 0 and adam["fused_s"] > 0
    assert "| adam | 3x100 |" in capsys.readouterr().out


def test_bench_rejects_unknown_optimizers(capsys):
    assert main(["bench", "--optimizers", "adamm"]) == 2
    assert "unknown optimizer" in capsys.readouterr().err


def test_bench_refuses_a_rule_the_fused_engine_does_not_run(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "--optimizers", "adam,adafactor", "--layouts", "2x100", "--no-torch"]
    assert main(args + ["--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert "adafactor: not run by the fused engine" in err and "--references" in err
    assert not out.exists()


def test_bench_writes_no_file_unless_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["bench", "--optimizers", "sgd", "--layouts", "2x10", "--repeats", "1"])
    assert code == 0
    assert list(tmp_path.iterdir()) == []
    assert "sgd" in capsys.readouterr().out


def test_contended_runs_are_reported(monkeypatch):
    from gradstep.cli import _bench_report

    monkeypatch.setattr(_bench_report, "SPREADS", [0.9, 1.2, 0.8, 0.1])
    monkeypatch.setattr(_bench_report.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    warning = _bench_report.load_warning()
    assert warning is not None and "3 of 4 cases varied" in warning
    monkeypatch.setattr(_bench_report, "SPREADS", [0.1, 0.2])
    assert _bench_report.load_warning() is None
    monkeypatch.setattr(_bench_report.os, "getloadavg", lambda: (64.0, 0.0, 0.0))
    assert "load average 64.0" in _bench_report.load_warning()


def test_bench_reports_state_bytes_per_parameter(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "--optimizers", "adam", "--layouts", "2x1000", "--repeats", "1"]
    code = main(args + ["--state-dtypes", "param,bfloat16", "--no-torch", "--json", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())["results"]
    assert [r["state_dtype"] for r in rows] == ["param", "bfloat16"]
    # two slots of 4 and of 2 bytes per parameter (and the step count)
    assert rows[0]["state_bytes_per_param"] == (2 * 4 * 2000 + 8) / 2000
    assert rows[1]["state_bytes_per_param"] == (2 * 2 * 2000 + 8) / 2000
    assert rows[1]["traffic_bytes"] == 4 * 2000 * 3 + 2 * 2 * 2000 * 2
    assert "| adam | 2x1000 | bfloat16 | 4.00 |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:  # refused while parsing
        main(args + ["--state-dtypes", "int4"])
    assert exit_.value.code == 2


def test_cuda_bench_8bit_case_moves_a_code_and_a_scale_share_per_slot():
    # the case builds here on CPU tensors: gradstep's AdamW with 8-bit state against
    # torch's AdamW with its own float32 state (torch has no state_dtype option)
    torch = pytest.importorskip("torch", reason="needs torch (a test dependency)")
    import gradstep
    import gradstep.torch as gt
    from gradstep.cli import bench_cuda

    *_, slots = bench_cuda.CASES["adamw_int8"]
    assert (3 + 2 * slots) * 4 == 12 + 2 * 2 * (1 + 4 / 256)  # bytes per float32 parameter
    params = [torch.nn.Parameter(torch.zeros(5000))]
    params[0].grad = torch.ones(5000)
    ours = bench_cuda.gradstep_optimizer("adamw_int8", params, gt, gradstep)
    ours.step()
    assert ours.state[params[0]]["exp_avg"].dtype == torch.uint8
    assert set(bench_cuda.torch_contenders("adamw_int8", params, torch, False)) == {
        "torch_fused",
        "torch_foreach",
    }
