"""ptft search without DVC: the search file's checks, and the study's seeding, pruning, resuming and report,
driven by a runner that scores a point at once. tests/test_search_pipeline.py runs real DVC experiments."""

from __future__ import annotations

import math

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from ptft.pipeline.params import load_params
from ptft.pipeline.pruning import TrialStore
from ptft.search.report import apply_commands, results_table, write_report
from ptft.search.spec import SearchError, SearchSpec, load_spec
from ptft.search.study import Run, Search, open_study, search_storage

PARAMS = load_params()
SPACE = {"finetune.lr": {"low": 1e-5, "high": 1e-2, "log": True}, "finetune.warmup": {"low": 0.0, "high": 0.3},
         "finetune.freeze": {"choices": ["none", "embeddings"]}}


def _spec(**fields) -> SearchSpec:
    return SearchSpec.model_validate({"study": "s", "trials": 5, "seeds": [1, 2], "startup_trials": 2,
                                      "space": SPACE, "pruner": None, **fields})


class Scorer:
    """Scores a run from its point (best at lr 1e-3), as a runner would after fine-tuning; ``stop_at`` raises
    KeyboardInterrupt in that run, as an interrupted search; ``bad`` runs are pruned (their first seed) or fail."""

    def __init__(self, store: TrialStore, stop_at: str | None = None, bad: str = "pruned"):
        self.store, self.stop_at, self.bad, self.ran, self.stopped = store, stop_at, bad, [], []

    def run(self, runs: list[Run], beat) -> dict[str, float | None]:
        scores = {}
        for run in runs:
            if run.name == self.stop_at:
                self.stop_at = None
                raise KeyboardInterrupt
            self.ran.append(run.name)
            beat()
            if run.values["finetune.freeze"] == "embeddings" and self.bad:
                if self.bad == "pruned" and run.report:
                    self.store.set_user_attr(run.number, "pruned_at", {"evaluation": 1, "value": 0})
                scores[run.name] = None
                continue
            lr, seed = run.values["finetune.lr"], run.values["finetune.seed"]
            scores[run.name] = 1 - (math.log10(lr) + 3) ** 2 / 10 - run.values["finetune.warmup"] / 10 + seed / 1000
        return scores

    def failure(self, run: Run) -> str:
        return "  finetune: error: made to fail"

    def stop(self, runs: list[Run]) -> None:
        self.stopped += [run.name for run in runs]


def _open(tmp_path, spec: SearchSpec, db: str) -> tuple[optuna.Study, TrialStore]:
    storage = search_storage(f"sqlite:///{tmp_path / db}", spec.grace_period)
    return open_study(spec, storage, "abc123"), TrialStore(storage, spec.study)


def _search(tmp_path, spec: SearchSpec, seed: int = 42, db: str = "study.db", **scorer) -> tuple[optuna.Study, Scorer]:
    study, store = _open(tmp_path, spec, db)
    runner = Scorer(store, **scorer)
    Search(spec, study, store, runner, seed, set(), log=lambda line: None).run()
    return study, runner


def _points(study: optuna.Study) -> list[dict]:
    return [trial.params for trial in study.get_trials()]


@pytest.mark.parametrize(("change", "message"), [
    ({"space": {"finetune.lrr": {"low": 1, "high": 2}}}, "space: 'finetune.lrr' is not a key of params.yaml "
                                                         "(did you mean finetune.lr?)"),
    ({"space": {"finetune.lr": {"low": 1e-3, "high": 1e-4}}}, "space.finetune.lr: an empty range: low (0.001) must be "
                                                              "below high (0.0001)"),
    ({"space": {"finetune.warmup": {"low": 0, "high": 0.3, "log": True}}}, "log: true needs low above 0"),
    ({"space": {"finetune.pooling": {"choices": ["mean", "max"]}}}, "space.finetune.pooling: finetune.pooling='max' "
                                                                    "is refused by params.yaml's schema: finetune."
                                                                    "pooling"),
    ({"space": {"finetune.lr": {"low": 0, "high": 1e-3}}}, "finetune.lr=0.0 is refused by params.yaml's schema"),
    ({"space": {"finetune.epochs": {"choices": []}}}, "space.finetune.epochs.choices: List should have at least 1"),
    ({"space": {"finetune.batch_size": {"low": 8, "high": 12.5}}}, "finetune.batch_size is a whole number"),
    ({"space": {"finetune.seed": {"choices": [1, 2]}}}, "finetune.seed is what `seeds` sets for each run"),
    ({"set": {"finetune.max_length": 4}}, "set: finetune.max_length=4 is refused by params.yaml's schema"),
    ({"first": [{"finetune.warmup": 0.1}]}, "first[0]: give exactly the keys of space"),
    ({"first": [{"finetune.lr": 1e-2}]}, "first[0]: finetune.lr=0.01 is outside space.finetune.lr"),
    ({"seeds": [1, 1]}, "seeds: [1, 1] repeat a seed"),
    ({"trails": 3}, "trails: Extra inputs are not permitted"),
    ({"study": "my study"}, "study: String should match pattern"),
])
def test_a_bad_search_file_is_one_line_naming_the_key(tmp_path, change, message):
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump({"study": "s", "space": {"finetune.lr": {"low": 1e-4, "high": 1e-3}}, **change}))
    with pytest.raises(SearchError) as err:
        load_spec(path, PARAMS)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(f"{path}: ")


def test_the_shipped_search_file_is_valid():
    spec = load_spec("configs/search.yaml", PARAMS)
    assert spec.set == {"finetune.train_examples": 100} and len(spec.seeds) == 3 and spec.trials >= 20


def test_every_trial_runs_each_seed_and_scores_their_mean(tmp_path):
    study, runner = _search(tmp_path, _spec(), bad="")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
    assert runner.ran[:2] == ["s-0-s1", "s-0-s2"]  # the first seed, then the others
    for trial in trials:
        scores = trial.user_attrs["scores"]
        assert set(scores) == {"1", "2"} and trial.value == pytest.approx(sum(scores.values()) / 2)


def test_the_same_seed_proposes_the_same_trials_and_another_seed_others(tmp_path):
    first, _ = _search(tmp_path, _spec(), db="a.db")
    again, _ = _search(tmp_path, _spec(), db="b.db")
    other, _ = _search(tmp_path, _spec(), seed=7, db="c.db")
    assert _points(first) == _points(again)  # the random start and the TPE trials after it
    assert _points(first) != _points(other)


def test_a_pruned_trial_counts_as_finished_and_a_failed_one_does_not(tmp_path):
    spec = _spec(first=[{"finetune.lr": 1e-3, "finetune.warmup": 0.0, "finetune.freeze": "embeddings"}])
    study, runner = _search(tmp_path, spec)
    states = [t.state for t in study.get_trials()]
    assert states[0] == TrialState.PRUNED and "s-0-s2" not in runner.ran  # its other seed never ran
    assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) == 5
    failing, _ = _search(tmp_path, spec, db="failing.db", bad="failed")
    states = [t.state for t in failing.get_trials()]
    assert states[0] == TrialState.FAIL and sum(s == TrialState.COMPLETE for s in states) == 5 - states.count(
        TrialState.PRUNED)


def test_an_interrupted_search_retries_its_trial_and_proposes_what_an_uninterrupted_one_does(tmp_path):
    spec = _spec(first=[{"finetune.lr": 1e-3, "finetune.warmup": 0.1, "finetune.freeze": "none"}])
    whole, _ = _search(tmp_path, spec, db="whole.db", bad="")
    study, store = _open(tmp_path, spec, "resumed.db")
    runner = Scorer(store, stop_at="s-2-s2", bad="")  # trial 2's second seed: its first has finished
    with pytest.raises(KeyboardInterrupt):
        Search(spec, study, store, runner, 42, set(), log=lambda line: None).run()
    assert runner.stopped == ["s-2-s1", "s-2-s2"]
    assert [t.state for t in study.get_trials()][2:] == [TrialState.FAIL, TrialState.WAITING]  # queued again at once
    lines = []
    Search(spec, study, store, runner, 42, set(), log=lines.append).run()
    assert "trial 3: retries trial 2, whose search stopped" in lines
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2 + [TrialState.FAIL] + [TrialState.COMPLETE] * 3
    assert runner.ran.count("s-2-s1") == 2 and runner.ran.count("s-2-s2") == 1  # the retry's runs keep trial 2's name
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    assert [t.params for t in finished] == _points(whole)  # the same points, each finished once
    assert [t.value for t in finished] == [t.value for t in whole.get_trials()]


def test_a_killed_searchs_trial_is_retried_by_another_search_once_its_heartbeat_is_stale(tmp_path):
    spec = _spec(trials=2, grace_period=4)
    study, store = _open(tmp_path, spec, "shared.db")
    lost = study.ask()  # a search that asked a trial, sampled it, beat once and was killed with its machine
    store.beat(lost.number)
    for key, dist in SPACE.items():
        lost.suggest_categorical(key, dist["choices"]) if "choices" in dist else lost.suggest_float(key, **dist)
    other, other_store = _open(tmp_path, spec, "shared.db")  # another machine's search on the same study
    runner, lines = Scorer(other_store, bad=""), []
    Search(spec, other, other_store, runner, 42, set(), log=lines.append).run()  # trial 1, then waits for trial 0
    trials = other.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert "trial 2: retries trial 0, whose search stopped" in lines and trials[2].params == trials[0].params
    assert runner.ran == ["s-1-s1", "s-1-s2", "s-0-s1", "s-0-s2"]  # the retry's runs under the lost trial's name


def test_a_study_resumes_only_with_the_same_search_on_the_same_commit(tmp_path):
    storage = search_storage(f"sqlite:///{tmp_path / 'study.db'}", 120)
    open_study(_spec(), storage, "abc123")
    with pytest.raises(SearchError, match="was started with another search"):
        open_study(_spec(seeds=[1, 2, 3]), storage, "abc123")
    open_study(_spec(trials=50, jobs=2, push="origin"), storage, "abc123")  # the same search on more machines
    with pytest.raises(SearchError, match="ran its trials on commit abc123, and this is def456"):
        open_study(_spec(), storage, "def456")


def test_the_report_names_the_best_trial_and_how_to_apply_it(tmp_path):
    spec = _spec(first=[{"finetune.lr": 1e-3, "finetune.warmup": 0.0, "finetune.freeze": "embeddings"}])
    study, _ = _search(tmp_path, spec)
    write_report(study, spec, tmp_path / "report")
    table = (tmp_path / "report/results.md").read_text()
    best = max((t for t in study.get_trials() if t.value is not None), key=lambda t: t.value)
    assert f"**Best: trial {best.number}**" in table
    assert f"`dvc exp apply s-{best.number}-s1 && dvc repro test`" in table
    assert "| 0 | pruned | 0.001 | 0 | embeddings |  |  |  | 1 (0.000) |" in table
    assert table == results_table(study, spec)
    for figure in ("history.png", "importances.png"):
        assert (tmp_path / "report" / figure).read_bytes()[:4] == b"\x89PNG"


def test_the_runner_refuses_to_queue_from_a_changed_work_tree_or_another_commit(tmp_path):
    import subprocess

    from ptft.search.runner import DvcExperiments

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "params.yaml").write_text("seed: 1\n")
    git("add", "params.yaml")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    runner = DvcExperiments(tmp_path, _spec(), "sqlite://", git("rev-parse", "HEAD"))
    runner._check_unchanged()
    (tmp_path / "params.yaml").write_text("seed: 2\n")
    with pytest.raises(SearchError, match="params.yaml changed during the search"):
        runner._check_unchanged()
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "two")
    with pytest.raises(SearchError, match="HEAD moved during the search"):
        runner._check_unchanged()


def test_push_needs_a_git_remote_and_a_default_dvc_remote_before_any_trial(tmp_path):
    import subprocess
    import sys

    from ptft.search.runner import check_push

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    check_push(_spec(), tmp_path)  # no push: nothing to check
    with pytest.raises(SearchError, match=r"push: 'origin' is not a git remote .* git remote add origin <url>"):
        check_push(_spec(push="origin"), tmp_path)
    subprocess.run(["git", "remote", "add", "origin", str(tmp_path / "shared.git")], cwd=tmp_path, check=True)
    with pytest.raises(SearchError, match=r"no default DVC remote: dvc remote add -d <name> <url>"):
        check_push(_spec(push="origin"), tmp_path)
    subprocess.run([sys.executable, "-m", "dvc", "remote", "add", "-d", "shared", str(tmp_path / "store")],
                   cwd=tmp_path, check=True)
    check_push(_spec(push="origin"), tmp_path)


def test_with_push_the_best_trial_is_pulled_before_it_is_applied(tmp_path):
    spec = _spec(push="origin")
    study, _ = _search(tmp_path, spec, bad="")
    best = max(study.get_trials(), key=lambda t: t.value)
    name = f"s-{best.number}-s1"
    assert apply_commands(study, spec) == [f"dvc exp pull origin {name}", f"dvc exp apply {name}", "dvc repro test"]
