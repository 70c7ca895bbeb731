"""Every command and every option of ``paychan`` explains itself in ``--help``, with its default shown."""

from __future__ import annotations

import argparse

import pytest

from paychan.cli import build_parser


def _children(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
    return dict(actions[0].choices) if actions else {}


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """Every command, nested ones as ``"lock add"``, with its parser."""
    commands: dict[str, argparse.ArgumentParser] = {}
    for name, parser in _children(build_parser()).items():
        commands[name] = parser
        commands.update({f"{name} {child}": sub for child, sub in _children(parser).items()})
    return commands


def leaf_commands() -> list[str]:
    """The commands that run something (not those that only group others, such as ``lock``)."""
    return sorted(name for name, parser in subcommands().items() if not _children(parser))


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_every_command_has_a_description_and_every_option_a_help_text(command: str) -> None:
    parser = subcommands()[command]
    assert parser.description, f"paychan {command} has no description"
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._HelpAction):  # noqa: SLF001
            continue
        assert action.help, f"paychan {command} {'/'.join(action.option_strings) or action.dest} has no help text"


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_every_option_with_a_default_shows_it(command: str) -> None:
    text = subcommands()[command].format_help()
    for action in subcommands()[command]._actions:  # noqa: SLF001
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS) and action.help:
            assert "default" in text, f"paychan {command}: {action.option_strings} does not show its default"


def test_the_node_commands_document_their_exit_codes() -> None:
    for command in ("pay", "close"):
        text = subcommands()[command].format_help()
        assert "exit codes:" in text and "3  partly done" in text and "4  pending" in text


@pytest.mark.parametrize("command", sorted(set(leaf_commands()) - {"node"}))  # a node runs until stopped
def test_every_command_but_the_node_itself_offers_json_output(command: str) -> None:
    options = {option for action in subcommands()[command]._actions for option in action.option_strings}  # noqa: SLF001
    assert "--json" in options
