"""Grouped contrastive batches: each random image followed by other renders of the same emoji."""

from __future__ import annotations

import torch

from unclip.training.clip import emoji_groups

# emoji 0 in three styles, emoji 1 in one, emoji 2 in two, emoji 3 in four; not sorted, as a dataset isn't
BASE = torch.tensor([3, 0, 2, 0, 3, 1, 3, 2, 0, 3])


def test_each_group_is_one_emoji_and_partners_are_its_other_renders() -> None:
    gen = torch.Generator().manual_seed(0)
    for group in (2, 3, 4):
        idx = emoji_groups(BASE, 60, group, gen)
        assert idx.shape == (60,)
        rows = idx.view(-1, group)
        assert bool((BASE[rows] == BASE[rows[:, :1]]).all())
        for anchor, *partners in rows.tolist():
            if int(BASE[anchor]) == 1:  # its only render: it is its own partner
                assert partners == [anchor] * (group - 1)
            else:
                assert anchor not in partners


def test_partners_cover_every_other_render_evenly() -> None:
    gen = torch.Generator().manual_seed(1)
    rows = emoji_groups(BASE, 40_000, 2, gen).view(-1, 2)
    counts: dict[tuple[int, int], int] = {}
    for a, p in rows.tolist():
        counts[(a, p)] = counts.get((a, p), 0) + 1
    for a in range(len(BASE)):
        others = [j for j in range(len(BASE)) if BASE[j] == BASE[a] and j != a]
        if not others:
            continue
        n = [counts.get((a, j), 0) for j in others]
        assert min(n) > 0.7 * max(n), (a, n)


def test_a_batch_size_that_groups_do_not_divide_is_cut_to_size() -> None:
    idx = emoji_groups(BASE, 7, 3, torch.Generator().manual_seed(2))
    assert idx.shape == (7,)
