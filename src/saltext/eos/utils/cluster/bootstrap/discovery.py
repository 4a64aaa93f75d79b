"""Finding a master by SSDP: answers, the cluster they announce and the pinned key."""

from .inputs import CLUSTER_KEY
from .inputs import FINGER_KEY
from .inputs import InvalidRequest
from .inputs import StepFailed
from .inputs import check_port

DISCOVERY_DEFAULTS = {"port": 4520, "attempts": 3, "pause": 5, "match": "any", "mapping": {}}


def discovery_options(value):
    """The minion ``discovery`` option with Salt's defaults (False/None: the defaults)."""
    options = dict(DISCOVERY_DEFAULTS)
    if isinstance(value, dict):
        options.update({k: v for k, v in value.items() if k in DISCOVERY_DEFAULTS})
    options["port"] = check_port(options["port"], "discovery:port")
    for name in ("attempts", "pause"):
        number = options[name]
        if isinstance(number, bool) or not isinstance(number, (int, float)) or number < 0:
            raise InvalidRequest(f"discovery:{name}: {number!r} is not a number >= 0")
    options["attempts"] = max(1, int(options["attempts"]))
    if options["match"] not in ("any", "all"):
        raise InvalidRequest(f"discovery:match: {options['match']!r} is not 'any' or 'all'")
    if not isinstance(options["mapping"], dict):
        raise InvalidRequest(f"discovery:mapping: {options['mapping']!r} is not a mapping")
    return options


def candidates(answers):
    """
    The EOS masters in SSDP answers ``{(address, port): [answer, ...]}``: one entry per
    address and cluster, ``{address, advertised, cluster, mapping}``, sorted. ``address`` is
    the one that answered (reachable from here); ``advertised`` what the master said it is.
    """
    found = {}
    for (address, _), replies in answers.items():
        for reply in replies:
            if not isinstance(reply, dict):
                continue
            mapping = reply.get("mapping") or {}
            if not isinstance(mapping, dict) or CLUSTER_KEY not in mapping:
                continue
            cluster = str(mapping[CLUSTER_KEY])
            found[(address, cluster)] = {
                "address": address,
                "advertised": reply.get("master"),
                "cluster": cluster,
                "mapping": mapping,
                "finger": _announced_finger(mapping.get(FINGER_KEY)),
            }
    return [found[key] for key in sorted(found)]


def _announced_finger(value):
    """The fingerprint an SSDP answer announces, in Salt's form when it is one; else None."""
    if not isinstance(value, str) or not value.strip():
        return None
    digits = value.strip().lower().replace(":", "")
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))


def pinned(found, finger):
    """
    The candidates that may hold the key ``finger``: those announcing that fingerprint when
    any does; else those announcing none (their key is checked once the minion connects).
    StepFailed('discover') naming every fingerprint when each candidate announces another.

    An SSDP answer is not authenticated, so this only chooses: the minion's own check of
    ``master_finger`` is what refuses a master with another key.
    """
    if finger is None or not found:
        return found
    announcing = [entry for entry in found if entry.get("finger") == finger]
    if announcing:
        return announcing
    silent = [entry for entry in found if not entry.get("finger")]
    if silent:
        return silent
    listed = ", ".join(f"{entry['address']} announces {entry['finger']}" for entry in found)
    raise StepFailed(
        "discover",
        f"no EOS master that answered SSDP discovery has the key master_finger {finger}: "
        f"{listed}; nothing was changed",
    )


def matching(found, cluster=None, mapping=None, match="any"):
    """The candidates of ``cluster`` that also match the minion's discovery mapping."""
    kept = []
    for entry in found:
        if cluster is not None and entry["cluster"] != cluster:
            continue
        if mapping:
            hits = sum(1 for key, value in mapping.items() if entry["mapping"].get(key) == value)
            if (match == "all" and hits != len(mapping)) or (match == "any" and not hits):
                continue
        kept.append(entry)
    return kept


def choose(found, cluster=None):
    """The one master to join, or StepFailed('discover') saying why not."""
    wanted = f" of cluster {cluster!r}" if cluster else ""
    if not found:
        raise StepFailed(
            "discover",
            f"no EOS master{wanted} answered SSDP discovery on this network (is the master's "
            "'discovery' option set, UDP port open, and this host on the same broadcast "
            "domain?); give master=<address> with mode=join",
        )
    addresses = sorted({entry["address"] for entry in found})
    if len(addresses) > 1:
        listed = ", ".join(f"{e['address']} (cluster {e['cluster']})" for e in found)
        raise StepFailed(
            "discover",
            f"{len(addresses)} EOS masters{wanted} answered: {listed}; choose one with "
            "mode=join master=<address>, or name the cluster with cluster=<name>",
        )
    return found[0]
