"""Times numpy's matmul (OpenBLAS) on the shapes bench/gemm.js sends, as a same-machine yardstick.

stdin: JSON list of {"m","n","k","transA","transB"}; stdout: JSON {"blas": ..., "results": [GFLOP/s, ...]}.
Best of several repetitions, fp32, after a warm-up, like our side of the comparison.
"""
import json
import sys
import time

import numpy as np


def blas_description():
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                return f"{pool.get('internal_api')} {pool.get('version')} ({pool.get('architecture')}, {pool.get('num_threads')} threads)"
    except Exception:  # threadpoolctl is optional
        pass
    return "numpy " + np.__version__


def time_case(case, repeats):
    m, n, k = case["m"], case["n"], case["k"]
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if case["transA"] else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if case["transB"] else (k, n), dtype=np.float32)
    op_a = a.T if case["transA"] else a
    op_b = b.T if case["transB"] else b
    out = np.empty((m, n), dtype=np.float32)
    np.matmul(op_a, op_b, out=out)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(op_a, op_b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2.0 * m * n * k / best / 1e9


def main():
    cases = json.load(sys.stdin)
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    print(json.dumps({"blas": blas_description(), "results": [time_case(c, repeats) for c in cases]}))


if __name__ == "__main__":
    main()
