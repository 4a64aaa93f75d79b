"""
Data that no cleanup step may touch, however old it is and however much it looks like a log.

A log or tmp directory can hold files that only look disposable: ``mysql-bin.000001`` has
the name of a rotated log and Debian keeps binary logs in /var/log/mysql; a Kafka broker
started with its sample config keeps its partitions in /tmp/kafka-logs. Deleting, gzipping
or truncating them breaks replicas, point-in-time recovery or the service itself.

Each protected class is recognised two ways, so that it is safe wherever it lives:

- ``paths``: well-known locations, absolute paths or globs; the directory and everything
  below it;
- ``names``: patterns for one path component, or several consecutive components joined by
  ``/`` (``member/wal``), that may match anywhere in a path; a matching directory protects
  everything below it. Built-in names are regular expressions matched against the whole
  component; names a site adds are globs, like ``preserve_paths``.

``BUILTIN`` is the one table: the cleanup engine checks it, docs/cleanup.md shows it (a test
compares the two) and ``eos:cleanup:protected`` extends it, never shrinks it.
"""

import fnmatch
import os
import re
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace


@dataclass(frozen=True)
class NamePattern:
    """A pattern for consecutive path components, as written (``text``) and compiled."""

    text: str
    parts: tuple = field(compare=False)

    @classmethod
    def regex(cls, text):
        return cls(text, tuple(re.compile(part) for part in text.split("/")))

    @classmethod
    def glob(cls, text):
        return cls(text, tuple(re.compile(fnmatch.translate(part)) for part in text.split("/")))

    def matches(self, components):
        width = len(self.parts)
        return any(
            all(
                part.fullmatch(name)
                for part, name in zip(self.parts, components[start:], strict=False)
            )
            for start in range(len(components) - width + 1)
        )


@dataclass(frozen=True)
class ProtectedClass:
    name: str
    reason: str
    paths: tuple = ()
    names: tuple = ()

    def rule_for(self, path):
        """The rule (a path or a name pattern) that protects ``path``, or None."""
        for rule in self.paths:
            if path_rule_matches(rule, path):
                return rule
        components = [part for part in path.split("/") if part]
        for pattern in self.names:
            if pattern.matches(components):
                return pattern.text
        return None

    def extended(self, paths=(), names=()):
        return replace(self, paths=(*self.paths, *paths), names=(*self.names, *names))


def path_rule_matches(rule, path):
    """Whether an absolute path or glob covers ``path`` (absolute, normalised): it or below."""
    if not any(char in rule for char in "*?["):
        base = rule.rstrip("/")
        return path == base or path.startswith(base + "/")
    return any(fnmatch.fnmatchcase(ancestor, rule) for ancestor in _self_and_ancestors(path))


def _self_and_ancestors(path):
    while path not in ("/", ""):
        yield path
        path = os.path.dirname(path)


def _regexes(*texts):
    return tuple(NamePattern.regex(text) for text in texts)


# The one table. Specific classes come first, so that a WAL segment below /var/lib/postgresql
# is reported as WAL rather than as critical data.
BUILTIN = (
    ProtectedClass(
        name="mysql-binlog",
        reason="MySQL/MariaDB binary and relay logs and their index: replicas and "
        "point-in-time recovery read them; only PURGE BINARY LOGS may remove them",
        paths=("/var/log/mysql",),
        names=_regexes(
            r".+-bin\.\d{6,}(\..+)?",
            r".+-bin\.index",
            r".+-relay-bin\..+",
            r"binlog\.\d{6,}(\..+)?",
            r"binlog\.index",
            r"relay-log\.info",
        ),
    ),
    ProtectedClass(
        name="postgresql-wal",
        reason="PostgreSQL write-ahead log and WAL archive: recovery and point-in-time "
        "restore need every segment since the last base backup",
        paths=(
            "/var/lib/postgresql/*/archive",
            "/var/lib/pgsql/*/archive",
            "/var/lib/pgbackrest",
            "/var/spool/pgbackrest",
        ),
        names=_regexes(
            r"pg_wal",
            r"pg_xlog",
            r"[0-9A-F]{24}(\..+)?",
            r"[0-9A-F]{8}\.history(\..+)?",
        ),
    ),
    ProtectedClass(
        name="etcd",
        reason="etcd data, write-ahead log and snapshots: a member that loses them must be "
        "removed from the cluster and added again",
        paths=("/var/lib/etcd",),
        names=_regexes(
            r"member/wal",
            r"member/snap",
            r"[0-9a-f]{16}-[0-9a-f]{16}\.wal",
            r"[0-9a-f]{16}-[0-9a-f]{16}\.snap",
            r"[0-9a-f]{16}\.snap\.db",
        ),
    ),
    ProtectedClass(
        name="zookeeper",
        reason="ZooKeeper snapshots and transaction logs: the znodes written since the last "
        "snapshot exist nowhere else",
        paths=("/var/lib/zookeeper", "/tmp/zookeeper"),
        names=_regexes(r"version-2", r"log\.[0-9a-f]+", r"snapshot\.[0-9a-f]+"),
    ),
    ProtectedClass(
        name="kafka",
        reason="Kafka log segments, their indexes and checkpoints: the broker removes them "
        "by retention; deleting one under it corrupts the partition",
        paths=(
            "/var/lib/kafka",
            "/var/lib/kafka-logs",
            "/tmp/kafka-logs",
            "/tmp/kraft-combined-logs",
        ),
        names=_regexes(
            r"\d{20}\..+",
            r"meta\.properties",
            r".+-offset-checkpoint",
            r"leader-epoch-checkpoint",
            r"partition\.metadata",
        ),
    ),
    ProtectedClass(
        name="redis",
        reason="Redis append-only file and RDB snapshots: the only copy of the data set on "
        "disk; Redis rewrites them itself",
        paths=("/var/lib/redis", "/var/lib/valkey"),
        names=_regexes(r"appendonlydir", r".+\.aof(\..+)?", r".+\.rdb"),
    ),
    ProtectedClass(
        name="mongodb",
        reason="MongoDB data files and WiredTiger journal: mongod cannot start or recover "
        "without them",
        paths=("/var/lib/mongodb", "/var/lib/mongo", "/data/db", "/data/configdb"),
        names=_regexes(r"WiredTiger.*", r".+\.wt", r"mongod\.lock", r"storage\.bson"),
    ),
    ProtectedClass(
        name="elasticsearch",
        reason="Elasticsearch/OpenSearch indices and translogs: a lost shard must be "
        "recovered from a replica or a snapshot",
        paths=("/var/lib/elasticsearch", "/var/lib/opensearch"),
        names=_regexes(
            r"nodes/\d+/indices",
            r"nodes/\d+/_state",
            r"indices/[A-Za-z0-9_-]{22}",
            r"translog-\d+\.tlog",
            r"translog-\d+\.ckp",
            r"translog\.ckp",
        ),
    ),
    ProtectedClass(
        name="journald",
        reason="systemd journal files: only journalctl --vacuum-size removes them (the "
        "journal steps), oldest first and never the active one",
        names=_regexes(r".+\.journal", r".+\.journal~"),
    ),
    ProtectedClass(
        name="critical",
        reason="system configuration, databases, secrets, home directories, keys and certificates",
        paths=("/etc", "/var/lib/mysql", "/var/lib/postgresql", "/var/lib/vault", "/home"),
        names=_regexes(r".*\.key", r".*\.crt", r".*\.pem"),
    ),
)
BUILTIN_BY_NAME = {protected.name: protected for protected in BUILTIN}


def markdown(classes=BUILTIN):
    """The classes as the Markdown table docs/cleanup.md shows."""
    rows = [
        "| class | why it is kept | locations | names (regular expressions) |",
        "| --- | --- | --- | --- |",
    ]
    for protected in classes:
        locations = ", ".join(f"`{path}`" for path in protected.paths) or "none"
        names = ", ".join(f"`{pattern.text}`" for pattern in protected.names) or "none"
        rows.append(f"| `{protected.name}` | {protected.reason} | {locations} | {names} |")
    return "\n".join(rows) + "\n"
