"""
The answer to a storage beacon event as plain data: the node acts on its own measured level,
capped by ``automatic_up_to``. ``eos_storage.respond`` itself is tested with the cleanup
module (tests/unit/modules/test_eos_storage_cleanup.py).
"""

import pytest

from saltext.eos.utils import config
from saltext.eos.utils.storage import response


@pytest.mark.parametrize(
    ("measured", "cap", "action", "held_back"),
    [
        ("none", "emergency", None, None),
        ("warning", "emergency", None, None),
        ("compress", "emergency", "compress", None),
        ("cleanup", "cleanup", "cleanup", None),
        ("degraded", "emergency", "degrade", None),
        ("emergency", "degraded", "degrade", "emergency"),
        ("emergency", "cleanup", "cleanup", "emergency"),
        ("degraded", "warning", None, "degrade"),
        # critical deletes nothing: it is declared whatever the cap.
        ("critical", "cleanup", "critical", None),
    ],
)
def test_decide(measured, cap, action, held_back):
    decision = response.decide(measured, cap)
    assert (decision.action, decision.held_back) == (action, held_back)


def test_automatic_up_to_comes_from_the_pillar_profile_else_the_scale():
    pillar = config.Layers([("pillar", {"profile": {"cleanup": {"automatic_up_to": "cleanup"}}})])
    assert response.automatic_up_to(pillar) == "cleanup"
    scale_only = config.Layers([("pillar", {"scale": "medium"})])
    assert response.automatic_up_to(scale_only) == "degraded"
    assert response.automatic_up_to(config.Layers([])) == "emergency"


def test_a_bad_automatic_up_to_names_the_key():
    layers = config.Layers([("pillar", {"profile": {"cleanup": {"automatic_up_to": "all"}}})])
    message = r"eos:profile:cleanup:automatic_up_to: unknown level 'all'; expected one of warning"
    with pytest.raises(config.InvalidConfig, match=message):
        response.automatic_up_to(layers)


def test_the_cap_accepts_the_cleanup_spelling_of_degraded():
    given = config.Layers([("pillar", {"profile": {"cleanup": {"automatic_up_to": "degrade"}}})])
    assert response.automatic_up_to(given) == "degraded"
