"""The README's first command: the demo runs offline and writes its figures."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_fast_runs_offline_and_writes_its_figures(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "minidiff", "demo", "--fast", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "toy_ddpm.png").stat().st_size > 10_000
    assert "[toy]" in proc.stdout
    from minidiff.training import pretrained

    if pretrained.available("shapes"):
        assert (tmp_path / "shapes_samples.png").stat().st_size > 10_000
        assert (tmp_path / "editing.png").stat().st_size > 30_000
        line = next(x for x in proc.stdout.splitlines() if x.startswith("[editing]"))
        assert "reconstruction_psnr_db" in line and "edits_correct" in line
