"""The README and docs/ tell the truth: the option table agrees with the command line's --help texts,
and every relative link and #anchor leads somewhere."""
import argparse
import re

from machinery.options import build_parser
from conftest import ROOT

COMMANDS = ("train", "resume", "infer", "list", "export", "curves")
OPTIONS_PAGE = ROOT / "docs" / "commands.md"  # the table of every option, with its default
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def help_texts():
    """{option: {command: help text}}, "" standing for no command (the whole tutorial)."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    found = {}
    for command, sub in [("", parser), *commands.items()]:
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                found.setdefault(action.option_strings[0], {})[command] = action.help
    return found


def readme_defaults():
    """{option: default}, from the option table of docs/commands.md; a default that differs by
    command, as "`train`: 0.01; `resume`: 0.001", becomes {command: default}; "others" stands for
    every command not named, the whole tutorial included."""
    rows = re.findall(r"^\| `(--\w+)` \| (.+?) \| .* \|$", OPTIONS_PAGE.read_text(), re.MULTILINE)
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


def test_the_list_table_in_the_docs_is_the_committed_notebooks():
    import nbformat
    page = (ROOT / "docs" / "checkpoints.md").read_text()
    table = re.search(r"`list` prints a table like this one.*?```text\n(.*?)```", page, re.DOTALL)[1]
    notebook = nbformat.writes(nbformat.read(ROOT / "main.ipynb", as_version=4))
    outputs = "".join(output.get("text", "") for cell in nbformat.reads(notebook, as_version=4).cells
                      for output in cell.get("outputs", []))
    assert table in outputs


def prose(markdown):
    """The text of a page without its code: fenced blocks and inline code spans removed."""
    markdown = re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", markdown)


def anchors(page):
    """The #anchors of a page's headings, as GitHub makes them: lower case, punctuation but hyphens
    and underscores dropped, spaces made hyphens, and -1, -2 ... appended to repeated ones."""
    found = set()
    code = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", code, re.MULTILINE):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


def links(page):
    """Every [text](target) and ![alt](target) of a page that is not a URL or an e-mail address."""
    targets = re.findall(r"\]\(([^)\s]+)(?: \"[^\"]*\")?\)", prose(page.read_text()))
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_the_docs_pages_are_there():
    assert len(PAGES) > 5 and all(page.read_text().startswith("# ") for page in PAGES)


def test_every_relative_link_and_anchor_resolves():
    broken = []
    for page in PAGES:
        assert links(page) or page.name != "README.md"
        for target in links(page):
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
            elif anchor and resolved.suffix != ".md":
                broken.append(f"{page.relative_to(ROOT)}: {target} (an anchor into a file that is not markdown)")
    assert not broken, "\n".join(broken)


def test_the_readme_lists_every_docs_page():
    listed = {(ROOT / target.partition("#")[0]).resolve() for target in links(ROOT / "README.md")}
    assert {page.resolve() for page in PAGES[1:]} <= listed


def test_the_anchors_are_githubs():
    page = ROOT / "docs" / "speed.md"
    assert {"the-onednn-cap", "what-the-port-changes-and-what-did-not-help"} <= anchors(page)
    assert "latest-and-best" in anchors(ROOT / "docs" / "checkpoints.md")  # `latest` and `best`


def test_the_readme_installs_another_mindspore_with_the_lines_the_matrix_tests():
    """The README's two lines for another MindSpore are those the version matrix builds its oldest
    cell with."""
    from version_matrix.readme_venv import README_OTHER_MINDSPORE as lines
    blocks = re.findall(r"^```sh\n(.*?)^```", (ROOT / "README.md").read_text(), re.MULTILINE | re.DOTALL)
    assert "".join(line.format(version="2.8.0") + "\n" for line in lines) in blocks
