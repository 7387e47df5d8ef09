"""Token shards and the sequential loader, written from ../../shared/spec/speedrun-124m.md
("Data"): a 256-int32 header [magic 20240520, version 1, token count], then uint16 ids. Each
micro-batch reads B*T+1 contiguous tokens (inputs = [:-1], targets = [1:]) and advances by B*T;
the next shard starts when the rest of this one cannot hold a micro-batch; after the last shard
the first comes again. Shard tails too short for a batch are skipped, as lib/data/loader.ts does.
"""
import glob
import os

import numpy as np

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256


def read_shard(path):
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if header.shape[0] != HEADER_INTS or header[0] != MAGIC or header[1] != VERSION:
        raise ValueError(f"{path}: not a version-{VERSION} token shard")
    tokens = np.fromfile(path, dtype="<u2", offset=HEADER_INTS * 4)
    if tokens.shape[0] != header[2]:
        raise ValueError(f"{path}: header says {header[2]} tokens, file holds {tokens.shape[0]}")
    return tokens


def expand(pattern):
    """A path, or a pattern with * / ? in its last component (matches sorted by name)."""
    files = sorted(glob.glob(pattern)) if any(ch in os.path.basename(pattern) for ch in "*?") else [pattern]
    if not files or not all(os.path.isfile(f) for f in files):
        raise FileNotFoundError(f"no token shard matches '{pattern}'")
    return files


class Loader:
    def __init__(self, pattern, batch, seq_len):
        self.shards = [read_shard(f) for f in expand(pattern)]
        self.batch, self.seq_len = batch, seq_len
        self.n = batch * seq_len
        self.reset()

    def reset(self):
        self.shard, self.position = 0, 0

    @property
    def batches_per_epoch(self):
        return sum((len(s) - 1) // self.n for s in self.shards)

    def next(self):
        tokens = self.shards[self.shard][self.position:self.position + self.n + 1].astype(np.int64)
        self.position += self.n
        if self.position + self.n + 1 > len(self.shards[self.shard]):
            self.shard = (self.shard + 1) % len(self.shards)
            self.position = 0
        shape = (self.batch, self.seq_len)
        return tokens[:-1].reshape(shape), tokens[1:].reshape(shape)
