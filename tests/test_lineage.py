"""Unit tests for ptft.pipeline.lineage: DVC-compatible hashes, upstream params, rebuild commands, the stage frame."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import pytest
import yaml
from dvc_data.hashfile.build import build
from dvc_data.hashfile.db import HashFileDB
from dvc_objects.fs.local import LocalFileSystem

from ptft.cli import main
from ptft.pipeline.lineage import fingerprint, md5_path, producer_of, rebuild_command, upstream_param_keys
from ptft.pipeline.params import read_yaml
from ptft.pipeline.stage import run_stage
from tests.conftest import GIT_IDENTITY, ROOT


def dvc_md5(path) -> str:
    """The hash DVC itself computes, through its own library."""
    fs = LocalFileSystem()
    _, _, obj = build(HashFileDB(fs, tempfile.mkdtemp()), str(path), fs, "md5")
    return obj.hash_info.value


def test_md5_path_matches_dvc_for_files_and_directories(tmp_path):
    # "a-b/x" sorts before "a/b" as a string but after it by path parts: DVC sorts strings.
    for name, text in (("a/b", "1"), ("a-b/x", "2"), ("c", "3"), ("d/e/f.json", "{}")):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert md5_path(tmp_path) == dvc_md5(tmp_path)
    assert md5_path(tmp_path / "c") == dvc_md5(tmp_path / "c")
    with pytest.raises(FileNotFoundError):
        md5_path(tmp_path / "missing")


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git repository holding this project's dvc.yaml, params.yaml and stage code."""
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "stages", tmp_path / "stages")
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, **GIT_IDENTITY}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(["git", *args], check=True, env=env, capture_output=True)
    return tmp_path


def test_upstream_params_cover_every_stage_a_rebuild_runs(repo):
    keys = upstream_param_keys("finetune")
    assert {"seed", "runtime", "runtime.threads", "runtime.deterministic", "model", "finetune", "pretrain", "data",
            "prepare"} == keys
    assert upstream_param_keys("prepare") == {"seed", "runtime.threads", "runtime.deterministic", "data", "prepare"}
    assert producer_of("data/prepared/train.parquet", yaml.safe_load(open("dvc.yaml"))["stages"]) == \
        ("data/prepared", "prepare")


def test_rebuild_command_sets_exactly_the_params_that_differ_from_the_commit(repo):
    params = read_yaml("params.yaml")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    source = {"commit": commit, "dirty": False}
    assert rebuild_command("finetune", source, params) == f"git checkout {commit} && dvc repro finetune"
    params["pretrain"]["seq_len"] = 64
    params["finetune"]["train_examples"] = None
    params["evaluate"]["batch_size"] = 8  # not read by finetune or upstream: not part of its rebuild
    params["finetune"]["init"] = "hf:org/model"
    command = rebuild_command("finetune", source, params)
    assert command == (f"git checkout {commit} && dvc exp run finetune -S 'pretrain.seq_len=64' "
                       "-S 'finetune.init=hf:org/model'")
    params = read_yaml("params.yaml")
    params["finetune"]["lr"] = 1e-4
    params["finetune"]["seed"] = 7
    assert rebuild_command("finetune", source, params).endswith("-S 'finetune.lr=0.0001' -S 'finetune.seed=7'")
    assert rebuild_command("finetune", {"commit": commit, "dirty": True}, params) is None


def test_run_stage_keys_checkpoints_to_inputs_and_logs_each_run(repo, capsys):
    (repo / "checkpoints/evaluate/stale").mkdir(parents=True)
    (repo / "data/prepared").mkdir(parents=True)
    (repo / "data/prepared/validation.parquet").write_bytes(b"v1")
    (repo / "models/finetuned").mkdir(parents=True)
    with run_stage("evaluate") as run:
        first = run.checkpoint_dir
        first.mkdir(parents=True)
        assert not (repo / "checkpoints/evaluate/stale").exists()  # another run's inputs: dropped at start
    assert not (repo / "checkpoints/evaluate").exists()  # the stage succeeded: its checkpoints go
    (repo / "data/prepared/validation.parquet").write_bytes(b"v2")
    with pytest.raises(RuntimeError), run_stage("evaluate") as run:
        assert run.checkpoint_dir != first  # a changed dep changes the key
        run.checkpoint_dir.mkdir(parents=True)
        raise RuntimeError("boom")
    assert run.checkpoint_dir.is_dir()  # kept after a failure, for the next run to resume
    log = [json.loads(line) for line in (repo / "logs/evaluate.jsonl").read_text().splitlines()]
    assert [entry["status"] for entry in log] == ["succeeded", "failed"]
    assert log[0]["inputs_fingerprint"] == first.name != log[1]["inputs_fingerprint"]
    assert all(entry["wall_seconds"] >= 0 and entry["host"] for entry in log)


def test_fingerprint_is_stable_and_order_independent():
    a = {"params": {"seed": 1, "x": {"b": 2, "a": 1}}, "deps": {"f": "0"}}
    b = {"deps": {"f": "0"}, "params": {"x": {"a": 1, "b": 2}, "seed": 1}}
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint({**a, "deps": {"f": "1"}})


def test_ptft_lineage_refuses_what_is_not_an_artifact(repo, capsys):
    (repo / "models/finetuned").mkdir(parents=True)
    assert main(["lineage", "models/finetuned"]) == 2
    assert "models/finetuned has no lineage.json" in capsys.readouterr().err
    assert main(["lineage", "/"]) == 2
    assert "outside this repository" in capsys.readouterr().err
