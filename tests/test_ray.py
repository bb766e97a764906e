"""ngf compare --executor ray: the runs as Ray tasks on a local Ray instance give the local results."""

import builtins
import json

import pytest

from ngf.cli import main

ARGS = ["compare", "--plugin", "ngf_tiny_data", "--rules", "bp,lra", "--seeds", "0,1", "--datasets", "tiny",
        "--epochs", "2", "--batch-size", "32", "--model-opt", "widths=8", "--quiet"]


def results(folder):
    """Each run's test metrics, by its folder below the compare's."""
    return {str(p.parent.relative_to(folder)): {k: json.loads(p.read_text())[k] for k in ("test_loss", "test_accuracy")}
            for p in sorted(folder.rglob("summary.json"))}


def test_a_comparison_on_ray_equals_local_execution_is_retried_when_killed_and_is_read_back(tmp_path, capsys):
    """Every Ray task is SIGKILLed after its first epoch (ngf_ray_killer): each is sent again, resumes
    its checkpoint, and the four runs still end as the uninterrupted local ones."""
    pytest.importorskip("ray")
    assert main([*ARGS, "--out", str(tmp_path / "local")]) == 0
    killed = [*ARGS, "--plugin", "ngf_ray_killer", "--executor", "ray", "--out", str(tmp_path / "ray")]
    capsys.readouterr()
    assert main(killed) == 0
    assert capsys.readouterr().out.count("its Ray task died; sending it again (1 of 3)") == 4
    assert len(list(tmp_path.rglob("*.killed"))) == 4
    local, remote = results(tmp_path / "local"), results(tmp_path / "ray")
    assert len(local) == 4 and local.keys() == remote.keys()
    for run in local:
        assert remote[run] == pytest.approx(local[run], rel=1e-5, abs=1e-6), run
        starts = (tmp_path / "ray" / f"{run}.starts").read_text().split()
        assert starts == ["0", "1"], run  # the retry resumed after epoch 1 instead of starting again
    assert main(killed) == 0  # finished runs: read back
    assert capsys.readouterr().out.count("finished earlier") == 4
    assert (tmp_path / "ray" / "results.md").is_file()


def test_without_ray_the_executor_fails_in_one_line(tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert main([*ARGS, "--executor", "ray", "--out", str(tmp_path / "x")]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "error: --executor ray needs Ray, which is not installed: pip install 'ngf[ray]'"
