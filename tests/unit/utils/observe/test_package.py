"""The package's docstring shows the configuration each generator reads, with its defaults."""

import re

import yaml

from saltext.eos.utils import observe

GENERATORS = {
    "targets": observe.targets,
    "rules": observe.rules,
    "alertmanager": observe.alertmanager,
    "prometheus": observe.prometheus,
}


def documented_configuration():
    block = re.search(r"\.\. code-block:: yaml\n\n(.*?)\n\n\S", observe.__doc__, re.DOTALL)
    return yaml.safe_load(block.group(1))["eos"][observe.settings.SECTION]


def test_the_docstring_shows_every_section_with_its_defaults():
    documented = documented_configuration()

    assert set(documented) == set(GENERATORS)
    for name, module in GENERATORS.items():
        assert name == module.SECTION
        assert documented[name] == module.DEFAULTS, name


def test_every_generator_reads_its_documented_section():
    documented = documented_configuration()

    for name, module in GENERATORS.items():
        assert module.read_settings(documented[name]) == module.read_settings(), name
