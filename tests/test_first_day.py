"""End to end: a user's first day, as docs/first-day.md tells it, run block by block on a CSV of 150 labelled
articles and a folder of unlabelled text, with the smoke model and the default comparison grid (whose 400-label
budget the small train split cannot fill). A page that drifts from the code breaks this test."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT, clone_env, copy_clone, dvc

pytestmark = pytest.mark.e2e
MARKER = "<!-- tests/test_first_day.py runs this block -->"


def page_blocks() -> list[str]:
    """The bash blocks of docs/first-day.md that follow the marker, in order."""
    text = (ROOT / "docs/first-day.md").read_text()
    return [part.split("```bash\n", 1)[1].split("\n```", 1)[0] for part in text.split(MARKER)[1:]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_block(block: str, clone: Path, log: Path) -> str:
    """One block under `bash -e`, in a session of its own (a server it starts in the background is stopped with
    it); output to a file, since a background process would hold a pipe open."""
    with log.open("w") as out:
        process = subprocess.Popen(["bash", "-e", "-c", block], cwd=clone, env=clone_env(clone), stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            status = process.wait(timeout=900)
        finally:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    output = log.read_text()
    assert status == 0, f"docs/first-day.md block failed ({status}):\n{block}\n---\n{output[-6000:]}"
    return output


def user_files(clone: Path) -> pd.DataFrame:
    """The user's data: 150 labelled articles (30 a topic) as a CSV with their own column names, and 100 other
    articles as unlabelled text, one .txt file each."""
    train = pd.read_parquet(clone / "data/prepared/train.parquet")  # BBC News, from the smoke run
    labelled = train.groupby("label").head(30)
    labelled.rename(columns={"text": "body", "label": "topic"})[["body", "topic"]].to_csv(
        clone / "data/raw/articles.csv", index=False)
    corpus = clone / "corpus/articles"
    corpus.mkdir(parents=True)
    for i, text in enumerate(train.drop(labelled.index)["text"].head(100)):
        (corpus / f"{i:03d}.txt").write_text(text)
    return labelled


def test_the_first_day_page_runs_from_a_csv_to_a_served_traced_model(smoke_run, tmp_path):
    clone = copy_clone(smoke_run[0], tmp_path / "ptft")
    labelled = user_files(clone)
    # The smoke model, with the default comparison grid: 25, 100, 400 and all labels; one seed, and none of the
    # variants and objectives, which the page does not name (tests/test_compare.py runs them).
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["compare"]["budgets"] = yaml.safe_load((ROOT / "params.yaml").read_text())["compare"]["budgets"]
    params["compare"].update(seeds=[1], variants=[], objectives=[])
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    blocks = page_blocks()
    assert len(blocks) == 6
    logs = iter(tmp_path / f"block-{i}.log" for i in range(1, 7))

    # 1-2: tracked, merged, prepared and estimated before anything trains.
    run_block(blocks[0], clone, next(logs))
    assert "data/raw/articles.csv" in subprocess.run(["git", "ls-files", "data/raw"], cwd=clone,
                                                     capture_output=True, text=True).stdout
    estimate = run_block(blocks[1], clone, next(logs))
    assert "Estimated time of each training stage" in estimate and "compare_scratch@all" in estimate
    assert "compare_scratch@400" not in estimate  # over the train split: not run, not estimated
    prepared = json.loads((clone / "reports/prepare/stats.json").read_text())
    assert prepared["source"] == "data/raw/articles.csv" and prepared["documents_read"] == len(labelled)
    train = prepared["splits"]["train"]["documents"]
    assert 100 <= train < 400

    # 3: the whole pipeline, the comparison included; the 400-label cells are skipped and named.
    output = run_block(blocks[2], clone, next(logs))
    assert "compare pretrained at 400: skipped" in output
    report = (clone / "reports/compare/results.md").read_text()
    assert re.search(rf"at 400: skipped, the train split has {train} labelled examples, fewer than 400", report)
    assert json.loads((clone / "reports/test/metrics.json").read_text())["documents"] > 0

    # 4: two queued experiments of the committed first run, both run.
    run_block(blocks[3], clone, next(logs))
    shown = json.loads(dvc("exp", "show", "--json", cwd=clone).stdout)
    experiments = shown[1]["experiments"] or []  # the commit's (shown[0] is the workspace)
    assert [(exp["executor"] or {}).get("state") for exp in experiments] == ["success", "success"]
    changed = {(finetune["lr"], finetune["init"]) for exp in experiments
               for finetune in [exp["revs"][0]["data"]["params"]["params.yaml"]["data"]["finetune"]]}
    assert changed == {(1e-4, "pretrained"), (params["finetune"]["lr"], "scratch")}

    # 5: three trials, scored on validation; the best one named with its apply command.
    output = run_block(blocks[4], clone, next(logs))
    assert "dvc exp apply articles-lr-" in output
    assert (clone / "reports/search/articles-lr/results.md").is_file()

    # 6: nothing reruns for export; the served model answers with one of the topics; its lineage names the CSV.
    block = blocks[5].replace("8000", str(_free_port()))
    output = run_block(block, clone, next(logs))
    assert "Stage 'export' didn't change, skipping" in output
    answer, _ = json.JSONDecoder().raw_decode(output[output.index('{"label"'):])  # curl prints no newline
    assert answer["label"] in set(labelled["label"])
    assert "data/raw/articles.csv" in output and "models/exported" in output
