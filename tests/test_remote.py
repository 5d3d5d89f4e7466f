"""End-to-end: push every artifact to an S3 remote (a real S3-compatible server on 127.0.0.1), pull it back."""

from __future__ import annotations

import shutil
import socket

import pytest
import yaml

from ptft.pipeline.lineage import md5_path
from tests.conftest import copy_clone, dvc, run

# In the dev extra; skipped only where someone installed ptft without it.
boto3 = pytest.importorskip("boto3")
pytest.importorskip("dvc_s3")
ThreadedMotoServer = pytest.importorskip("moto.server").ThreadedMotoServer

BUCKET = "ptft-remote"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint(monkeypatch_module) -> str:
    """moto's S3 server on a free local port, with one empty bucket; credentials in the environment."""
    for key, value in CREDENTIALS.items():
        monkeypatch_module.setenv(key, value)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def add_remote(clone, endpoint: str, prefix: str) -> None:
    # --local: the endpoint is this test's; a team would commit `dvc remote add -d` to .dvc/config.
    dvc("remote", "add", "--local", "-d", "storage", f"s3://{BUCKET}/{prefix}", cwd=clone)
    dvc("remote", "modify", "--local", "storage", "endpointurl", endpoint, cwd=clone)


def cached_outs(clone) -> dict[str, str]:
    """Every DVC-cached output with its md5 from dvc.lock (metrics and plots are cache: false: git has them)."""
    stages = yaml.safe_load((clone / "dvc.yaml").read_text())["stages"]
    cached = {out for spec in stages.values() for out in spec.get("outs", []) if isinstance(out, str)}
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage["outs"]
            if out["path"] in cached}


def test_push_then_pull_restores_every_artifact_exactly(smoke_run, s3_endpoint, tmp_path):
    clone = copy_clone(smoke_run[0], tmp_path / "ptft")
    add_remote(clone, s3_endpoint, "pushed")
    dvc("push", "--run-cache", cwd=clone)
    outs = cached_outs(clone)
    assert {"data/prepared", "data/tokenizer", "models/pretrained", "models/finetuned"} <= set(outs)

    shutil.rmtree(clone / ".dvc/cache")
    for path in outs:
        shutil.rmtree(clone / path) if (clone / path).is_dir() else (clone / path).unlink()
    dvc("pull", "--run-cache", cwd=clone)
    assert "Data and pipelines are up to date" in dvc("status", cwd=clone).stdout
    assert {path: md5_path(clone / path) for path in outs} == outs
    assert "Running stage" not in dvc("repro", cwd=clone).stdout


def test_a_teammate_pulls_the_main_results_and_an_experiment(smoke_run, s3_endpoint, tmp_path):
    mine, team = copy_clone(smoke_run[0], tmp_path / "mine"), tmp_path / "team.git"
    run(["git", "init", "--quiet", "--bare", str(team)], tmp_path)
    run(["git", "remote", "add", "team", str(team)], mine)
    run(["git", "commit", "--quiet", "-am", "smoke results"], mine)
    run(["git", "push", "--quiet", "team", "HEAD:main"], mine)
    add_remote(mine, s3_endpoint, "shared")
    dvc("push", cwd=mine)
    lr = yaml.safe_load((mine / "params.yaml").read_text())["finetune"]["lr"]
    # The main chain only (`test`): the comparison's cells would rerun too, and cost the suite a minute.
    dvc("exp", "run", "test", "--name", "half-lr", "--set-param", f"finetune.lr={lr / 2}", cwd=mine)
    dvc("exp", "push", "team", "half-lr", cwd=mine)  # the experiment's commit to git, its outputs to the remote
    experiment = cached_outs(mine)  # `dvc exp run` leaves the experiment in the workspace

    teammate = tmp_path / "teammate"
    run(["git", "clone", "--quiet", "--branch", "main", str(team), str(teammate)], tmp_path)
    add_remote(teammate, s3_endpoint, "shared")
    dvc("pull", cwd=teammate)
    main = cached_outs(teammate)
    assert {path: md5_path(teammate / path) for path in main} == main
    assert "Running stage" not in dvc("repro", cwd=teammate).stdout

    dvc("exp", "pull", "origin", "half-lr", cwd=teammate)
    dvc("exp", "apply", "half-lr", cwd=teammate)
    assert {path: md5_path(teammate / path) for path in experiment} == experiment
    assert experiment["models/finetuned"] != main["models/finetuned"]
    assert experiment["models/pretrained"] == main["models/pretrained"]
    assert "Data and pipelines are up to date" in dvc("status", "--with-deps", "test", cwd=teammate).stdout
