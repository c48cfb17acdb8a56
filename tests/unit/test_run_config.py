"""Run config files (`robolake run --config FILE`): every flag a key, the flags given over the file's, one line
naming the key and the file for a bad one, and the config as resolved."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from robolake.cli import build_parser, main
from robolake.commands import run, run_config
from robolake.commands.common import load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "experiment.toml"


def _cli_run_parser() -> argparse.ArgumentParser:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices["run"]


def _sample(action: argparse.Action):
    """A valid value of the option's key, of the type a TOML file gives it."""
    kind = run_config._kind(action)
    if action.choices:
        return list(action.choices)[-1]
    if action.dest == "frame_size":  # a range of its own
        return 160
    return {bool: True, int: 2, float: 0.5, list: ["reach_red", "lift_red"], str: "x-1"}[kind]


def test_every_flag_of_robolake_run_is_a_key_that_sets_it():
    cli = _cli_run_parser()
    flags = {a.dest for a in cli._actions if a.option_strings} - {"help", "config_file"}
    assert set(run_config.keys(cli)) == set(run_config.keys(run.parser())) == flags
    assert {"experiment", "train_steps", "skills", "keep_going", "model", "lake", "bus", "report_dir"} <= flags
    for key, action in run_config.keys(cli).items():
        value = _sample(action)
        args = run.parser().parse_args(run_config.as_flags({key: value}, cli, "test.toml"))
        assert getattr(args, key) == value, key


def test_the_example_file_is_every_key_it_names_and_flags_given_win(tmp_path):
    values = run_config.read(EXAMPLE)
    args = run.parser().parse_args(run_config.as_flags(values, run.parser(), str(EXAMPLE)))
    assert {key: getattr(args, key) for key in values} == values
    argv = run_config.with_file(["-v", "run", "--iterations", "5", "--skills", "reach_blue"], str(EXAMPLE),
                                run.parser())
    merged = build_parser().parse_args(argv)
    assert merged.iterations == 5 and merged.skills == ["reach_blue"] and merged.top_verbose == 1
    assert merged.train_steps == values["train_steps"] and merged.experiment == values["experiment"]


def test_the_resolved_config_is_every_key_set_with_the_settings_in_force(monkeypatch):
    monkeypatch.setenv("ROBOLAKE_BUS", "memory")
    monkeypatch.setenv("ROBOLAKE_PARTITIONS", "7")
    args = run.parser().parse_args(["--experiment", "e", "--lake", "file:///tmp/somewhere", "-v"])
    keys = run.resolved(args, load_settings(args), ("reach_red", "go_home"))
    assert keys["partitions"] == 7 and keys["lake"] == "file:///tmp/somewhere" and keys["vlm"] == "scripted"
    assert keys["skills"] == ["reach_red", "go_home"] and keys["model"] == "tiny" and keys["iterations"] == 3
    assert "budget_episodes" not in keys and "alpha" not in keys and "verbose" not in keys  # unset; not the run's
    assert set(keys) <= set(run_config.keys(run.parser()))
    # what was resolved runs the same again from a file
    again = run.parser().parse_args(run_config.as_flags(keys, run.parser(), "resolved"))
    assert run.resolved(again, load_settings(again), ()) == keys


@pytest.mark.parametrize("text, message", [
    ('experiment = "x"\niteratons = 2\n', "unknown key 'iteratons' (did you mean 'iterations'?)"),
    ('experiment = "x"\n[settings]\nbus = "memory"\n', "unknown key 'settings' (the keys are: alpha, "),
    ('experiment = "x"\niterations = "2"\n', "iterations must be an integer, got '2'"),
    ('experiment = "x"\niterations = 0\n', "iterations: expected a positive integer, got '0'"),
    ('experiment = "x"\nalpha = nan\n', "alpha must be a number, got nan"),
    ('experiment = "x"\nkeep_going = 1\n', "keep_going must be true or false, got 1"),
    ('experiment = "x"\nskills = "reach_red"\n', "skills must be a list of strings, got 'reach_red'"),
    ('experiment = "x"\nmodel = "huge"\n', "model must be one of tiny, small, base, got 'huge'"),
    ('experiment = "../etc"\n', "experiment: expected ASCII letters"),
    ('experiment = "x"\nverbose = -1\n', "verbose must be an integer >= 0, got -1"),
    ('experiment = "x\n', "is not valid TOML"),
])
def test_a_bad_key_or_value_is_one_line_naming_it_and_the_file(tmp_path, capsys, text, message):
    config = tmp_path / "experiment.toml"
    config.write_text(text)
    assert main(["run", "--config", str(config), "--lake", f"file://{tmp_path}/lake"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("robolake run: error: ") and str(config) in err and message in err, err
    assert err.count("\n") == 1
    assert not (tmp_path / "lake").exists()  # refused before any work


def test_a_missing_file_and_a_missing_experiment_are_usage_errors(tmp_path, capsys):
    assert main(["run", "--config", "tiny"]) == 2  # the learner's size was --config before it was --model
    assert "config file tiny: No such file or directory (the learner's size is --model now)" in capsys.readouterr().err
    (tmp_path / "empty.toml").write_text("iterations = 2\n")
    assert main(["run", "--config", str(tmp_path / "empty.toml"), "--lake", f"file://{tmp_path}/lake"]) == 2
    assert "--experiment is required (on the command line or in the --config file)" in capsys.readouterr().err


def test_false_wins_over_a_file_s_true_from_a_keyword_or_the_command_line(tmp_path):
    config = tmp_path / "on.toml"
    config.write_text("keep_going = true\nexternal_learner = true\n")
    parser = run.parser()
    from_file = run_config.as_flags(run_config.read(config), parser, str(config))
    args = parser.parse_args(from_file + run_config.as_flags({"keep_going": False}, parser, "robolake.run()"))
    assert args.keep_going is False and args.external_learner is True
    argv = run_config.with_file(["run", "--no-external-learner"], str(config), _cli_run_parser())
    assert _cli_run_parser().parse_args(argv[1:]).external_learner is False


def test_a_file_that_is_not_text_is_one_line(tmp_path, capsys):
    config = tmp_path / "binary.toml"
    config.write_bytes(b"\x80\xff\x00 iterations = 2")
    assert main(["run", "--config", str(config), "--lake", f"file://{tmp_path}/lake"]) == 2
    assert "is not valid TOML: not UTF-8 text" in capsys.readouterr().err
