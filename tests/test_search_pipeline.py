"""End to end: `ptft search` on the smoke run, its trials real DVC experiments run by DVC's queue workers."""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from ptft.search.study import origin
from tests.conftest import ROOT, clone_env, copy_clone, dvc, run

pytestmark = pytest.mark.e2e
UNREADABLE_TEST_SPLIT = Path(__file__).parent / "unreadable_test_split"  # its sitecustomize refuses test.parquet
# The smoke model learns little from 50 documents in one epoch: the whole train split for two, so that a trial
# that cannot learn (lr 1e-9) is clearly behind at its first evaluation.
TRAIN = {"finetune.epochs": 2, "finetune.train_examples": None}


def _committed(smoke_run, to: Path) -> Path:
    clone = copy_clone(smoke_run[0], to)
    run(["git", "commit", "--quiet", "-am", "smoke results"], clone)
    return clone


def _search_file(path: Path, **search) -> Path:
    path.write_text(yaml.safe_dump({"seeds": [1], "startup_trials": 2, "set": TRAIN,
                                    "space": {"finetune.lr": {"low": 1e-9, "high": 1e-2, "log": True}}, **search}))
    return path


def _study(clone: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{clone / 'reports/search/study.db'}")


def _experiments(clone: Path) -> dict[str, tuple[str, dict]]:
    """`dvc exp show`'s experiments of the commit: name -> (state, finetune params)."""
    shown = json.loads(dvc("exp", "show", "--json", cwd=clone).stdout)
    return {exp["name"]: ((exp["executor"] or {}).get("state"),
                          exp["revs"][0]["data"]["params"]["params.yaml"]["data"]["finetune"])
            for exp in shown[1]["experiments"] or []}


def _guarded_env(clone: Path) -> dict[str, str]:
    return {"PYTHONPATH": f"{UNREADABLE_TEST_SPLIT}{os.pathsep}{clone / 'src'}"}


def test_a_search_runs_its_trials_as_dvc_experiments_on_two_workers_and_never_reads_the_test_split(
        smoke_run, tmp_path):
    clone = _committed(smoke_run, tmp_path / "ptft")
    spec = _search_file(tmp_path / "search.yaml", study="e2e", trials=3, jobs=2,
                        first=[{"finetune.lr": 3e-3}, {"finetune.lr": 1e-3}, {"finetune.lr": 1e-9}],
                        pruner={"percentile": 50, "startup_trials": 2, "warmup_evals": 0})
    # Every stage of every trial runs with the test split unreadable.
    output = run([sys.executable, "-m", "ptft.cli", "search", str(spec)], clone, env=_guarded_env(clone)).stdout
    study = _study(clone, "e2e")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    assert "trial 2: pruned" in output and "dvc exp apply e2e-" in output
    assert study.trials[2].user_attrs["pruned_at"]["evaluation"] == 1  # at its first evaluation, of two
    # Every trial is a DVC experiment of the commit, beside the others in `dvc exp show`.
    experiments = _experiments(clone)
    assert {name: state for name, (state, _) in experiments.items()} == {
        "e2e-0-s1": "success", "e2e-1-s1": "success", "e2e-2-s1": "failed"}  # the pruned run stopped the stage
    finetune = experiments["e2e-0-s1"][1]
    assert finetune["lr"] == 3e-3 and finetune["seed"] == 1 and finetune["epochs"] == 2
    for trial in study.trials[:2]:
        assert trial.value == pytest.approx(trial.user_attrs["scores"]["1"])
    report = clone / "reports/search/e2e"
    assert "**Best: trial" in (report / "results.md").read_text()
    assert all((report / figure).stat().st_size > 0 for figure in ("history.png", "importances.png"))
    # The guard works: the test stage, which reads the test split, fails under it.
    refused = run([sys.executable, "-m", "dvc", "exp", "run", "--temp", "test", "-S", "finetune.lr=3e-3", "-S",
                   "finetune.seed=1", "-S", "finetune.epochs=2", "-S", "finetune.train_examples=null"], clone,
                  env=_guarded_env(clone), check=False)
    assert refused.returncode != 0 and "the test split is unreadable" in refused.stdout + refused.stderr


@pytest.fixture
def postgres() -> str:
    """A PostgreSQL server of its own on 127.0.0.1 (Debian's package; .ci/run installs it): its URL."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres")) or [shutil.which("postgres")]
    if not found[-1]:
        if os.environ.get("PTFT_CI"):
            pytest.fail("PostgreSQL is not installed; .ci/run installs Debian's postgresql package")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    bindir = Path(os.path.realpath(found[-1])).parent
    home = Path(tempfile.mkdtemp(prefix="ptft-postgres-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: as the user Debian's package made for it
        os.chown(home, pwd.getpwnam("postgres").pw_uid, -1)
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_user, bindir / "initdb", "-D", home / "db", "-U", "ptft", "--auth=trust"], check=True,
                   capture_output=True, cwd=home)  # a folder its user may enter
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([*as_user, bindir / "postgres", "-D", home / "db", "-p", str(port), "-k", home,
                               "-c", "listen_addresses=127.0.0.1"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, cwd=home)
    url = f"postgresql+psycopg://ptft@127.0.0.1:{port}/postgres"
    deadline = time.monotonic() + 60
    while subprocess.run([bindir / "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode:
        assert server.poll() is None and time.monotonic() < deadline, "PostgreSQL did not start"
        time.sleep(0.2)
    yield url
    server.terminate()
    server.wait(timeout=60)
    shutil.rmtree(home, ignore_errors=True)


def _doc_block(marker: str, language: str = "bash") -> str:
    """docs/search.md's code block after ``marker``: the test runs what the page says."""
    text = (ROOT / "docs/search.md").read_text()
    return text[text.index(marker):].split(f"```{language}\n", 1)[1].split("```", 1)[0]


def _kill_machine(clone: Path, search: subprocess.Popen) -> None:
    """Kill a machine's search at once, with its DVC queue workers and the experiments they run."""
    import psutil

    search.kill()
    for process in psutil.process_iter(["cwd", "cmdline"]):
        if str(clone) in (process.info["cwd"] or "") + " ".join(process.info["cmdline"] or []):
            process.kill()


def test_two_machines_share_a_study_in_postgresql_and_a_killed_ones_trial_is_retried_by_the_other(
        smoke_run, tmp_path, postgres):
    # The shared places: a git repository, a DVC remote, a database. Two clones of one commit are the two machines.
    base = _committed(smoke_run, tmp_path / "base")
    run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(tmp_path / "shared.git")], tmp_path)
    run(["git", "remote", "set-url", "origin", str(tmp_path / "shared.git")], base)
    dvc("remote", "add", "--default", "shared", str(tmp_path / "dvc-remote"), cwd=base)
    shared = yaml.safe_load(_doc_block("<!-- tested: the keys of a shared search -->", "yaml"))  # the page's keys,
    assert set(shared) == {"storage", "push", "grace_period"}  # with this server's URL and a short grace period
    spec = {"study": "shared", "trials": 3, "jobs": 1, "seeds": [1], "startup_trials": 2, "pruner": None, "set": TRAIN,
            "space": {"finetune.lr": {"low": 1e-4, "high": 1e-2, "log": True}}, **shared, "storage": postgres,
            "grace_period": 20}
    (base / "configs/shared-search.yaml").write_text(yaml.safe_dump(spec))
    run(["git", "add", "configs/shared-search.yaml"], base)
    run(["git", "commit", "--quiet", "-am", "search on two machines"], base)
    run(["git", "push", "--quiet", "origin", "HEAD:refs/heads/main"], base)
    dvc("push", cwd=base)
    a, b = (copy_clone(base, tmp_path / name) for name in ("a", "b"))
    command = [sys.executable, "-m", "ptft.cli", "search", "configs/shared-search.yaml"]

    def start(clone: Path) -> subprocess.Popen:
        return subprocess.Popen(command, cwd=clone, env=clone_env(clone), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

    first = start(a)
    deadline = time.monotonic() + 600
    while "trial 0:" not in (line := first.stdout.readline()):
        assert line and time.monotonic() < deadline, "machine a's search ended before its first trial"
    second = start(b)
    study = optuna.load_study(study_name="shared", storage=postgres)
    while not study.trials[0].intermediate_values:  # machine a's run of trial 0 is one epoch into training
        assert first.poll() is None and time.monotonic() < deadline, "trial 0 never reported an evaluation"
        time.sleep(1)
    _kill_machine(a, first)
    output = second.communicate(timeout=900)[0]
    assert second.returncode == 0, output
    trials = optuna.load_study(study_name="shared", storage=postgres).trials
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 3 and trials[0].state == TrialState.FAIL
    finished = {origin(t): t for t in trials if t.state == TrialState.COMPLETE}
    assert len(finished) == 3  # three points, each finished once: trial 0's by its retry on the other machine
    retry = finished[0]
    assert retry.number > 0 and retry.params == trials[0].params
    assert f"trial {retry.number}: retries trial 0, whose search stopped" in output
    pushed = dvc("exp", "list", "--name-only", "origin", cwd=b).stdout.split()
    assert sorted(pushed) == sorted(f"shared-{number}-s1" for number in finished)  # under their first numbers
    # A third machine takes the best trial, as docs/search.md says.
    best = max(finished.values(), key=lambda t: (t.value, -t.number))
    name = f"shared-{origin(best)}-s1"
    script = _doc_block("<!-- tested: the best trial on a third machine -->")
    assert f"dvc exp pull origin {name}" in output  # the command the search prints is the page's
    third = tmp_path / "ptft-best"
    took = run(["bash", "-ec", script.replace("<git-url>", str(tmp_path / "shared.git")).replace("<best>", name)],
               tmp_path, env={"PYTHONPATH": str(third / "src")})
    assert "Running stage 'test'" in took.stdout and "Running stage 'finetune'" not in took.stdout
    assert yaml.safe_load((third / "params.yaml").read_text())["finetune"]["lr"] == pytest.approx(
        best.params["finetune.lr"])
    scores = json.loads((third / "reports/evaluate/metrics.json").read_text())
    assert scores["macro_f1"] == pytest.approx(best.value)
    assert (third / "reports/test/metrics.json").is_file()
