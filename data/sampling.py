"""Training batches that are a pure function of (seed, iteration), for exact resume and DDP.

The original recreates a shuffled DataLoader iterator every ``len(dataset) // batch_size``
iterations (``train.py``). We do the same with an explicit permutation per epoch
(seeded by ``seed + epoch``), so iteration ``i`` always draws the same samples, and
give every sample its own augmentation seed, so the random crops and flips do not
depend on which worker loaded it. A resumed run therefore sees exactly the batches
an uninterrupted run would, and ``world_size`` processes each take a contiguous
``batch_size / world_size`` slice of the same global batch (the DDP equivalence).
"""
import random

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


class IterationBatchSampler(Sampler):
    """Yield, for iterations ``start .. stop - 1``, this process's share of each global batch.

    Each item is a list of ``(dataset_index, sample_seed)`` pairs.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, start: int, stop: int, rank: int = 0,
                 world_size: int = 1):
        if num_samples < batch_size:
            raise ValueError(f"the training split has {num_samples} samples, fewer than one batch of {batch_size}")
        if batch_size % world_size:
            raise ValueError(f"--batch_size {batch_size} is not divisible by the {world_size} processes")
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.start, self.stop, self.rank, self.world_size = start, stop, rank, world_size
        self.epoch_size = num_samples // batch_size
        self._epoch, self._order = None, None

    def __len__(self):
        return max(0, self.stop - self.start)

    def global_batch(self, iteration: int) -> list:
        """Dataset indices of the whole batch of ``iteration`` (all processes)."""
        epoch, step = divmod(iteration, self.epoch_size)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            self._epoch, self._order = epoch, torch.randperm(self.num_samples, generator=generator).tolist()
        return self._order[step * self.batch_size:(step + 1) * self.batch_size]

    def __iter__(self):
        share = self.batch_size // self.world_size
        for iteration in range(self.start, self.stop):
            batch = self.global_batch(iteration)
            first = self.rank * share
            yield [(index, sample_seed(self.seed, iteration, first + k))
                   for k, index in enumerate(batch[first:first + share])]


def sample_seed(seed: int, iteration: int, position: int) -> int:
    """A 32-bit seed for one sample of one iteration, independent of process and worker."""
    return int(np.random.SeedSequence([seed, iteration, position]).generate_state(1)[0])


class SeededDataset(Dataset):
    """Seeds Python, numpy and torch from the sample's seed before loading it."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        index, seed = item
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        if hasattr(self.dataset, "sample"):  # ActionDetection draws from an explicit generator
            return self.dataset.sample(index, np.random.default_rng(seed))
        return self.dataset[index]
