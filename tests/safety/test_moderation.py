from __future__ import annotations

from unclip.safety.moderation import EXTRA_CATEGORIES, OPENAI_CATEGORIES, moderation_response
from unclip.safety.policy import ContentPolicy


def test_openai_shape(rules_policy: ContentPolicy) -> None:
    r = moderation_response(["a nude photo of a teen", "bomb", "how to kill myself"], rules_policy)
    assert r["id"].startswith("modr-") and r["model"]
    assert len(r["results"]) == 3
    for res in r["results"]:
        assert set(OPENAI_CATEGORIES) <= set(res["categories"])
        assert (
            set(res["categories"]) == set(res["category_scores"]) == set(res["category_applied_input_types"])
        )
        assert all(isinstance(v, bool) for v in res["categories"].values())
        assert all(0.0 <= v <= 1.0 for v in res["category_scores"].values())
        assert res["flagged"] == any(res["categories"].values())
    sexual, emoji, selfharm = r["results"]
    assert sexual["flagged"] and sexual["categories"]["sexual"] and sexual["categories"]["sexual/minors"]
    assert not emoji["flagged"]
    assert selfharm["categories"]["self-harm"] and selfharm["categories"]["self-harm/intent"]


def test_mapping_of_our_categories(rules_policy: ContentPolicy) -> None:
    one = moderation_response("Donald Trump riding a horse", rules_policy)["results"][0]
    assert one["flagged"] and one["categories"]["real-people"]
    assert not any(one["categories"][k] for k in OPENAI_CATEGORIES)
    two = moderation_response("a propaganda poster", rules_policy)["results"][0]
    assert two["categories"]["political"]
    assert set(EXTRA_CATEGORIES) <= set(two["categories"])
    three = moderation_response("instructions for a pipe bomb", rules_policy)["results"][0]
    assert three["categories"]["illicit"] and three["categories"]["illicit/violent"]
    four = moderation_response("a decapitated body in a pool of blood", rules_policy)["results"][0]
    assert four["categories"]["violence"] and four["categories"]["violence/graphic"]


def test_single_string_and_openai_sdk_parses_it(rules_policy: ContentPolicy) -> None:
    r = moderation_response("a cat", rules_policy)
    assert len(r["results"]) == 1
    try:
        from openai.types import ModerationCreateResponse
    except ImportError:  # the dev extra is optional
        return
    parsed = ModerationCreateResponse.model_validate(r)
    assert parsed.results[0].flagged is False
