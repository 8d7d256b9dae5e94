"""`bayes-dgmm --help` and every command's help: what a new user reads first."""

import argparse

import pytest

from bayes_dgmm.experiments.cli import build_parser, main
from bayes_dgmm.experiments.methods import DEFAULT_BUDGET, QUICK_BUDGET


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main([*argv, "--help"]) == 0
    return capsys.readouterr().out


def _shown(default: object) -> str:
    if isinstance(default, list | tuple):
        return " ".join(map(str, default))
    return str(default)


def test_every_command_has_a_summary_and_a_description(capsys):
    listing = " ".join(_help([], capsys).split())
    for name, parser in _commands().items():
        assert parser.description, f"{name} has no description"
        assert f"{name} " in listing
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for choice in sub._choices_actions:
        assert choice.help, f"{choice.dest} has no one-line help"


@pytest.mark.parametrize("name", list(_commands()))
def test_every_option_has_help_and_shows_its_default(name, capsys):
    parser = _commands()[name]
    text = " ".join(_help([name], capsys).split())
    for action in parser._actions:
        label = "/".join(action.option_strings) or action.dest
        assert action.help and action.help.strip(), f"{name} {label} has no help"
        default = action.default
        if not action.option_strings or default is None or default is False:
            continue
        if default == argparse.SUPPRESS or "default" in action.help:
            continue
        assert f"(default: {_shown(default)})" in text, f"{name} {label} hides its default"


@pytest.mark.parametrize("name", ["compare", "fit"])
def test_help_lists_every_budget_key_with_its_defaults(name, capsys):
    lines = _help([name], capsys).splitlines()
    for key, value in DEFAULT_BUDGET.items():
        row = [line.split() for line in lines if line.split()[:1] == [key]]
        assert row, f"{name} --help does not list the budget key {key}"
        assert row[0][1:3] == [str(value), str(QUICK_BUDGET[key])]
        assert len(row[0]) > 3, f"{key} has no meaning in the help"


def test_budget_meanings_cover_exactly_the_budget_keys():
    from bayes_dgmm.experiments.methods import BUDGET_MEANING

    assert set(BUDGET_MEANING) == set(DEFAULT_BUDGET) == set(QUICK_BUDGET)
