"""Seeded, stratified subsets: the same class proportions as the full set, the same images for a seed."""

from __future__ import annotations

import torch


def stratified_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """Sorted indices of ``size`` examples whose class counts follow those of ``labels``.

    Each class gets ``size * share`` examples rounded down, and the examples left over go to the
    classes with the largest remainders (ties: lower class index), so the counts sum to ``size``.

    >>> y = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    >>> torch.bincount(y[stratified_subset(y, 10, seed=0)]).tolist()
    [6, 3, 1]
    """
    n = len(labels)
    if not 0 < size <= n:
        raise ValueError(f"subset size must be between 1 and {n} (the set's size), got {size}")
    counts = torch.bincount(labels)
    exact = counts.double() * size / n
    take = exact.floor().long()
    left = size - int(take.sum())
    if left:
        # Largest remainders first; a stable sort on -remainder keeps lower class indices first on ties.
        order = torch.sort(-(exact - take), stable=True).indices
        take[order[:left]] += 1
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for k in range(len(counts)):
        if take[k]:
            members = torch.nonzero(labels == k).flatten()
            chosen.append(members[torch.randperm(len(members), generator=g)[: take[k]]])
    return torch.sort(torch.cat(chosen)).values
