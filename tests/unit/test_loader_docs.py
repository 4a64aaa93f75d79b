"""
Every loader module says what it is, and every function a user can call says how.

Salt's loader exposes each public function of an execution, runner or state module by name,
so each needs a ``CLI Example:`` block with a command line that calls it. The other loader
kinds are reached only through hooks Salt calls by a fixed name (a beacon's ``beacon``, an
outputter's ``output``, a fileserver backend's ``find_file``...): a hook has no command line
of its own, and a public function that is not a hook is never called by Salt at all, so it
should be private.
"""

import importlib
import inspect
import pkgutil
import re

import pytest

KINDS = ("modules", "runners", "states", "beacons", "pillar", "output", "fileserver", "netapi")

# The names Salt calls in each hook-only kind (salt.beacons, salt.pillar, salt.output,
# salt.fileserver, salt.client.netapi); a kind missing here exposes every public function.
HOOKS = {
    "beacons": {"validate", "beacon", "close"},
    "pillar": {"ext_pillar"},
    "output": {"output", "progress_iter"},
    "fileserver": {
        "clear_cache",
        "clear_lock",
        "dir_list",
        "envs",
        "file_hash",
        "file_list",
        "file_list_emptydirs",
        "find_file",
        "init",
        "lock",
        "serve_file",
        "symlink_list",
        "update",
        "update_intervals",
    },
    "netapi": {"start"},
}
# The command that calls a function of each kind; ``{}`` is ``<virtualname>.<function>``.
COMMANDS = {
    "modules": r"salt(?:-call)?\s.*(?<![\w.]){}(?![\w.])",
    "runners": r"salt-run\s.*(?<![\w.]){}(?![\w.])",
    "states": r"salt(?:-call)?\s.*(?:state\.single\s+{}(?![\w.])|state\.(?:apply|sls)\b)",
}
SALT_COMMAND = re.compile(r"salt(?:-call|-run|-ssh|-api|-key)?\s")


def _loader_modules():
    for kind in KINDS:
        package = importlib.import_module(f"saltext.eos.{kind}")
        for info in pkgutil.iter_modules(package.__path__):
            yield f"saltext.eos.{kind}.{info.name}"


MODULES = sorted(_loader_modules())


def _functions():
    for name in MODULES:
        module = importlib.import_module(name)
        for function_name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ == name and not function_name.startswith("_"):
                yield name, function_name


FUNCTIONS = sorted(_functions())


def _kind(module_name):
    return module_name.split(".")[2]


def _commands(docstring):
    """The command lines in the bash block that follows ``CLI Example:``, or None."""
    lines = inspect.cleandoc(docstring).splitlines()
    if "CLI Example:" not in (line.strip() for line in lines):
        return None
    rest = lines[[line.strip() for line in lines].index("CLI Example:") + 1 :]
    while rest and not rest[0].strip():
        rest.pop(0)
    if not rest or rest[0].strip() != ".. code-block:: bash":
        return None
    directive_indent = _indent(rest[0])
    commands = []
    command_indent = None
    for text in rest[1:]:
        if not text.strip():
            continue
        if _indent(text) <= directive_indent:
            break
        # A line indented under a command continues it (after a backslash, or in a quote).
        if command_indent is not None and _indent(text) > command_indent:
            head = commands[-1].removesuffix("\\").rstrip()
            commands[-1] = f"{head} {text.strip()}"
            continue
        command_indent = _indent(text)
        commands.append(text.strip())
    return commands


def _indent(text):
    return len(text) - len(text.lstrip())


@pytest.mark.parametrize("module_name", MODULES)
def test_module_docstring(module_name):
    module = importlib.import_module(module_name)
    assert (module.__doc__ or "").strip(), f"{module_name} has no module docstring"


@pytest.mark.parametrize(("module_name", "function_name"), FUNCTIONS)
def test_function_documents_its_command(module_name, function_name):
    kind = _kind(module_name)
    if kind in HOOKS:
        assert function_name in HOOKS[kind], (
            f"{module_name}.{function_name}: Salt calls only {sorted(HOOKS[kind])} in {kind} "
            "modules, so this function is never reached by name; make it private"
        )
        return
    module = importlib.import_module(module_name)
    function = getattr(module, function_name)
    commands = _commands(function.__doc__ or "")
    assert commands, (
        f"{module_name}.{function_name}: no 'CLI Example:' followed by a "
        "'.. code-block:: bash' with a command line"
    )
    strays = [command for command in commands if not SALT_COMMAND.match(command)]
    assert not strays, f"{module_name}.{function_name}: not salt command lines: {strays}"
    target = re.escape(f"{module.__virtualname__}.{function_name}")
    calls = re.compile(COMMANDS[kind].replace("{}", target))
    assert any(calls.match(command) for command in commands), (
        f"{module_name}.{function_name}: no command in its CLI example calls "
        f"{module.__virtualname__}.{function_name}"
    )


@pytest.mark.parametrize(
    ("module_name", "function_name"),
    [(module, function) for module, function in FUNCTIONS if _kind(module) == "states"],
)
def test_state_shows_an_sls(module_name, function_name):
    module = importlib.import_module(module_name)
    function = getattr(module, function_name)
    uses = re.compile(
        rf"\.\. code-block:: yaml\n(?:\n|\s+.*\n)*?\s+"
        rf"{re.escape(module.__virtualname__)}\.{function_name}:"
    )
    docs = [inspect.cleandoc(function.__doc__ or ""), inspect.cleandoc(module.__doc__ or "")]
    assert any(uses.search(doc + "\n") for doc in docs), (
        f"{module_name}.{function_name}: no SLS example (a yaml code-block using it)"
    )
