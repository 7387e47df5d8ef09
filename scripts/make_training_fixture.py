#!/usr/bin/env python3
"""Makes test/fixtures/training-curves.safetensors: loss curves of the PyTorch reference trainer
(scripts/reference/train.py, float64 on the CPU) for a tiny GPT-2 trained with Newton-Muon, Muon
and AdamW, so the jest suite (test/train-reference.test.ts) can run our Trainer on the same job
and compare every step: the model, the data order, gradient accumulation, the schedule, the
Newton-Muon statistics and refreshes and both optimizers, end to end, against code that shares
nothing with ours but the spec.

The fixture holds everything the job needs, so the test depends on nothing else:
  init/<name>   the initial weights (F32, drawn by init_params with SEED),
  train_tokens, val_tokens   the token streams (F32, exact for ids < 2^24), taken from the start
                of the byte-level Moby-Dick shards newton-muon prepares (any shard works),
  metadata      "config": the TrainConfig (without data / initWeights, which the test supplies),
                "curves": {optimizer: [{step, train_loss, val_loss?, lr}]}, "torch": version.

Run (needs torch and numpy, e.g. .bench/torch-venv/bin/python; and the prepared corpus, which
`npx newton-muon-train` or `npx newton-muon-data` creates in ~/.cache/newton-muon):
    python3 scripts/make_training_fixture.py [--train SHARD] [--val SHARD]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))
from data import HEADER_INTS, MAGIC, VERSION, read_shard  # noqa: E402
from gpt2 import init_params  # noqa: E402
from safetensors_io import write_safetensors  # noqa: E402

OUT = os.path.normpath(os.path.join(HERE, "..", "test", "fixtures", "training-curves.safetensors"))
CORPUS = os.path.expanduser("~/.cache/newton-muon/moby-dick-byte-v1")
SEED = 7
MODEL = {"vocabSize": 257, "nLayer": 2, "nHead": 2, "nEmbd": 32, "maxSeqLen": 32}
LRS = {"newton-muon": 0.03, "muon": 0.03, "adamw": 0.01}
# The job: 16 steps of 2 micro-batches of 4 x 32 tokens; Newton-Muon refreshes every 4 steps
# (steps 4, 8, 12, 16), warmup 2 and warmdown 6 so every part of the schedule is exercised.
CONFIG = {
    "preset": "tiny", "model": MODEL, "optimizer": None, "steps": 16, "batchTokens": 256, "microBatch": 4,
    "seqLen": 32, "lr": None, "matrixLrScale": 0.1, "warmupSteps": 2, "warmdownSteps": 6, "adamBetas": [0.9, 0.95],
    "adamEps": 1e-8, "momentum": 0.95, "refreshEvery": 4, "valEvery": 4, "valTokens": 512, "saveEvery": 0, "seed": 0,
    "device": "cpu", "checkFinite": True, "targetLoss": None,
}
TRAIN_TOKENS = 16 * 256 + 1
VAL_TOKENS = 512 + 1


def write_shard(path, tokens):
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = [MAGIC, VERSION, len(tokens)]
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(tokens, dtype="<u2").tobytes())


def main():
    ap = argparse.ArgumentParser(description="makes test/fixtures/training-curves.safetensors")
    ap.add_argument("--train", default=os.path.join(CORPUS, "moby_train_000001.bin"))
    ap.add_argument("--val", default=os.path.join(CORPUS, "moby_val_000000.bin"))
    args = ap.parse_args()
    for path in (args.train, args.val):
        if not os.path.isfile(path):
            raise SystemExit(f"{path} is missing: run `npx newton-muon-train` once (it prepares the corpus) or pass --train/--val")
    train_tokens = read_shard(args.train)[:TRAIN_TOKENS]
    val_tokens = read_shard(args.val)[:VAL_TOKENS]
    params = init_params(MODEL, torch.Generator().manual_seed(SEED))
    curves = {}
    with tempfile.TemporaryDirectory() as tmp:
        write_shard(os.path.join(tmp, "train.bin"), train_tokens)
        write_shard(os.path.join(tmp, "val.bin"), val_tokens)
        write_safetensors(os.path.join(tmp, "init.safetensors"), params)
        for optimizer, lr in LRS.items():
            config = dict(CONFIG, optimizer=optimizer, lr=lr)
            with open(os.path.join(tmp, "config.json"), "w") as f:
                json.dump(config, f)
            out = os.path.join(tmp, f"{optimizer}.jsonl")
            subprocess.run([sys.executable, os.path.join(HERE, "reference", "train.py"), "--config", os.path.join(tmp, "config.json"),
                            "--init", os.path.join(tmp, "init.safetensors"), "--train", os.path.join(tmp, "train.bin"),
                            "--val", os.path.join(tmp, "val.bin"), "--out", out, "--dtype", "float64", "--quiet"], check=True)
            with open(out) as f:
                curves[optimizer] = [json.loads(line) for line in f]
            print(f"{optimizer}: train loss {curves[optimizer][1]['train_loss']:.4f} -> {curves[optimizer][-1]['train_loss']:.4f}")
    tensors = {f"init/{n}": p for n, p in params.items()}
    tensors["train_tokens"] = torch.from_numpy(train_tokens.astype(np.float32))
    tensors["val_tokens"] = torch.from_numpy(val_tokens.astype(np.float32))
    config = {k: v for k, v in CONFIG.items() if k not in ("optimizer", "lr")}
    meta = {"config": json.dumps(config), "lrs": json.dumps(LRS), "curves": json.dumps(curves), "torch": torch.__version__}
    write_safetensors(OUT, tensors, meta)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
