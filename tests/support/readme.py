"""The README's YAML blocks, read as a user copies them: the tests use them verbatim."""

import pathlib
import re

import salt.utils.yaml

REPO = pathlib.Path(__file__).resolve().parents[2]


def yaml_block(heading, path=REPO / "README.md"):
    """The first ```yaml block after the Markdown ``heading`` (e.g. "## Master configuration")."""
    text = pathlib.Path(path).read_text()
    if heading not in text:
        raise LookupError(f"{path.name} has no heading {heading!r}")
    section = text.split(heading, 1)[1]
    found = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    if found is None:
        raise LookupError(f"{path.name}: no yaml block after {heading!r}")
    return salt.utils.yaml.safe_load(found.group(1))


def master_block():
    """The README's "Master configuration" block."""
    return yaml_block("## Master configuration")
