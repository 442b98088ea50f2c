"""The README tells the truth: its option table agrees with the command line's --help texts."""
import argparse
import re

from machinery import cli
from conftest import ROOT

COMMANDS = ("train", "resume", "infer", "list", "export", "curves")


def help_texts():
    """{option: {command: help text}}, "" standing for no command (the whole tutorial)."""
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    found = {}
    for command, sub in [("", parser), *commands.items()]:
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                found.setdefault(action.option_strings[0], {})[command] = action.help
    return found


def readme_defaults():
    """{option: default}, from the table under 'Commands and options'; a default that differs by
    command, as "`train`: 0.01; `resume`: 0.001", becomes {command: default}; "others" stands for
    every command not named, the whole tutorial included."""
    rows = re.findall(r"^\| `(--\w+)` \| (.+?) \| .* \|$", (ROOT / "README.md").read_text(), re.MULTILINE)
    table = {}
    for option, default in rows:
        default = default.replace("`", "")
        per_command = re.findall(rf"({'|'.join(COMMANDS)}|others): ([^;]+)", default)
        table[option] = dict(per_command) if per_command and default.startswith(COMMANDS) else default
    return table


def test_the_readme_table_lists_every_option_and_no_other():
    assert sorted(readme_defaults()) == sorted(help_texts())


def test_each_default_in_the_readme_is_the_one_the_help_gives():
    helps = help_texts()
    for option, default in readme_defaults().items():
        for command, text in helps[option].items():
            expected = default.get(command, default.get("others")) if isinstance(default, dict) else default
            assert expected and text.endswith(f"(default: {expected})"), (option, command, text, default)


def test_every_command_in_the_help_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for command in COMMANDS:
        assert f"python main.py {command}" in readme


def test_the_list_table_in_the_readme_is_the_committed_notebooks():
    import nbformat
    readme = (ROOT / "README.md").read_text()
    table = re.search(r"`list` prints a table like this one.*?```text\n(.*?)```", readme, re.DOTALL)[1]
    notebook = nbformat.writes(nbformat.read(ROOT / "main.ipynb", as_version=4))
    outputs = "".join(output.get("text", "") for cell in nbformat.reads(notebook, as_version=4).cells
                      for output in cell.get("outputs", []))
    assert table in outputs
