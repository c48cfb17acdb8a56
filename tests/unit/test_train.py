"""`robolake train` end to end on the embedded default: produce, relabel, train, metrics in the
lake, an atomic checkpoint, resume, and the errors a user meets."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="the learner extra is not installed")

from robolake.cli import main  # noqa: E402
from tests.lake_helpers import count, open_lake  # noqa: E402


@pytest.fixture
def lake(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBOLAKE_BUS", "memory")
    monkeypatch.setenv("ROBOLAKE_LAKE", f"file://{tmp_path}/lake")
    assert main(["produce", "--episodes", "2", "--task", "lift_red", "--noise", "0.1"]) == 0
    assert main(["relabel", "--rewards", "reach_red", "lift_red", "--name", "d"]) == 0
    from infra.settings import Settings

    return Settings.load()


def test_train_writes_metrics_and_a_checkpoint_then_resumes(lake, tmp_path, capsys):
    assert main(["train", "--dataset", "d", "--steps", "6", "--checkpoint-every", "3", "--run-id", "r1"]) == 0
    assert "trained run r1 to step 6" in capsys.readouterr().out
    checkpoints = sorted(p.name for p in (tmp_path / "lake" / "checkpoints" / "r1").iterdir())
    assert checkpoints == ["latest", "step-000000003.pt", "step-000000006.pt"]
    assert count(lake, "SELECT count(DISTINCT step) FROM (SELECT unnest(from_json(payload_json, '[\"json\"]')) ->> "
                       "'step' AS step FROM events WHERE type = 'learner.metrics')") >= 1
    assert main(["train", "--dataset", "d", "--steps", "8", "--run-id", "r1", "--resume"]) == 0
    assert "to step 8" in capsys.readouterr().out


def test_colour_symmetry_is_on_by_default_and_a_flag_turns_it_off(lake, monkeypatch):
    from learner.checkpoints import CheckpointStore
    from learner.pac.learning import PACLearner
    from learner.symmetry import ColourSymmetry

    # What the symmetry returns is what the learner trains on.
    apply, step, learned = ColourSymmetry.apply, PACLearner.step, []
    monkeypatch.setattr(ColourSymmetry, "apply", lambda self, *args: {**apply(self, *args), "recoloured": True})
    monkeypatch.setattr(PACLearner, "step", lambda self, batch, **kw: learned.append("recoloured" in batch)
                        or step(self, batch, **kw))
    assert main(["train", "--dataset", "d", "--steps", "2", "--run-id", "on"]) == 0
    assert learned == [True, True] and CheckpointStore(lake, "on").load_latest()["config"]["colour_symmetry"] is True
    assert main(["train", "--dataset", "d", "--steps", "2", "--run-id", "off", "--no-colour-symmetry"]) == 0
    assert learned[2:] == [False, False]
    assert CheckpointStore(lake, "off").load_latest()["config"]["colour_symmetry"] is False


def test_a_resumed_run_continues_as_it_was_saved_but_for_what_the_caller_sets(lake):
    from learner.checkpoints import CheckpointStore
    from learner.pac.config import get_config
    from learner.train import train

    # A run of `tiny` from before its critic narrowed and colour symmetry existed.
    old = get_config("tiny").replace(critic_hidden=128, sampled_actions=16)
    train(lake, old, "d", 2, "old", device="cpu", checkpoint_every=2)
    store = CheckpointStore(lake, "old")
    state = store.load_latest()
    del state["config"]["colour_symmetry"]
    store.save(3, state)
    assert main(["train", "--dataset", "d", "--steps", "5", "--run-id", "old", "--resume"]) == 0
    resumed = store.load_latest()["config"]
    assert (resumed["critic_hidden"], resumed["sampled_actions"], resumed["colour_symmetry"]) == (128, 16, False)
    # A flag set on resuming applies; what was set at the start stays without it.
    assert main(["train", "--dataset", "d", "--steps", "2", "--run-id", "off", "--no-colour-symmetry"]) == 0
    assert main(["train", "--dataset", "d", "--steps", "3", "--run-id", "off", "--resume", "--alpha", "1"]) == 0
    resumed = CheckpointStore(lake, "off").load_latest()["config"]
    assert (resumed["colour_symmetry"], resumed["alpha"]) == (False, 1.0)


def test_a_resumed_run_restarts_its_schedule_where_asked_and_renormalises_for_new_skills(lake, monkeypatch):
    from learner.pac.config import get_config
    from learner.pac.learning import PACLearner
    from learner.train import train

    step, seen = PACLearner.step, []
    monkeypatch.setattr(PACLearner, "step", lambda self, batch, lr_scale=1.0: seen.append(
        (round(lr_scale, 3), bool(self.model.normalizer_ready))) or step(self, batch, lr_scale=lr_scale))
    config = get_config("tiny")
    train(lake, config, "d", 4, "r", device="cpu", checkpoint_every=4, skills=("reach_red",))
    assert seen[0] == (1.0, False) and seen[-1][1], "the first step sets the normaliser"
    seen.clear()  # the loop's next iteration: 4 more steps from step 4, the dataset now with lift_red too
    train(lake, config, "d", 8, "r", device="cpu", resume=True, checkpoint_every=4, schedule_from=4)
    assert seen[0] == (1.0, False), "a warm restart at full rate; lift_red is new: the normaliser is set again"
    assert seen[1][1] and seen[-1][0] < 0.2
    seen.clear()  # the same skills again: the normaliser stays; without schedule_from the decay goes on
    train(lake, config, "d", 10, "r", device="cpu", resume=True, checkpoint_every=2)
    assert seen[0][1] and seen[0][0] < 0.1


def test_resume_with_another_model_shape_names_the_mismatch(lake, capsys):
    assert main(["train", "--dataset", "d", "--steps", "2", "--run-id", "r2"]) == 0
    assert main(["train", "--dataset", "d", "--steps", "3", "--run-id", "r2", "--resume", "--config", "small"]) == 1
    assert "d_model: checkpoint 64, now 256" in capsys.readouterr().err


@pytest.mark.parametrize("argv, code, message", [
    (["train", "--dataset", "nothing"], 1, "has no rewards rows"),
    (["train", "--dataset", "d", "--skills", "lift_red", "grasp_blue"], 1, "has no rewards rows for grasp_blue"),
    (["train", "--successful-only"], 2, "add --conditioning commanded"),
    (["train", "--alpha", "2"], 2, "--alpha must be in [0, 1]"),
    (["train", "--demo-fraction", "1.5"], 2, "--demo-fraction must be in [0, 1], got 1.5"),
    (["train", "--resume"], 2, "--resume needs --run-id"),
    (["train", "--config", "huge"], 2, "invalid choice"),
    (["train", "--resume", "--run-id", "never"], 1, "no checkpoint of run never"),
])
def test_bad_input_is_one_line(lake, capsys, argv, code, message):
    try:
        assert main(argv) == code
    except SystemExit as exc:  # argparse's own refusals
        assert exc.code == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_dataset_without_demonstrations_says_so(lake, capsys):
    assert main(["relabel", "--rewards", "place_blue_on_green", "--name", "never"]) == 0  # lift_red episodes
    assert main(["train", "--dataset", "never", "--steps", "2"]) == 1
    err = capsys.readouterr().err
    assert "ran out after 0 steps; PAC's BC term trains on demonstrations" in err and "Traceback" not in err
    assert main(["train", "--dataset", "never", "--steps", "2", "--demo-fraction", "0"]) == 0  # the critic alone


def test_commanded_training_after_relabelling_everything_takes_each_functions_latest_version(lake, capsys):
    """`relabel --all` writes place_* at versions 1 and 2: commanded conditioning (BC's) trains on the
    latest of each, a plain name is its latest, and asking for two versions names the flag to choose with."""
    from learner.checkpoints import CheckpointStore

    assert main(["relabel", "--all", "--name", "all"]) == 0
    assert main(["train", "--dataset", "all", "--conditioning", "commanded", "--steps", "2", "--run-id", "c1"]) == 0
    trained = CheckpointStore(lake, "c1").load_latest()["lineage"]["functions"]
    assert "place_red_on_blue@2" in trained and "place_red_on_blue@1" not in trained and "lift_red@1" in trained
    assert main(["train", "--dataset", "all", "--conditioning", "commanded", "--steps", "2", "--run-id", "c2",
                 "--skills", "lift_red", "place_red_on_blue"]) == 0
    assert CheckpointStore(lake, "c2").load_latest()["lineage"]["functions"] == ["lift_red@1", "place_red_on_blue@2"]
    capsys.readouterr()
    assert main(["train", "--dataset", "all", "--conditioning", "commanded", "--steps", "2",
                 "--skills", "lift_red", "place_red_on_blue@1", "place_red_on_blue@2"]) == 1
    assert ("robolake train: commanded conditioning takes one version per function, got place_red_on_blue versions "
            "1 and 2; choose with --skills place_red_on_blue@2") in capsys.readouterr().err


def test_eval_runs_the_trained_policy_and_its_episodes_land_tagged(lake, capsys):
    assert main(["train", "--dataset", "d", "--steps", "2", "--run-id", "r3"]) == 0
    assert main(["eval", "--run-id", "r3", "--skills", "reach_red", "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert "policy pac:r3 step-2" in out and "reach_red" in out and "[" in out
    assert count(lake, "SELECT count(*) FROM episodes WHERE policy_id = 'pac:r3' AND policy_version = 'step-2' "
                       "AND experiment_id = 'eval'") == 2
    assert main(["eval", "--run-id", "nope", "--skills", "reach_red"]) == 1
    assert "no checkpoint of run nope" in capsys.readouterr().err


def test_eval_workers_split_the_same_episodes(lake, capsys):
    assert main(["train", "--dataset", "d", "--steps", "2", "--run-id", "r4"]) == 0
    for workers in ("1", "2"):
        assert main(["eval", "--run-id", "r4", "--skills", "reach_red", "reach_green", "--episodes", "3",
                     "--workers", workers, "--experiment", f"w{workers}"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("reach_")]
    assert len(printed) == 4 and printed[:2] == printed[2:]  # same successes whatever the split
    seeds = "SELECT list(seed ORDER BY seed)::VARCHAR FROM episodes WHERE experiment_id = '{}' GROUP BY task ORDER BY task"
    con = open_lake(lake)
    one, two = (con.execute(seeds.format(e)).fetchall() for e in ("w1", "w2"))
    con.close()
    assert one == two and len(one) == 2 and one[0][0] == "[100000, 100001, 100002]"


def test_wilson_intervals():
    from schemas.stats import wilson

    assert wilson(0, 10)[0] == 0.0 and 0.25 < wilson(0, 10)[1] < 0.35
    low, high = wilson(50, 100)
    assert low == pytest.approx(0.404, abs=0.002) and high == pytest.approx(0.596, abs=0.002)


def test_a_checkpoint_from_before_the_input_features_names_what_changed():
    import dataclasses

    from learner.pac.config import PACConfig, get_config
    from learner.train import TrainingError, _check_compatible

    config = get_config("tiny")
    saved = dataclasses.asdict(config)
    _check_compatible(saved, config)  # the same shape loads
    with pytest.raises(TrainingError, match="relative_groups: checkpoint 'absent', now \\(4, 5, 6\\)"):
        _check_compatible({k: v for k, v in saved.items() if k not in ("relative_groups", "normalize")}, config)
    with pytest.raises(TrainingError, match="action_bins: checkpoint 21, now 11"):
        _check_compatible(saved, config.replace(action_bins=11))
    with pytest.raises(TrainingError, match="torso: checkpoint 'absent', now 'film'"):  # a Perceiver checkpoint of before
        _check_compatible({k: v for k, v in saved.items() if k != "torso"}, config)
    with pytest.raises(TrainingError, match="observation_version: checkpoint 1, now 2"):
        _check_compatible({**saved, "observation_version": 1}, config)
    with pytest.raises(TrainingError, match="v_max: checkpoint 2.0, now 10.0"):  # the critic's bins meant other returns
        _check_compatible({**saved, "v_max": 2.0}, config)
    factorised = config.replace(critic="factorised")  # it has no bins of returns
    _check_compatible({**dataclasses.asdict(factorised), "v_max": 2.0}, factorised)
    # Written before the factorised critic and the step features: the sampled critic, no step features.
    before = {k: v for k, v in saved.items() if k not in ("critic", "step_features")}
    with pytest.raises(TrainingError, match="step_features: checkpoint 0.0, now 0.05"):
        _check_compatible(before, config)
    with pytest.raises(TrainingError, match="critic: checkpoint 'sampled', now 'factorised'"):
        _check_compatible(before, config.replace(critic="factorised", step_features=0.0))
    _check_compatible(before, config.replace(step_features=0.0))
    assert PACConfig.from_dict(before).critic == "sampled"


def test_eval_of_a_checkpoint_from_before_the_input_features_names_what_changed(tmp_path):
    import dataclasses

    from learner.evaluate import LearnedPolicy
    from learner.pac.config import get_config
    from learner.train import TrainingError
    from infra.settings import Settings
    from learner.checkpoints import CheckpointStore

    settings = Settings.load(env={}, lake=f"file://{tmp_path}/lake", bus="memory")
    old = {k: v for k, v in dataclasses.asdict(get_config("tiny")).items() if k not in ("relative_groups", "normalize")}
    CheckpointStore(settings, "old").save(1, {"config": old, "learner": {}})
    with pytest.raises(TrainingError, match="relative_groups: checkpoint 'absent'"):
        LearnedPolicy.load(settings, "old")
