"""The README's Python example runs as printed (so the documentation cannot rot)."""
import contextlib
import io
import re

from helpers import REPO

README = REPO / "README.md"


def test_readme_api_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has no Python example"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), {})
    assert out.getvalue().strip().splitlines()[-1] == "9225"
