"""The command line: every subcommand documents itself, and bad prompts get a clear error."""

import re

import pytest

from minidiff.cli import main
from minidiff.training.checkpoint import save_model
from tests.test_checkpoint import tiny_model


@pytest.mark.parametrize("cmd", ["demo", "train", "sample", "export", "bench", "train-classifier"])
def test_every_subcommand_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([cmd, "--help"])
    assert exit_.value.code == 0
    assert "usage: python -m minidiff " + cmd in capsys.readouterr().out


def test_module_docstring_names_exactly_the_subcommands(capsys):
    """`python -m minidiff --help` shows the module docstring; its {a,b,...} list is argparse's own."""
    import minidiff.cli as cli

    with pytest.raises(SystemExit):
        main(["--help"])
    commands = re.search(r"\{[a-z,-]+\}", capsys.readouterr().out).group(0)  # the usage line's subcommands
    assert commands in cli.__doc__, (commands, cli.__doc__)


def test_sample_writes_a_grid_and_rejects_unknown_words(tmp_path, capsys):
    save_model(tiny_model(), tmp_path / "m")
    out = tmp_path / "grid.png"
    assert main(["sample", "--checkpoint", str(tmp_path / "m.json"), "--prompt", "a red circle", "--n", "2",
                 "--steps", "3", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(tmp_path / "m.json"), "--prompt", "a zebra", "--n", "1", "--steps",
                 "2", "--out", str(out)]) == 2  # one-line error, argparse's exit code
    err = capsys.readouterr().err  # (tqdm's progress bar also writes to stderr)
    ours = [line for line in err.splitlines() if line.startswith("minidiff:")]
    assert len(ours) == 1 and ours[0].startswith("minidiff: error:") and "zebra" in ours[0] and "Traceback" not in err
    with pytest.raises(ValueError, match="zebra"):  # --debug: the exception itself
        main(["--debug", "sample", "--checkpoint", str(tmp_path / "m.json"), "--prompt", "a zebra", "--n", "1",
              "--steps", "2", "--out", str(out)])


def test_bench_edict_prints_an_exact_edict_round_trip(capsys):
    """`bench edict` on the shapes model: EDICT's round trip is exact up to float32 round-off, DDIM's is not.
    Measured (2 scenes, 5 steps): EDICT (UC) MSE 1.1e-9 (2.4e-10 on `shapes_v1`), DDIM (UC) 2.2e-2. Round-off
    grows by 1/p^2 per step from float32's 6e-8, so 1e-8 bounds it at 5 steps; DDIM's error is a modelling error,
    far above 1e-3."""
    from minidiff.training import pretrained

    if not pretrained.available("shapes"):
        pytest.skip("shipped shapes checkpoint missing")
    assert main(["bench", "edict", "--n", "2", "--steps", "5"]) == 0
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in capsys.readouterr().out.splitlines()
            if line.startswith("| EDICT") or line.startswith("| DDIM")}
    assert float(rows["EDICT (UC)"].split()[0]) < 1e-8
    assert float(rows["DDIM (UC)"].split()[0]) > 1e-3


def test_bench_lists_exactly_the_registered_tables_and_each_runs_with_its_own_defaults(capsys):
    """`bench`'s choices are the registry's names; a table gets its own defaults, overridden by given options
    (None means not given), checkpoint 'shapes' unless the table says otherwise, and device 'cpu' unless given
    (the CLI's --device, resolved)."""
    from minidiff.bench.registry import TABLES
    from minidiff.bench.tables import BenchCommand

    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    usage = capsys.readouterr().out
    assert "{" + ",".join(TABLES) + "}" in usage
    seen = []
    table = BenchCommand("t", "a test table", seen.append, dict(n=5, w=[3.0]), lists=("w",))
    table({"n": None, "w": [1.0, 7.5], "seed": 2})
    assert seen == [{"checkpoint": "shapes", "device": "cpu", "n": 5, "w": [1.0, 7.5], "seed": 2}]
    assert TABLES["quality"].defaults["checkpoint"] == "cifar10"


def test_bench_refuses_several_values_of_an_option_its_table_does_not_sweep(capsys):
    """A table that takes one w (or steps, ...) says so instead of silently using the first value."""
    assert main(["bench", "edit", "--w", "3", "5"]) == 2
    assert "bench edit takes one --w value, got [3.0, 5.0]" in capsys.readouterr().err
    assert main(["bench", "quality", "--steps", "10", "25"]) == 2
    assert "(it sweeps --w)" in capsys.readouterr().err
