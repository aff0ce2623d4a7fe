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
4. The semantic classifier (`unclip.safety.classifier`) reads the normalised prompt's multilingual sentence
   embedding and gives each category a probability against "benign". With no rule hit it refuses when
   1 - P(benign) reaches its threshold; a rule hit refuses unless that harm is below the classifier's veto
   (harmless look-alikes such as "suicide doors"). `unclip policy train` fits it and chooses both values.
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

from unclip.safety.classifier import PromptClassifier, decide
from unclip.safety.normalize import Normalized, normalize, normalize_term, strip_marks
from unclip.safety.wordsplit import load_word_model

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
_WORD = re.compile(r"\w+")


class RuleSet:
    """Compiled rule list: terms (word, ``prefix*``, phrase), names (whole words only, looked up by word
    sequence, so a list of thousands costs no more than a few), regexes and substrings."""

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
        self.names: set[str] = set()
        for raw in spec.get("names", []) or []:
            name = normalize_term(str(raw))
            if _LATIN_TERM.match(name):
                self.names.add(" ".join(_WORD.findall(name)))
            elif name:
                self.other_script.append(name)
        self.names.discard("")
        self._name_words = max((n.count(" ") + 1 for n in self.names), default=0)
        # patterns see text whose accents were removed (убий -> убии): strip them from the patterns too
        self.patterns = [re.compile(strip_marks(str(p))) for p in spec.get("patterns", []) or []]
        self.substrings = [re.sub(r"[\W_]+", "", normalize_term(s)) for s in spec.get("substrings", []) or []]
        self.substrings = [s for s in self.substrings if s]

    def __bool__(self) -> bool:
        return bool(self.word_re or self.names or self.other_script or self.patterns or self.substrings)

    def match_name(self, n: Normalized) -> str | None:
        """The first listed name in the prompt, or None."""
        if self.names:
            for v in n.word_views():
                name = self._name(v)
                if name:
                    return name
        return None

    def _name(self, text: str) -> str | None:
        words = _WORD.findall(text)
        for i in range(len(words)):
            for k in range(min(self._name_words, len(words) - i), 0, -1):
                candidate = " ".join(words[i : i + k])
                if candidate in self.names:
                    return candidate
        return None

    def match(self, n: Normalized) -> str | None:
        """The first matching rule text, or None."""
        views = n.word_views()
        if self.word_re is not None:
            for v in views:
                m = self.word_re.search(v)
                if m:
                    return m.group(0)
        name = self.match_name(n)
        if name:
            return name
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
        weights = clf.get("weights")
        self.weights_path = Path(weights) if weights else None  # None: the weights shipped in this package
        self._threshold = float(clf["threshold"]) if clf.get("threshold") is not None else None
        self._veto = float(clf["veto"]) if clf.get("veto") is not None else None
        self.categories: dict[str, CategorySpec] = {}
        for name, spec in (config.get("categories") or {}).items():
            spec = spec or {}
            self.categories[name] = CategorySpec(
                name=name,
                label=str(spec.get("label", name)),
                rules=RuleSet(self._with_names_file(spec.get("rules"))),
                exemplars=[str(e) for e in spec.get("exemplars", []) or []],
                openai=[str(k) for k in spec.get("openai", []) or []],
                subcategories={k: RuleSet(v) for k, v in (spec.get("subcategories") or {}).items()},
                classifier=bool(spec.get("classifier", True)),
            )
        allow = dict(config.get("allow", {}) or {})
        self.benign_exemplars = [str(e) for e in allow.get("exemplars", []) or []]
        names = [normalize_term(x) for x in allow.get("emoji_names", []) or []]
        style = [normalize_term(x) for x in allow.get("style_words", []) or []]
        phrases = list(allow.get("phrases", []) or [])
        if allow.get("phrases_file"):
            phrases += self._list_file(str(allow["phrases_file"]))
        self._allow_phrases = RuleSet({"terms": phrases})
        self._allow_names = self._alternation(sorted(set(names), key=len, reverse=True))
        self._style = self._alternation(sorted(set(style), key=len, reverse=True))
        off = dict(config.get("offenders", {}) or {})
        self.offenders = OffenderSettings(
            throttle_after=int(off.get("throttle_after", 3)),
            suspend_after=int(off.get("suspend_after", 10)),
            window_hours=float(off.get("window_hours", 24)),
            throttle_seconds=float(off.get("throttle_seconds", 60)),
        )
        self._emb_lock = threading.Lock()
        self._classifier: PromptClassifier | None = None
        self._embedder: Any = None
        self._cache: dict[str, PolicyDecision] = {}
        self._cache_size = int(clf.get("cache_size", 2048))

    def _list_file(self, name: str) -> list[str]:
        """A list file's entries: one a line, `#` comments; relative to the policy file, else to this package."""
        path = Path(name)
        if not path.is_absolute():
            near = self.path.parent / path if self.path is not None else None
            path = near if near is not None and near.is_file() else default_policy_path().parent / path
        lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
        return [x for x in lines if x and not x.startswith("#")]

    def _with_names_file(self, rules: Any) -> Any:
        """Rules whose `names_file` is read into `names`."""
        if not isinstance(rules, Mapping) or not rules.get("names_file"):
            return rules
        return {**rules, "names": [*(rules.get("names") or []), *self._list_file(str(rules["names_file"]))]}

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
        try:
            if p.suffix.lower() == ".json":
                import json

                config = json.loads(text)
            else:
                import yaml

                config = yaml.safe_load(text)
        except ValueError as exc:  # JSON
            raise ValueError(f"{p}: not valid JSON ({exc})") from exc
        except Exception as exc:  # YAML's errors: where in the file, in its own words
            raise ValueError(f"{p}: not valid YAML ({' '.join(str(exc).split())})") from exc
        if not isinstance(config, Mapping):
            raise ValueError(f"{p}: a policy file must hold a mapping")
        return cls(config, p)

    # -- classifier ----------------------------------------------------------------------------------------

    def _ensure_classifier(self) -> None:
        if self._classifier is not None:
            return
        with self._emb_lock:
            if self._classifier is not None:
                return
            from unclip.safety.embedding import get_embedder

            clf = PromptClassifier.load(self.weights_path)
            if self._threshold is not None:
                clf.threshold = self._threshold
            if self._veto is not None:
                clf.veto = self._veto
            self._embedder = self._embedder or get_embedder(clf.encoder)
            self._classifier = clf

    def warm_up(self) -> None:
        """Load the embedding model and the classifier now rather than on the first request."""
        load_word_model()
        if self.classifier_enabled:
            self._ensure_classifier()
            self.check("warm up the classifier")

    def probabilities(self, text: str) -> dict[str, float]:
        """The classifier's probability for each policy category and for "benign", on the normalised text."""
        return self._read(normalize(text or "").clean or text)

    def _read(self, clean: str) -> dict[str, float]:
        self._ensure_classifier()
        assert self._classifier is not None
        probs = self._classifier.probabilities(self._embedder.encode([clean]), [clean])[0]
        return {name: float(p) for name, p in zip(self._classifier.classes, probs, strict=True)}

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

    def _rules(self, text: str) -> tuple[Normalized, Normalized, dict[str, str]]:
        """(the normalised prompt, the same without allow phrases, the first rule hit per category)."""
        full = normalize(text or "")
        n = full
        removed: list[str] = []
        if self._allow_phrases:
            # remove benign phrases that contain alarming words ("killer whale", "kill time"), from the view
            # that keeps most letters (plain keeps ç, ı, ł, which the rules of some languages need)
            for _ in range(5):
                hit = self._allow_phrases.match(n)
                source = next((v for v in (n.plain, n.clean, n.skeleton, n.segmented) if hit and hit in v), None)
                if source is None:
                    break
                removed.append(hit)
                n = normalize(source.replace(hit, " "))
        hits = {}
        if n.clean:
            for name, spec in self.categories.items():
                hit = spec.rules.match(n)
                if hit is None and removed:
                    # a name that overlaps an allow phrase without lying inside it ("donald trump card")
                    hit = spec.rules.match_name(full)
                    if hit is not None and any(hit in r for r in removed):
                        hit = None
                if hit:
                    hits[name] = hit
        return full, n, hits

    def rule_check(self, text: str) -> tuple[str | None, bool]:
        """(the first category whose rules match, whether the prompt is only allow-listed emoji names)."""
        _, n, hits = self._rules(text)
        return next(iter(hits), None), not hits and bool(n.clean) and self._only_allowed(n)

    def _check(self, text: str) -> PolicyDecision:
        names = list(self.categories)
        scores = dict.fromkeys(names, 0.0)
        flags = dict.fromkeys(names, False)
        subs: dict[str, bool] = {}
        full, n, hits = self._rules(text)
        if not n.clean:
            return PolicyDecision(False, flags, scores, None, "empty prompt")
        matches = [f"{name}: {hit}" for name, hit in hits.items()]
        allow_listed = not hits and self._only_allowed(n)
        if allow_listed or not self.classifier_enabled:
            if not hits:
                reason = "allow-listed emoji or term" if allow_listed else ""
                return PolicyDecision(
                    False, flags, scores, None, reason, subs, "allow-list" if allow_listed else ""
                )
            for name in hits:
                flags[name], scores[name] = True, 1.0
            self._subcategories(n, flags, subs)
            top = next(iter(hits))
            reason = f"matched the {self.categories[top].label} rules"
            return PolicyDecision(True, flags, scores, top, reason, subs, "rule", matches)

        probs = self._read(full.clean)
        if full.segmented and full.segmented != full.clean:  # written without spaces: the worse reading
            probs = min(probs, self._read(full.segmented), key=lambda p: p["benign"])
        clf = self._classifier
        assert clf is not None
        harm = 1.0 - float(probs["benign"])
        for name in names:
            scores[name] = float(probs.get(name, 0.0))
        if not decide(harm, bool(hits), False, clf.threshold, clf.veto):
            reason = ""
            if hits:
                reason = f"rule match overturned: the classifier reads it as harmless (harm {harm:.2f})"
                matches.append(f"classifier: harm {harm:.2f} < veto {clf.veto:.2f}")
            return PolicyDecision(False, flags, scores, None, reason, subs, "", matches, used_classifier=True)
        if hits:
            for name in hits:
                flags[name], scores[name] = True, 1.0
            top = next(iter(hits))
            source, reason = "rule", f"matched the {self.categories[top].label} rules"
        else:
            top = max(names, key=lambda k: scores[k])
            flags[top] = True
            for name in names:  # any other category the classifier is as sure of
                flags[name] = flags[name] or scores[name] >= clf.threshold
            scores[top] = max(scores[top], harm)
            source, reason = "classifier", f"read as {self.categories[top].label} by the classifier"
            matches.append(
                f"classifier: harm {harm:.2f} (threshold {clf.threshold:.2f}), {top} {probs[top]:.2f}"
            )
        self._subcategories(n, flags, subs)
        return PolicyDecision(True, flags, scores, top, reason, subs, source, matches, used_classifier=True)


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int) -> ContentPolicy:
    return ContentPolicy.from_file(path)
