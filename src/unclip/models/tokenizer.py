"""A small byte-level BPE tokenizer trained on our captions and saved as a transformers `CLIPTokenizer`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int, max_length: int, out_dir: Path):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    tok = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="</w>", unk_token=EOS))
    # The same normaliser and pre-tokeniser as CLIPTokenizer, so the trained merges mean the same thing there.
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(
                    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
                ),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS],
        initial_alphabet=alphabet,
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    import json
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tok.model.save(tmp)
        merges = [
            tuple(line.split(" "))
            for line in (Path(tmp) / "merges.txt").read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#version")
        ]
    # ids in a fixed order (the trainer numbers its initial symbols in hash order: the same captions gave other
    # ids on every run): the specials, the symbols sorted, then each merge's result in merge order
    merged = ["".join(m) for m in merges]
    symbols = sorted(set(tok.get_vocab()) - {BOS, EOS} - set(merged))
    vocab: dict[str, int] = {t: i for i, t in enumerate(dict.fromkeys([BOS, EOS, *symbols, *merged]))}
    # Every byte must also exist as a word end, or a rare character at the end of a word becomes unknown.
    for ch in sorted(alphabet):
        vocab.setdefault(f"{ch}</w>", len(vocab))
    clip_tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)
    # written beside, then renamed: a kill half-way leaves no folder that looks like a tokenizer
    part = out_dir.with_name(out_dir.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    clip_tok.save_pretrained(part)
    (part / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (part / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8"
    )
    shutil.rmtree(out_dir, ignore_errors=True)
    part.rename(out_dir)
    return CLIPTokenizer.from_pretrained(out_dir)
