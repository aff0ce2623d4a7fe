"""Content policy for prompts: rule lists layered with a semantic classifier.

    policy = ContentPolicy.load()          # the policy.yaml shipped in this package, or a path
    d = policy.check("a cat in a hat")     # PolicyDecision(flagged=False, ...)

How a prompt is judged (every step reads `policy.yaml`, which admins edit):

1. The text is normalised against obfuscation (`unclip.safety.normalize`): case, leetspeak, homoglyphs,
   zero-width characters, spacing and punctuation inside words, diacritics; emoji pictographs are removed.
2. Rule lists per category (words, prefixes ``stem*``, multi-word phrases, regular expressions, and
   substrings for a few distinctive terms) are matched on the normalised views, in English and other
   languages. A rule hit scores 1.0 and flags the category. `allow.phrases` (``killer whale``) are removed
   before rules run.
3. A prompt that is only allow-listed names (benign emoji such as ``bomb``, ``kitchen knife``,
   ``flag: Ukraine``) plus style words (``emoji``, ``cute``, ``3d``) is allowed without further checks.
4. The semantic classifier embeds the prompt (and its clauses) with all-MiniLM-L6-v2 and compares it with
   each category's exemplar phrases. A category is flagged when its best cosine similarity reaches the
   category's `threshold` *and* beats the best benign exemplar by `classifier.margin`. Scores are the
   similarity mapped through a logistic centred on the threshold (0.5 at the threshold).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from unclip.safety.normalize import Normalized, normalize, normalize_term, strip_marks

__all__ = [
    "CATEGORIES",
    "CategorySpec",
    "ContentPolicy",
    "OffenderSettings",
    "PolicyDecision",
    "default_policy_path",
]

#: Policy categories, in the order they are reported.
CATEGORIES = ("sexual", "violence", "hate", "self-harm", "illicit", "political", "real-people")


def default_policy_path() -> Path:
    return Path(str(resources.files("unclip.safety").joinpath("policy.yaml")))


@dataclass(frozen=True)
class OffenderSettings:
    """Repeat-offender handling, enforced by the server: counts of flagged requests per user in a window."""

    throttle_after: int = 3
    suspend_after: int = 10
    window_hours: float = 24.0
    throttle_seconds: float = 60.0

    def get(self, name: str, default: Any = None) -> Any:  # dict-like access for callers that expect one
        return getattr(self, name, default)

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)


@dataclass
class PolicyDecision:
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    category: str | None = None
    reason: str = ""
    #: OpenAI moderation sub-categories that matched (``sexual/minors``, ``violence/graphic``...).
    subcategories: dict[str, bool] = field(default_factory=dict)
    #: what decided: "rule", "classifier", "allow-list" or "" (nothing found)
    source: str = ""
    matches: list[str] = field(default_factory=list)
    #: whether the semantic classifier ran (rules and the allow-list decide most prompts without it)
    used_classifier: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "flagged": self.flagged,
            "category": self.category,
            "reason": self.reason,
            "source": self.source,
            "categories": dict(self.categories),
            "category_scores": {k: round(v, 4) for k, v in self.category_scores.items()},
            "subcategories": dict(self.subcategories),
            "matches": list(self.matches),
        }


# --- rules ----------------------------------------------------------------------------------------------

_LATIN_TERM = re.compile(r"^[a-z0-9 '\-*.&]+$")


class RuleSet:
    """Compiled rule list: terms (word, ``prefix*``, phrase), regexes and substrings."""

    def __init__(self, spec: Mapping[str, Any] | Iterable[str] | None) -> None:
        if spec is None:
            spec = {}
        if not isinstance(spec, Mapping):
            spec = {"terms": list(spec)}
        latin: list[str] = []
        collapsed: list[str] = []
        self.other_script: list[str] = []
        for raw in spec.get("terms", []) or []:
            term = normalize_term(str(raw))
            if not term:
                continue
            if _LATIN_TERM.match(term):
                body = re.escape(term.rstrip("*")).replace(r"\ ", r"[\s\-]*")
                body = body + (r"\w*" if term.endswith("*") else "")
                latin.append(body)
                # the same term with every letter allowed to repeat ("kiiiill", "pooorn")
                stretched = "".join(
                    r"[\s\-]*" if c in " -" else re.escape(c) + ("+" if c.isalnum() else "")
                    for c in term.rstrip("*")
                )
                collapsed.append(stretched + (r"\w*" if term.endswith("*") else ""))
            else:
                self.other_script.append(term.rstrip("*"))
        self.word_re = re.compile(r"(?<!\w)(?:" + "|".join(latin) + r")(?!\w)") if latin else None
        self.collapsed_re = (
            re.compile(r"(?<!\w)(?:" + "|".join(collapsed) + r")(?!\w)") if collapsed else None
        )
        # patterns see text whose accents were removed (убий -> убии): strip them from the patterns too
        self.patterns = [re.compile(strip_marks(str(p))) for p in spec.get("patterns", []) or []]
        self.substrings = [re.sub(r"[\W_]+", "", normalize_term(s)) for s in spec.get("substrings", []) or []]
        self.substrings = [s for s in self.substrings if s]

    def __bool__(self) -> bool:
        return bool(self.word_re or self.other_script or self.patterns or self.substrings)

    def match(self, n: Normalized) -> str | None:
        """The first matching rule text, or None."""
        views = n.word_views()
        if self.word_re is not None:
            for v in views:
                m = self.word_re.search(v)
                if m:
                    return m.group(0)
        if self.collapsed_re is not None:
            m = self.collapsed_re.search(n.skeleton)
            if m:
                return m.group(0)
        for term in self.other_script:
            if term in n.plain or term in n.clean:
                return term
        for pat in self.patterns:
            for v in views:
                m = pat.search(v)
                if m:
                    return m.group(0)
        for s in self.substrings:
            if s in n.compact:
                return s
        return None


@dataclass
class CategorySpec:
    name: str
    label: str
    threshold: float
    rules: RuleSet
    exemplars: list[str]
    openai: list[str]
    subcategories: dict[str, RuleSet]
    classifier: bool = True


# --- the policy -----------------------------------------------------------------------------------------


class ContentPolicy:
    """Rules + semantic classifier, configured by a policy file (YAML or JSON)."""

    def __init__(self, config: Mapping[str, Any], path: Path | None = None) -> None:
        self.path = path
        self.config = dict(config)
        self.version = str(config.get("version", "1"))
        clf = dict(config.get("classifier", {}) or {})
        self.classifier_enabled = bool(clf.get("enabled", True))
        self.margin = float(clf.get("margin", 0.05))
        self.slope = float(clf.get("slope", 25.0))
        self.min_latin_fraction = float(clf.get("min_latin_fraction", 0.6))
        self.short_words = int(clf.get("short_prompt_words", 2))
        self.low_band = float(clf.get("low_band", 0.0))
        self.low_band_margin = float(clf.get("low_band_margin", 1.0))
        self.short_boost = float(clf.get("short_prompt_boost", 0.08))
        self.segment_split = re.compile(clf.get("segment_split", r"[,;.!?]|\band\b|\bwith\b|\bwhile\b"))
        self.categories: dict[str, CategorySpec] = {}
        for name, spec in (config.get("categories") or {}).items():
            spec = spec or {}
            self.categories[name] = CategorySpec(
                name=name,
                label=str(spec.get("label", name)),
                threshold=float(spec.get("threshold", 0.6)),
                rules=RuleSet(spec.get("rules")),
                exemplars=[str(e) for e in spec.get("exemplars", []) or []],
                openai=[str(k) for k in spec.get("openai", []) or []],
                subcategories={k: RuleSet(v) for k, v in (spec.get("subcategories") or {}).items()},
                classifier=bool(spec.get("classifier", True)),
            )
        allow = dict(config.get("allow", {}) or {})
        self.benign_exemplars = [str(e) for e in allow.get("exemplars", []) or []]
        names = [normalize_term(x) for x in allow.get("emoji_names", []) or []]
        style = [normalize_term(x) for x in allow.get("style_words", []) or []]
        self._allow_phrases = RuleSet({"terms": allow.get("phrases", []) or []})
        self._allow_names = self._alternation(sorted(set(names), key=len, reverse=True))
        self._style = self._alternation(sorted(set(style), key=len, reverse=True))
        off = dict(config.get("offenders", {}) or {})
        self.offenders = OffenderSettings(
            throttle_after=int(off.get("throttle_after", 3)),
            suspend_after=int(off.get("suspend_after", 10)),
            window_hours=float(off.get("window_hours", 24)),
            throttle_seconds=float(off.get("throttle_seconds", 60)),
        )
        self.embedding_model = clf.get("model")
        self._emb_lock = threading.Lock()
        self._exemplar_matrix: np.ndarray | None = None
        self._exemplar_owner: np.ndarray | None = None  # index of category per row; -1 = benign
        self._embedder: Any = None
        self._cache: dict[str, PolicyDecision] = {}
        self._cache_size = int(clf.get("cache_size", 2048))

    @staticmethod
    def _alternation(items: list[str]) -> re.Pattern[str] | None:
        items = [re.escape(i).replace(r"\ ", r"\s*") for i in items if i]
        return re.compile(r"(?<!\w)(?:" + "|".join(items) + r")(?!\w)") if items else None

    # -- loading -----------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path | None = None) -> ContentPolicy:
        """Load a policy file (default: the one shipped in the package). The embedding model loads lazily."""
        p = Path(path) if path is not None else default_policy_path()
        return _load_cached(str(p.resolve()), p.stat().st_mtime_ns)

    @classmethod
    def from_file(cls, path: str | Path) -> ContentPolicy:
        p = Path(path)
        text = p.read_text(encoding="utf-8")
        if p.suffix.lower() == ".json":
            import json

            config = json.loads(text)
        else:
            import yaml

            config = yaml.safe_load(text)
        if not isinstance(config, Mapping):
            raise ValueError(f"{p}: a policy file must hold a mapping")
        return cls(config, p)

    # -- classifier ----------------------------------------------------------------------------------------

    def _ensure_classifier(self) -> None:
        if self._exemplar_matrix is not None:
            return
        with self._emb_lock:
            if self._exemplar_matrix is not None:
                return
            from unclip.safety.embedding import get_embedder

            embedder = get_embedder(self.embedding_model)
            texts: list[str] = []
            owners: list[int] = []
            names = list(self.categories)
            for idx, name in enumerate(names):
                spec = self.categories[name]
                if not spec.classifier:
                    continue
                texts.extend(spec.exemplars)
                owners.extend([idx] * len(spec.exemplars))
            texts.extend(self.benign_exemplars)
            owners.extend([-1] * len(self.benign_exemplars))
            matrix = embedder.encode(texts) if texts else np.zeros((0, embedder.dim), np.float32)
            self._embedder = embedder
            self._exemplar_owner = np.asarray(owners, dtype=np.int64)
            self._exemplar_matrix = matrix

    def warm_up(self) -> None:
        """Load the embedding model and embed the exemplars now rather than on the first request."""
        if self.classifier_enabled:
            self._ensure_classifier()
            self.check("warm up the classifier")

    def _segments(self, text: str) -> list[str]:
        segs = [text]
        parts = [p.strip() for p in self.segment_split.split(text) if p and len(p.strip()) > 2]
        if len(parts) > 1:
            segs.extend(parts[:8])
        return segs

    def similarities(self, text: str) -> tuple[dict[str, float], float]:
        """Best cosine similarity per category and to the benign exemplars, over the text and its clauses."""
        sims, benign, _ = self._similarities(text)
        return sims, benign

    def _similarities(self, text: str) -> tuple[dict[str, float], float, dict[str, float]]:
        self._ensure_classifier()
        assert self._exemplar_matrix is not None and self._exemplar_owner is not None
        segs = self._segments(text)
        emb = self._embedder.encode(segs)
        sims = emb @ self._exemplar_matrix.T  # (segments, exemplars)
        names = list(self.categories)
        out: dict[str, float] = {}
        benign_mask = self._exemplar_owner == -1
        # benign similarity per segment, so a clause is compared with its own benign reading
        benign_per_seg = sims[:, benign_mask].max(axis=1) if benign_mask.any() else np.zeros(len(segs))
        best_margin: dict[str, float] = {}
        for idx, name in enumerate(names):
            mask = self._exemplar_owner == idx
            if not mask.any():
                continue
            per_seg = sims[:, mask].max(axis=1)
            j = int(per_seg.argmax())
            out[name] = float(per_seg[j])
            best_margin[name] = float((per_seg - benign_per_seg).max())
        return out, float(benign_per_seg[0]), best_margin

    # -- checking ------------------------------------------------------------------------------------------

    def _only_allowed(self, n: Normalized) -> bool:
        text = n.clean
        if self._allow_names is None:
            return False
        if not self._allow_names.search(text):
            return False
        text = self._allow_names.sub(" ", text)
        if self._style is not None:
            text = self._style.sub(" ", text)
        return not re.sub(r"[\W\d_]+", "", text)

    def _subcategories(self, n: Normalized, flags: dict[str, bool], subs: dict[str, bool]) -> None:
        """OpenAI sub-categories (sexual/minors, violence/graphic...) that qualify a flagged category."""
        for name, spec in self.categories.items():
            if not flags[name]:
                continue
            for sub, rules in spec.subcategories.items():
                if rules.match(n):
                    subs[sub] = True

    @staticmethod
    def _latin_fraction(text: str) -> float:
        letters = [c for c in text if c.isalpha()]
        if not letters:
            return 0.0
        return sum(c.isascii() for c in letters) / len(letters)

    def check(self, text: str) -> PolicyDecision:
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        decision = self._check(text)
        with self._emb_lock:
            if len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)), None)
            self._cache[text] = decision
        return decision

    def _check(self, text: str) -> PolicyDecision:
        names = list(self.categories)
        scores = dict.fromkeys(names, 0.0)
        flags = dict.fromkeys(names, False)
        subs: dict[str, bool] = {}
        matches: list[str] = []
        n = normalize(text or "")
        full = n  # the classifier reads the whole prompt; allow phrases only shield words from the rules
        if self._allow_phrases:
            # remove benign phrases that contain alarming words ("killer whale", "kill time")
            stripped = n
            for _ in range(3):
                hit = self._allow_phrases.match(stripped)
                if not hit:
                    break
                stripped = normalize(stripped.clean.replace(hit, " "))
            n = stripped
        if not n.clean:
            return PolicyDecision(False, flags, scores, None, "empty prompt")

        # 1. rules
        for name in names:
            spec = self.categories[name]
            hit = spec.rules.match(n)
            if hit:
                flags[name] = True
                scores[name] = 1.0
                matches.append(f"{name}: {hit}")
        if any(flags.values()):
            self._subcategories(n, flags, subs)
            top = max(names, key=lambda k: scores[k])
            return PolicyDecision(
                True,
                flags,
                scores,
                top,
                f"matched the {self.categories[top].label} rules",
                subs,
                "rule",
                matches,
            )

        # 2. allow-list fast path
        if self._only_allowed(n):
            return PolicyDecision(
                False, flags, scores, None, "allow-listed emoji or term", subs, "allow-list"
            )

        # 3. classifier
        if self.classifier_enabled and self._latin_fraction(full.clean) >= self.min_latin_fraction:
            sims, benign, margins = self._similarities(full.clean)
            # one or two words carry little context for the embedding (a foreign word for "syringe"
            # can land near "injecting heroin"): they need more similarity
            boost = self.short_boost if len(full.clean.split()) <= self.short_words else 0.0
            for name, sim in sims.items():
                spec = self.categories[name]
                threshold = spec.threshold + boost
                score = 1.0 / (1.0 + float(np.exp(-self.slope * (sim - threshold))))
                # a prompt closer to a benign exemplar than to the category is discounted
                if margins.get(name, 0.0) < self.margin:
                    score = min(score, 0.49)
                margin = margins.get(name, 0.0)
                if (sim >= threshold and margin >= self.margin) or (
                    sim >= threshold - self.low_band and margin >= self.low_band_margin
                ):
                    score = max(score, 0.5)
                    flags[name] = True
                    matches.append(f"{name}: similarity {sim:.2f} (benign {benign:.2f})")
                scores[name] = score
            if any(flags.values()):
                self._subcategories(n, flags, subs)
                top = max((k for k in names if flags[k]), key=lambda k: scores[k])
                return PolicyDecision(
                    True,
                    flags,
                    scores,
                    top,
                    f"similar to {self.categories[top].label} examples",
                    subs,
                    "classifier",
                    matches,
                    used_classifier=True,
                )
            return PolicyDecision(False, flags, scores, None, "", subs, "", used_classifier=True)
        return PolicyDecision(False, flags, scores, None, "", subs, "")


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int) -> ContentPolicy:
    return ContentPolicy.from_file(path)
