"""``gradstep bench --backend torch`` end to end on a tiny model shape (no timing
assertions)."""

import json

from gradstep.cli import main
from gradstep.cli.bench import transformer_shapes


def test_transformer_shapes_are_gpt2_small():
    shapes = transformer_shapes(12, 768, 50257, 1024)
    assert len(shapes) == 148
    assert sum(int.__mul__(*s) if len(s) == 2 else s[0] for s in shapes) == 124_439_808


def test_bench_torch_backend_writes_a_report(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "--backend", "torch", "--model", "1x16", "--vocab", "50", "--context", "8"]
    assert main(args + ["--optimizers", "adam,sgd", "--repeats", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["backend"] == "torch"
    rows = report["results"]
    assert [r["optimizer"] for r in rows] == ["Adam", "SGD"]
    assert rows[0]["gradstep_s"] > 0 and rows[0]["torch_fused_s"] > 0
    assert rows[0]["torch_foreach_s"] > 0 and rows[0]["torch_loop_s"] is None
    assert "| Adam |" in capsys.readouterr().out


def test_bench_torch_backend_rejects_other_optimizers(capsys):
    assert main(["bench", "--backend", "torch", "--optimizers", "lamb"]) == 2
    assert "torch.optim also has" in capsys.readouterr().err
