"""A small trained float layer for the export tests: nn.Linear(64, 10) on scikit-learn's digits."""
from functools import lru_cache

import numpy as np
import torch
from torch import nn


def double_linear(D, M, seed=0, bias=True):
    torch.manual_seed(seed)
    return nn.Linear(D, M, bias=bias).double()


def digits(n=400):
    from sklearn.datasets import load_digits
    data = load_digits()
    return data.data[:n] / 8.0 - 1.0, data.target[:n]       # [n, 64] in [-1, 1]


@lru_cache(maxsize=None)
def trained_linear(seed=0, steps=150) -> tuple[nn.Linear, np.ndarray]:
    """nn.Linear(64, 10) trained with full-batch Adam on 400 digits (cross entropy); do not modify."""
    x, y = digits()
    linear = double_linear(64, 10, seed)
    optimizer = torch.optim.Adam(linear.parameters(), lr=0.02)
    inputs, labels = torch.from_numpy(x), torch.from_numpy(y)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)          # tiny matrices: threads only contend with the other test workers
    try:
        for _ in range(steps):
            optimizer.zero_grad()
            nn.functional.cross_entropy(linear(inputs), labels).backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return linear, x
