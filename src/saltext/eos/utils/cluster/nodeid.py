"""
The node id rule: which minion ids EOS records, targets and names.

A node id is 1 to ``MAX_LENGTH`` (253) ASCII letters, digits, ``.``, ``_`` and ``-``, and
starts with a letter, a digit or ``_``. Host names and FQDNs (``web-1.example.com``) follow
it. The registry, the runners, the REST API, the bootstrap and the pillar all ask this module,
so an id is valid everywhere or nowhere.

Why the rest is refused. A node id is put into Salt targets, ``salt-key`` matches, cache keys,
file names, command lines and rendered configuration:

- ``* ? [ ] !``: glob characters. Salt's default target type and ``salt-key``'s match are
  globs (``fnmatch``), so a node ``web*`` would reach, accept or delete other minions' keys.
- ``,``: separates the ids of a list target (and of ``salt-key`` matches).
- whitespace, ``( )``: separate and group the words of a compound target.
- ``@``: in a compound target, an engine letter and ``@`` start a target engine (``G@``,
  ``L@``, ``E@``...): the word ``L@a,b`` is a list target. ``@`` means nothing to glob, list
  or pcre targets, but ids are written into compound targets (``eos:accept:match``, ``salt
  -C``) and ``user@host`` is salt-ssh's, so it is refused everywhere, not only after a
  capital letter.
- ``:``: the delimiter of grain and pillar targets (``G@os:Debian``).
- ``% { }``: range targets (``%cluster``, ``{a,b}``); ``^ $ | +``: regular expressions
  (``E@``, pcre targets). ``.`` stays, for FQDNs: it is literal in glob and list targets.
- ``/`` and ``\\``: path separators; the localfs cache stores a record in a file named by the
  id. ``.`` and ``..`` name directories, and a leading ``.`` hides the file.
- a leading ``-``: a command line (``salt-run``, ``salt-key``) reads it as an option.
- ``=``: ``salt-run`` reads ``key=value`` as a keyword argument, not an id.
- ``& ; < > ` ' " ~ #``: shell and YAML characters; ids are typed on command lines and
  written into configuration files.
- control characters (a trailing newline too) and anything not ASCII: a Cyrillic ``\\u0435``
  looks like a Latin ``e``, so two ids that look the same are refused instead of told apart.
- more than 253 characters: DNS's longest name, and the localfs cache's file ``<id>.p`` must
  fit a 255-byte file name.
"""

import re

MAX_LENGTH = 253
# As the OpenAPI document writes it (JSON Schema's "$" is the end of the text). Python code
# uses VALID.fullmatch, never match: with match, "$" also accepts a trailing newline.
PATTERN = "^[A-Za-z0-9_][A-Za-z0-9._-]*$"
VALID = re.compile(PATTERN)
ALLOWED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
RULE = (
    f"a node id is 1 to {MAX_LENGTH} ASCII letters, digits, '.', '_' and '-', "
    "starting with a letter, a digit or '_'"
)
# Why a character is refused; one entry per character (checked at import).
MEANINGS = (
    ("*?", "a glob wildcard: a target or key match naming the id would reach other minions"),
    ("[]", "a glob character class: a target or key match naming the id would reach others"),
    ("!", "a glob class negation"),
    (",", "the separator of a list target's ids"),
    ("@", "a compound target's engine marker (G@, L@, E@...)"),
    ("()", "a compound target's grouping"),
    (":", "the delimiter of grain and pillar targets (G@os:Debian)"),
    ("%{}", "a range target character (%cluster, {a,b})"),
    ("^$|+", "a regular expression character (E@ and pcre targets)"),
    ("/\\", "a path separator: the record is stored in a file named by the id"),
    ("=", "salt-run's key=value separator: the argument would be a keyword, not an id"),
    ("&;<>`'\"~#", "a shell or YAML character: ids go on command lines and into config files"),
)
LEADING = {
    "-": "a command line reads it as an option",
    ".": "'.' and '..' name directories, and a leading '.' hides the record's file",
}

_MEANING = {char: meaning for chars, meaning in MEANINGS for char in chars}
if len(_MEANING) != sum(len(chars) for chars, _ in MEANINGS) or set(_MEANING) & ALLOWED:
    raise RuntimeError("nodeid.MEANINGS must name each refused character once")


def problem(node_id):
    """Why ``node_id`` breaks the node id rule (a sentence naming the id), or None."""
    if isinstance(node_id, str) and len(node_id) <= MAX_LENGTH and VALID.fullmatch(node_id):
        return None
    if not isinstance(node_id, str) or not node_id:
        return f"node id {_short(node_id)} is not a non-empty string"
    shown = _short(node_id)
    if len(node_id) > MAX_LENGTH:
        return f"node id {shown}: {len(node_id)} characters, longer than {MAX_LENGTH}; {RULE}"
    for position, char in enumerate(node_id, start=1):
        if char not in ALLOWED:
            return (
                f"node id {shown}: {_describe(char)} at position {position} is {_meaning(char)}"
                f"; {RULE}"
            )
    # Every character is allowed: the first one is not allowed first.
    return f"node id {shown}: starts with {node_id[0]!r}: {LEADING[node_id[0]]}; {RULE}"


def _describe(char):
    if char == " ":
        return "' ' (a space)"
    if char.isascii() and char.isprintable():
        return repr(char)
    return f"{char!r} (U+{ord(char):04X})"


def _meaning(char):
    if char in _MEANING:
        return _MEANING[char]
    if not char.isascii():
        return "not ASCII (it may pass for an ASCII character)"
    if char.isspace():
        return "whitespace, which separates the words of a compound target and of a command line"
    if not char.isprintable():
        return "a control character"
    return "not a letter, a digit, '.', '_' or '-'"


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."
