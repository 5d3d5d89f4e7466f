"""Unit tests for lineage: DVC's hashes and stages, the records, the commit search, drift, the stage frame."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from dvc_data.hashfile.build import build
from dvc_data.hashfile.db import HashFileDB
from dvc_objects.fs.local import LocalFileSystem

from ptft.cli import main
from ptft.pipeline.lineage import environment, fingerprint, lineage_record, md5_path, stage_inputs, stage_outputs
from ptft.pipeline.params import read_yaml
from ptft.pipeline.stage import run_stage
from ptft.trace import _from_cache, environment_drift, machine_drift, recorded_by, reproduce, run_log_entry
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
    """A git and DVC repository holding this project's dvc.yaml, params.yaml and stage code."""
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "stages", tmp_path / "stages")
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    monkeypatch.chdir(tmp_path)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
        git(*args)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], check=True, capture_output=True)
    return tmp_path


def git(*args: str) -> str:
    env = {**os.environ, **GIT_IDENTITY}
    return subprocess.run(["git", *args], check=True, env=env, capture_output=True, text=True).stdout.strip()


def test_md5_path_applies_the_repositorys_dvcignore(repo):
    (repo / "src/ptft/pipeline/__pycache__").mkdir()
    before = md5_path("src/ptft/pipeline")
    (repo / "src/ptft/pipeline/__pycache__/data.cpython-311.pyc").write_bytes(b"compiled")
    assert md5_path("src/ptft/pipeline") == before  # compiling the code changes no stage's dep
    (repo / "src/ptft/pipeline/data.py").write_text("# changed\n")
    assert md5_path("src/ptft/pipeline") != before


def test_stages_are_read_as_dvc_resolves_them(repo):
    params = read_yaml("params.yaml")
    focus = params["compare"]["focus_budget"]
    assert stage_outputs("compare_objective@clm", params) == [f"reports/compare/runs/objective-clm-{focus}.json"]
    assert stage_outputs("prepare", params) == ["data/prepared", "reports/prepare/stats.json"]
    assert stage_outputs("prepare_corpus", params) == ["data/corpus", "data/tokenizer",
                                                       "reports/prepare_corpus/stats.json"]
    (repo / "data/prepared").mkdir(parents=True)
    (repo / "data/prepared/validation.parquet").write_bytes(b"v")
    (repo / "models/finetuned").mkdir(parents=True)
    inputs = stage_inputs("evaluate", params)
    from ptft.stage_deps import closure

    assert list(inputs["deps"]) == [*closure("stages/evaluate.py", ROOT), "data/prepared/validation.parquet",
                                    "models/finetuned"]
    assert inputs["params"] == {"seed": 42, "runtime.threads": 2, "runtime.kernels": "avx2",
                                "runtime.deterministic": True, "evaluate.batch_size": params["evaluate"]["batch_size"]}


def test_lineage_records_data_inputs_and_software_but_no_code_or_git_state(repo):
    params = read_yaml("params.yaml")
    inputs = {"params": {"seed": 42}, "deps": {"stages/finetune.py": "1", "src/ptft/pipeline": "2.dir",
                                               "data/prepared/train.parquet": "3", "models/pretrained": "4.dir"}}
    record = lineage_record("finetune", "models/finetuned", params, inputs, {"accuracy": 0.5})
    assert record["deps"] == {"data/prepared/train.parquet": "3", "models/pretrained": "4.dir"}
    assert set(record) == {"artifact", "stage", "params", "deps", "metrics", "environment"}
    assert git("rev-parse", "HEAD") not in json.dumps(record) and str(repo) not in json.dumps(record)


def _commit_lock(outs: dict[str, str], message: str) -> str:
    lock = {"schema": "2.0", "stages": {"finetune": {"cmd": "python stages/finetune.py",
                                                     "outs": [{"path": p, "md5": m} for p, m in outs.items()]}}}
    Path("dvc.lock").write_text(yaml.safe_dump(lock))
    git("add", "dvc.lock")
    git("commit", "-qm", message)
    return git("rev-parse", "HEAD")


def test_the_commit_or_experiment_whose_dvc_lock_records_a_hash_is_found(repo):
    first = _commit_lock({"models/finetuned": "aaa.dir"}, "first model")
    second = _commit_lock({"models/finetuned": "bbb.dir", "models/other": "aaa.dir"}, "second model")
    (repo / "README.md").write_text("later work\n")
    git("add", "README.md")
    git("commit", "-qm", "unrelated")
    assert recorded_by("models/finetuned", "aaa.dir") == {"commit": first}  # not `second`, where it is another out
    assert recorded_by("models/finetuned", "bbb.dir") == {"commit": second}
    assert recorded_by("models/finetuned", "ccc.dir") is None
    git("checkout", "-q", "-b", "scratch")
    experiment = _commit_lock({"models/finetuned": "ccc.dir"}, "an experiment")
    git("checkout", "-q", "-")
    git("update-ref", f"refs/exps/{first[:2]}/{first[2:]}/half-lr", experiment)
    git("branch", "-D", "scratch")
    assert recorded_by("models/finetuned", "ccc.dir") == {"experiment": "half-lr"}
    assert reproduce("models/finetuned", "finetune", {"experiment": "half-lr"}) == {
        "restore": "dvc exp apply half-lr && dvc checkout models/finetuned",
        "rebuild": "dvc exp apply half-lr && dvc repro -f finetune"}
    assert reproduce("models/finetuned", "finetune", {"commit": first})["rebuild"] == \
        f"git checkout {first[:12]} && dvc repro -f finetune"


def test_environment_drift_names_each_version_that_differs():
    now = environment(2)
    built = {**now, "python": "3.0.0", "packages": {**now["packages"], "torch": "1.0.0"}}
    drift = environment_drift([{"artifact": "models/finetuned", "environment": built}])
    assert drift == ["models/finetuned: Python 3.0.0 when built, " + now["python"] + " here",
                     f"models/finetuned: torch 1.0.0 when built, {now['packages']['torch']} here"]
    assert environment_drift([{"artifact": "models/finetuned", "environment": now}]) == []


def test_lineage_is_read_back_from_a_dvc_cache_wherever_it_lives(repo, tmp_path_factory):
    cache = tmp_path_factory.mktemp("shared-cache")
    subprocess.run([sys.executable, "-m", "dvc", "cache", "dir", str(cache)], check=True, capture_output=True)
    (repo / "archive").mkdir()
    (repo / "archive/lineage.json").write_text('{"stage": "pretrain"}')
    (repo / "archive/weights").write_text("w")
    subprocess.run([sys.executable, "-m", "dvc", "add", "-q", "archive"], check=True, capture_output=True)
    md5 = md5_path("archive")
    shutil.rmtree(repo / "archive")
    assert _from_cache(md5) == {"stage": "pretrain"}
    assert any(cache.rglob("*.dir"))


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
    # The machine that ran it: CPU, torch's kernels, threads and every kernel variable; the tools' versions
    assert log[0]["machine"]["torch_cpu_capability"] and log[0]["machine"]["variables"]["MKL_CBWR"] == "AVX2,STRICT"
    assert log[0]["environment"]["packages"]["dvc"] and log[0]["environment"]["device"].startswith("cpu")


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_a_stage_with_one_line_and_the_shells_status(repo, signum, status):
    (repo / "data/prepared").mkdir(parents=True)
    (repo / "data/prepared/validation.parquet").write_bytes(b"v")
    (repo / "models/finetuned").mkdir(parents=True)
    script = ("import os, time\nfrom ptft.pipeline.stage import run_stage\nwith run_stage('evaluate'):\n"
              f"    os.kill(os.getpid(), {int(signum)})\n    time.sleep(60)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(repo / "src")})
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.splitlines()[-1].startswith("evaluate: interrupted in ")
    assert json.loads((repo / "logs/evaluate.jsonl").read_text().splitlines()[-1])["status"] == "interrupted"


def test_a_stage_sees_only_the_params_its_dvc_yaml_entry_declares(repo):
    from ptft.pipeline.params import ParamsError

    (repo / "data/prepared").mkdir(parents=True)
    (repo / "data/prepared/validation.parquet").write_bytes(b"v")
    (repo / "models/finetuned").mkdir(parents=True)
    with run_stage("evaluate") as run:
        assert run.params["evaluate"]["batch_size"] and run.params["runtime"]["threads"] == 2
        with pytest.raises(ParamsError, match="stage evaluate reads 'finetune', which its dvc.yaml entry does not "
                                              "declare: add it to the stage's params"):
            run.params["finetune"]
        with pytest.raises(ParamsError, match="reads 'runtime.bf16'"):
            run.params["runtime"]["bf16"]


def test_the_run_log_entry_of_an_artifact_is_found_by_its_recorded_inputs(repo):
    record = {"stage": "evaluate", "params": {"seed": 1}, "deps": {"data/x": "0"}}
    key = fingerprint({"params": record["params"], "deps": record["deps"]})
    (repo / "logs").mkdir()
    entries = [{"status": "succeeded", "lineage_inputs": key, "n": 1}, {"status": "failed", "lineage_inputs": key},
               {"status": "succeeded", "lineage_inputs": "other"}]
    (repo / "logs/evaluate.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    assert run_log_entry(record)["n"] == 1
    assert run_log_entry({**record, "deps": {"data/x": "1"}}) is None


def test_machine_drift_says_when_this_machine_would_build_other_bytes():
    from ptft.pipeline.kernels import kernel_facts
    from ptft.pipeline.lineage import run_environment

    here = {"machine": kernel_facts(), "environment": run_environment(2)}
    other_kernels = {**here, "machine": {**here["machine"], "torch_cpu_capability": "SOMETHING_ELSE"}}
    # Built on the other vendor's CPU than this one (CI's machines have been Intel and AMD).
    vendor = "GenuineIntel" if here["machine"]["cpu"]["vendor"] == "AuthenticAMD" else "AuthenticAMD"
    other_vendor = {**here, "machine": {**here["machine"], "cpu": {**here["machine"]["cpu"], "vendor": vendor}}}
    gpu = {**here, "environment": {**here["environment"], "device": "cuda (NVIDIA H100)"}}

    def record(kernels: str) -> dict:
        return {"artifact": "models/pretrained", "params": {"runtime": {"kernels": kernels}}}

    assert machine_drift(record("avx2"), here) == [] and machine_drift(record("native"), here) == []
    assert machine_drift(record("avx2"), None) == []  # no run log here: nothing known to compare
    assert "this machine picks" in machine_drift(record("native"), other_kernels)[0]
    assert machine_drift(record("avx2"), other_kernels) == []  # pinned: the machine's own choice does not matter
    assert "AVX2 reproducibility mode for Intel CPUs only" in machine_drift(record("avx2"), other_vendor)[0]
    assert machine_drift(record("compatible"), other_vendor) == []
    assert "built on cuda (NVIDIA H100)" in machine_drift(record("avx2"), gpu)[0]


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
