"""docs/: the generated parts of docs/cli.md and docs/performance.md are what docs/generate.py makes from the
parsers and from bench/results/*.json (so a new option or a new measurement cannot leave the pages stale), every
option of every command is in docs/cli.md, and the pages link only to files that exist."""
import importlib.util
import re

import pytest

from helpers import REPO


@pytest.fixture(scope="module")
def generate():
    spec = importlib.util.spec_from_file_location("docs_generate", REPO / "docs" / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("page", ["cli", "performance"])
def test_the_committed_page_is_what_the_generator_makes(generate, page):
    rel, make = generate.DOCS[page]
    text = (REPO / rel).read_text(encoding="utf-8")
    assert generate.fill(text, make(), rel) == text, (
        "%s is stale: run `make docs` (python docs/generate.py) and commit the result" % rel)


def test_docs_cli_lists_every_option_of_every_command(generate):
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    commands = generate.options_of_every_command()
    assert {"train", "evaluate", "run", "download", "tune", "info", "reproduce", "denoise", "reconstruct"} <= set(
        commands)
    for name, options in commands.items():
        section = text.split("\n## convngc %s\n" % name, 1)
        assert len(section) == 2, "docs/cli.md has no section '## convngc %s'" % name
        section = section[1].split("\n## ", 1)[0]
        missing = [o for o in options if "`%s" % o not in section]
        assert not missing, "docs/cli.md, convngc %s: options %s are not listed" % (name, missing)


def test_a_generated_block_without_its_markers_is_named(generate):
    with pytest.raises(SystemExit, match="no place for the generated block"):
        generate.fill("no markers here", {"cli-train": "x"}, "docs/cli.md")
    with pytest.raises(SystemExit, match="block 'nope' has no generator"):
        generate.fill(generate.BEGIN % "nope" + "\n" + generate.END % "nope", {}, "docs/cli.md")


@pytest.mark.parametrize("page", ["README.md", "docs/cli.md", "docs/performance.md", "docs/reading.md",
                                  "docs/training.md", "docs/pictures.md",
                                  "results/README.md"])
def test_every_file_a_page_links_exists(page):
    text = (REPO / page).read_text(encoding="utf-8")
    base = (REPO / page).parent
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        assert (base / target).exists(), "%s links %s, which does not exist" % (page, target)
