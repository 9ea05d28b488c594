"""``gradstep bench`` end to end on a tiny configuration (no timing assertions)."""

import json

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
