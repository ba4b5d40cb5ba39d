"""The command line: every subcommand documents itself, and bad prompts get a clear error."""

import pytest

from minidiff.__main__ import main
from minidiff.checkpoint import save_model
from tests.test_checkpoint import tiny_model


@pytest.mark.parametrize("cmd", ["demo", "train", "sample", "export", "bench", "train-classifier"])
def test_every_subcommand_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([cmd, "--help"])
    assert exit_.value.code == 0
    assert "usage: python -m minidiff " + cmd in capsys.readouterr().out


def test_sample_writes_a_grid_and_rejects_unknown_words(tmp_path):
    save_model(tiny_model(), tmp_path / "m")
    out = tmp_path / "grid.png"
    assert main(["sample", "--checkpoint", str(tmp_path / "m.json"), "--prompt", "a red circle", "--n", "2",
                 "--steps", "3", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    with pytest.raises(ValueError, match="zebra"):
        main(["sample", "--checkpoint", str(tmp_path / "m.json"), "--prompt", "a zebra", "--n", "1", "--steps", "2",
              "--out", str(out)])
