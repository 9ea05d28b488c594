"""``gradstep bench`` refuses bad option values, and options the chosen run does not use,
with exit status 2 and a message naming the option, before any timing starts."""

import pytest

from gradstep.cli import main

# small enough that a run which (wrongly) accepts the options below ends in seconds
NUMPY_RUN = ["bench", "--optimizers", "sgd", "--layouts", "1x10", "--no-torch", "--repeats", "1"]
TORCH_RUN = ["bench", "--backend", "torch", "--optimizers", "adam", "--repeats", "1"]
TORCH_RUN += ["--model", "1x8", "--vocab", "16", "--context", "4"]
CUDA_RUN = ["bench", "--backend", "torch", "--device", "cuda", "--optimizers", "adam"]


def exit_status(argv: list[str]) -> int:
    """The status ``gradstep`` exits with: argparse's errors exit, the runs return."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--model", "1x8"], "--model"),
        (["--model", "garbage"], "--model"),
        (["--vocab", "50257"], "--vocab"),  # the default value, said explicitly, too
        (["--vocab", "-5"], "--vocab"),
        (["--context", "0"], "--context"),
        (["--torch-loop"], "--torch-loop"),
        (["--device", "cuda"], "--device"),
        (["--cuda-layouts", "nonsense"], "--cuda-layouts"),
        (["--cuda-layouts", "gpt2"], "--cuda-layouts"),
        (["--steps", "-3"], "--steps"),
        (["--steps", "20"], "--steps"),
        (["--compile-torch"], "--compile-torch"),
    ],
)
def test_the_numpy_run_refuses_the_options_of_the_torch_runs(args, named, capsys):
    assert exit_status(NUMPY_RUN + args) == 2
    err = capsys.readouterr().err
    assert named in err and "--backend" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--layouts", "1x10"], "--layouts"),
        (["--state-dtypes", "bfloat16"], "--state-dtypes"),
        (["--no-torch"], "--no-torch"),
        (["--compile"], "--compile"),
        (["--steps", "5"], "--steps"),
        (["--cuda-layouts", "gpt2"], "--cuda-layouts"),
        (["--compile-torch"], "--compile-torch"),
    ],
)
def test_the_torch_run_refuses_the_options_of_the_other_runs(args, named, capsys):
    pytest.importorskip("torch", reason="needs torch (a test dependency)")
    assert exit_status(TORCH_RUN + args) == 2
    err = capsys.readouterr().err
    assert named in err and "--backend" in err, err


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--model", "2x16"], "--model"),
        (["--vocab", "100"], "--vocab"),
        (["--context", "8"], "--context"),
        (["--torch-loop"], "--torch-loop"),
        (["--layouts", "1x10"], "--layouts"),
        (["--state-dtypes", "bfloat16"], "--state-dtypes"),
        (["--compile"], "--compile"),
    ],
)
def test_the_cuda_run_refuses_the_options_of_the_other_runs(args, named, capsys):
    # refused before the run looks for a GPU, so this holds on any machine
    assert exit_status(CUDA_RUN + args) == 2
    err = capsys.readouterr().err
    assert named in err and "--device cuda" in err, err


@pytest.mark.parametrize(
    ("args", "named", "valid"),
    [
        (TORCH_RUN[1:] + ["--vocab", "-5"], "--vocab", "integer >= 1"),
        (TORCH_RUN[1:] + ["--context", "-3"], "--context", "integer >= 1"),
        (TORCH_RUN[1:] + ["--context", "0"], "--context", "integer >= 1"),
        (TORCH_RUN[1:] + ["--model", "garbage"], "--model", "LAYERSxWIDTH"),
        (TORCH_RUN[1:] + ["--model", "2x0"], "--model", "LAYERSxWIDTH"),
        (["--backend", "torch", "--device", "cuda", "--steps", "0"], "--steps", ">= 1"),
        (
            ["--backend", "torch", "--device", "cuda", "--cuda-layouts", "x"],
            "--cuda-layouts",
            "gpt2",
        ),
        (
            ["--backend", "torch", "--device", "cuda", "--cuda-layouts", "5x-1"],
            "--cuda-layouts",
            "gpt2",
        ),
        (["--repeats", "0"], "--repeats", "integer >= 1"),
        (["--layouts", "10"], "--layouts", "COUNTxSIZE"),
        (["--layouts", "0x5"], "--layouts", "COUNTxSIZE"),
        (["--layouts", "3x-5"], "--layouts", "COUNTxSIZE"),
        (["--layouts", ""], "--layouts", "COUNTxSIZE"),
        (["--state-dtypes", ""], "--state-dtypes", "bfloat16"),
        (["--optimizers", ""], "--optimizers", "comma-separated"),
        (["--optimizers", "sgd,"], "--optimizers", "comma-separated"),
        (NUMPY_RUN[1:] + ["--json", ""], "--json", "a file path"),
    ],
)
def test_bad_values_are_refused_while_parsing(args, named, valid, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert args[-2] == named  # the option tested comes last (it may be given twice)
    value = args[-1]
    assert f"argument {named}: invalid value {value!r}" in err, err
    assert valid in err, err


def test_device_cpu_is_what_the_numpy_run_does(tmp_path):
    # --device cpu says what the numpy run does: accepted, not a torch-only option
    code = main(NUMPY_RUN + ["--device", "cpu", "--json", str(tmp_path / "bench.json")])
    assert code == 0
