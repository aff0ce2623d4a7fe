"""OpenAI's moderation response (CreateModerationResponse) built from the content policy.

Mapping from policy categories to OpenAI's keys (all of OpenAI's keys are always present):

====================  ===========================================================================
policy category       OpenAI keys set when the category is flagged
====================  ===========================================================================
sexual                ``sexual``; ``sexual/minors`` when a minor is mentioned
violence (and gore)   ``violence``; ``violence/graphic`` for gore terms
hate (+ harassment)   ``hate``; ``harassment`` for insults aimed at a person; ``hate/threatening``
                      and ``harassment/threatening`` when violence is flagged too
self-harm             ``self-harm``; ``self-harm/intent`` (first person) and
                      ``self-harm/instructions`` ("how to")
illicit               ``illicit``; ``illicit/violent`` for weapons and explosives
political             extra key ``political`` (OpenAI has no such category)
real-people           extra key ``real-people`` (OpenAI has no such category)
====================  ===========================================================================

OpenAI's SDKs accept extra keys in ``categories`` and ``category_scores``, so existing clients keep working;
``flagged`` is true whenever any policy category is.
"""

from __future__ import annotations

import uuid
from typing import Any

from unclip.safety.policy import ContentPolicy, PolicyDecision

__all__ = ["EXTRA_CATEGORIES", "OPENAI_CATEGORIES", "moderation_response", "moderation_result"]

OPENAI_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
EXTRA_CATEGORIES = ("political", "real-people")
MODEL_NAME = "unclip-moderation-1"

# policy category -> OpenAI parent key
_PARENT = {
    "sexual": "sexual",
    "violence": "violence",
    "hate": "hate",
    "self-harm": "self-harm",
    "illicit": "illicit",
}


def moderation_result(decision: PolicyDecision) -> dict[str, Any]:
    """One entry of ``results`` for a policy decision."""
    flags = dict.fromkeys(OPENAI_CATEGORIES, False)
    scores = dict.fromkeys(OPENAI_CATEGORIES, 0.0)
    for name, score in decision.category_scores.items():
        key = _PARENT.get(name, name)
        flagged = bool(decision.categories.get(name))
        flags[key] = flags.get(key, False) or flagged
        scores[key] = max(scores.get(key, 0.0), float(score))
    for sub, on in decision.subcategories.items():
        if sub in flags and on:
            flags[sub] = True
    # sub-category scores: the parent's score when set, a damped one otherwise
    for sub in OPENAI_CATEGORIES:
        if "/" in sub:
            parent = sub.split("/")[0]
            scores[sub] = scores[parent] if flags[sub] else round(scores[parent] * 0.3, 6)
    # harassment is part of the "hate and harassment" policy category
    scores["harassment"] = scores["hate"] if flags["harassment"] else round(scores["hate"] * 0.5, 6)
    scores["harassment/threatening"] = min(scores["harassment"], scores["violence"])
    scores["hate/threatening"] = min(scores["hate"], scores["violence"])
    if flags["hate"] and flags["violence"]:
        flags["hate/threatening"] = True
    if flags["harassment"] and flags["violence"]:
        flags["harassment/threatening"] = True
    for extra in EXTRA_CATEGORIES:
        flags.setdefault(extra, False)
        scores.setdefault(extra, 0.0)
    return {
        "flagged": bool(decision.flagged),
        "categories": flags,
        "category_scores": {k: round(float(v), 6) for k, v in scores.items()},
        "category_applied_input_types": {k: ["text"] for k in flags},
    }


def moderation_response(
    texts: list[str] | str, policy: ContentPolicy | None = None, model: str | None = None
) -> dict[str, Any]:
    """OpenAI's CreateModerationResponse for `texts` (a string or a list), judged by `policy`."""
    if isinstance(texts, str):
        texts = [texts]
    policy = policy or ContentPolicy.load()
    return {
        "id": f"modr-{uuid.uuid4().hex}",
        "model": model or MODEL_NAME,
        "results": [moderation_result(policy.check(t)) for t in texts],
    }
