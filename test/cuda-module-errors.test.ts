// The CUDA module's handling of failures, through the host-emulated module (npm run
// test:cuda-emu; skipped on other runs: it needs the emulation's controls). Each case runs in a
// fresh process whose emulated device or library fails in one way (NM_CUDA_EMU_* variables,
// csrc/cuda/emulation/runtime/runtime.h): a GPU of the wrong generation, no / an old driver, no
// device, a library call returning an error status, a kernel that faults, an allocation that
// fails, no memory pools, a small copy pitch. The module must name the failing call and what it
// returned, keep working after a returned status, report a fault at the next synchronization and
// from then on (sticky), and release what it made when create() fails half-way.
import { DeviceInfo } from '../lib/device';
import { runLibChild } from './helpers/child';
import { EMULATED } from './helpers/device';

const MODULE = process.env.NM_CUDA_MODULE ?? '';
const whenEmulated = EMULATED ? test : test.skip;

interface Outcome {
  cuda: DeviceInfo;
  error?: string;
  value?: unknown;
}

/** Loads the emulated module with `env` in a child, runs `body` (async JS with nm = the package). */
function run(env: Record<string, string>, body = 'return null;'): Outcome {
  const script = `
const nm = require(lib + '/index.ts');
(async () => {
  const cuda = nm.devices().find((d) => d.name === 'cuda');
  let error, value;
  try { value = await (async () => { ${body} })(); } catch (e) { error = e.message; }
  process.stdout.write(JSON.stringify({ cuda, error, value }));
})().catch((e) => { console.error(e); process.exit(1); });`;
  return JSON.parse(runLibChild(script, { NM_CUDA_MODULE: MODULE, ...env }, ['NM_CUDA_EMU_FAIL'])) as Outcome;
}

function expectUnavailable(o: Outcome, ...fragments: string[]): void {
  expect(o.cuda.available).toBe(false);
  for (const f of fragments) expect(o.cuda.reason).toContain(f);
}

describe('create(): what devices() says when the device cannot be used', () => {
  whenEmulated('a GPU the module has no code for (sm_75)', () => {
    expectUnavailable(run({ NM_CUDA_EMU_ARCH: '75' }), 'this module was built for sm_90 but the GPU is sm_75',
      'rebuild it with NM_CUDA_ARCHS including 75', 'cudaErrorNoKernelImageForDevice');
  });
  whenEmulated('no driver', () => {
    expectUnavailable(run({ NM_CUDA_EMU_DRIVER: '0' }), 'no NVIDIA driver was found', 'CUDA 13.0 runtime', 'R580');
  });
  whenEmulated('a driver for CUDA 12.8', () => {
    expectUnavailable(run({ NM_CUDA_EMU_DRIVER: '12080' }), 'the NVIDIA driver supports CUDA 12.8 but this module uses the CUDA 13.0 runtime',
      'update the driver to R580');
  });
  whenEmulated('no device visible', () => {
    expectUnavailable(run({ NM_CUDA_EMU_DEVICES: '0' }), 'no CUDA-capable device is visible');
  });
  whenEmulated('a library failing after the stream, pool and handles exist: the reason names it, the rest is released', () => {
    // CUSOLVER_STATUS_INTERNAL_ERROR (7) from the last step of create(); destroy() then tears down
    // the cuSOLVER, cuBLASLt and cuBLAS handles, the workspaces, the pool and the stream.
    expectUnavailable(run({ NM_CUDA_EMU_FAIL: 'cusolverDnSetStream=7' }), 'cusolverDnSetStream failed: CUSOLVER_STATUS_INTERNAL_ERROR');
  });
  whenEmulated('describe() failing leaves its reason in the details', () => {
    const o = run({ NM_CUDA_EMU_FAIL: 'ncclGetVersion=3' });  // ncclInternalError
    expect(o.cuda.available).toBe(true);
    expect(o.cuda.details?.describeError).toContain('ncclGetVersion failed: internal error');
    expect(o.cuda.details?.emulated).toBe(true);
  });
});

describe('a library call returning an error: the op fails naming it, the next op works', () => {
  const matmulTwice = `
    const a = nm.tensor([1, 2, 3, 4], [2, 2], { device: 'cuda' });
    let first;
    try { nm.matmul(a, a); first = 'no error'; } catch (e) { first = e.message; }
    const second = Array.from(await nm.matmul(a, a).read());
    return { first, second };`;
  whenEmulated('cuBLAS', () => {
    const o = run({ NM_CUDA_EMU_FAIL: 'cublasGemmStridedBatchedEx=13' }, matmulTwice);
    expect(o.error).toBeUndefined();
    const v = o.value as { first: string; second: number[] };
    expect(v.first).toContain('gemm: cublasGemmStridedBatchedEx failed: CUBLAS_STATUS_EXECUTION_FAILED');
    expect(v.second).toEqual([7, 10, 15, 22]);
  });
  whenEmulated('cuSOLVER', () => {
    const o = run({ NM_CUDA_EMU_FAIL: 'cusolverDnDpotrf=6' }, `
      const k = nm.tensor([4, 0, 0, 4], [2, 2], { device: 'cuda' });
      nm.choleskyInverse(k);`);
    expect(o.error).toContain('cholesky_inverse: cusolverDnDpotrf failed: CUSOLVER_STATUS_EXECUTION_FAILED');
  });
  whenEmulated('cub', () => {
    const o = run({ NM_CUDA_EMU_FAIL: 'cub::DeviceRadixSort::SortPairs=2' }, `
      const dwte = nm.zeros([5, 4], { device: 'cuda' });
      const ids = nm.tensor(new Int32Array([1, 3, 1]), [3], { device: 'cuda' });
      nm.embeddingBackward(dwte, nm.full([3, 4], 1, { device: 'cuda' }), ids);`);
    expect(o.error).toContain('embedding_backward: cub::DeviceRadixSort::SortPairs failed: out of memory');
  });
  whenEmulated('pinned memory for a read', () => {
    // The first cudaMallocHost is the upload's staging buffer, the second the read's.
    const o = run({ NM_CUDA_EMU_FAIL: 'cudaMallocHost=2@2' }, `
      const t = nm.tensor([1, 2, 3], [3], { device: 'cuda' });
      let first;
      try { await t.read(); first = 'no error'; } catch (e) { first = e.message; }
      return { first, second: Array.from(await t.read()) };`);
    const v = o.value as { first: string; second: number[] };
    expect(v.first).toContain('host_alloc: cudaMallocHost of 12 bytes failed: out of memory');
    expect(v.second).toEqual([1, 2, 3]);
  });
});

whenEmulated('a faulting kernel: the next synchronization reports it, and every op after it (sticky)', () => {
  const o = run({ NM_CUDA_EMU_FAIL: 'fill_kernel<unsigned int>=700' }, `
    const t = nm.full([8], 3, { device: 'cuda' });
    let read;
    try { await t.read(); read = 'no error'; } catch (e) { read = e.message; }
    let after;
    try { nm.zeros([4], { device: 'cuda' }); after = 'no error'; } catch (e) { after = e.message; }
    return { read, after };`);
  const v = o.value as { read: string; after: string };
  expect(v.read).toContain('fence_wait: cudaEventSynchronize failed: an illegal memory access was encountered (cudaErrorIllegalAddress)');
  expect(v.after).toContain('cudaErrorIllegalAddress');
});

// Paths a GPU without memory pools (or with a small copy pitch) takes; the results must not change.
const OPS = `
  const x = nm.randn([33, 20], { seed: 5, device: 'cuda' });
  const xc = nm.randn([33, 20], { seed: 5 });
  const run = async (t) => Array.from(await t.read());
  const dst = nm.zeros([33, 40], { device: 'cuda' }), dstc = nm.zeros([33, 40]);
  nm.copyRows(dst, x, { dstCol: 7 }); nm.copyRows(dstc, xc, { dstCol: 7 });
  const pairs = [
    [nm.matmul(x, x, { transB: true }), nm.matmul(xc, xc, { transB: true })],
    [nm.choleskyInverse(nm.accumulateInputGram(nm.zeros([20, 20], { device: 'cuda' }), x)).inverse,
     nm.choleskyInverse(nm.accumulateInputGram(nm.zeros([20, 20]), xc)).inverse],
    [nm.add(x, x), nm.add(xc, xc)],
    [dst, dstc],
  ];
  let worst = 0;
  for (const [g, c] of pairs) {
    const a = await run(g), b = await run(c);
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / (1 + Math.abs(b[i])));
  }
  return worst;`;

whenEmulated('without memory pools (cudaMalloc / cudaFree): the same results', () => {
  const o = run({ NM_CUDA_EMU_MEMORY_POOLS: '0' }, OPS);
  expect(o.error).toBeUndefined();
  expect(o.value as number).toBeLessThan(1e-4);
});

whenEmulated('row copies whose pitch exceeds the device maximum (one copy per row): the same results', () => {
  const o = run({ NM_CUDA_EMU_MAX_PITCH: '64' }, OPS);
  expect(o.error).toBeUndefined();
  expect(o.value as number).toBeLessThan(1e-4);
});

describe('NCCL (a communicator of one rank): a failure names the rank and aborts the communicator', () => {
  const groupOfOne = `nm.initProcessGroup({ device: 'cuda', timeoutMs: 5000, launch: { source: 'torchrun', rank: 0,
    worldSize: 1, localRank: 0, localWorldSize: 1, masterAddr: '127.0.0.1', storePort: 0 } })`;
  whenEmulated('an error reported while the non-blocking communicator initializes', () => {
    // The first ncclCommGetAsyncError poll returns ncclInternalError (3): create() aborts the
    // half-made communicator and reports NCCL's own words (ncclGetLastError) with the rank.
    const o = run({ NM_CUDA_EMU_FAIL: 'ncclCommGetAsyncError=3' }, `await ${groupOfOne}; return 'joined';`);
    expect(o.value).toBeUndefined();
    expect(o.error).toContain('rank 0 of 1');
    expect(o.error).toContain('ncclCommInitRankConfig failed: internal error');
  });
  whenEmulated('a collective that never completes (a peer that never joins): aborted after the timeout, the group says so', () => {
    // NM_CUDA_EMU_NCCL_STALL=1: the first collective waits until its communicator is aborted. The
    // module's watchdog must abort it once it has run for the group's timeout (1 s here), and the
    // wait for it must then end with the group's error instead of hanging.
    const o = run({ NM_CUDA_EMU_NCCL_STALL: '1' }, `
      const group = await ${groupOfOne.replace('timeoutMs: 5000', 'timeoutMs: 1000')};
      const x = nm.full([8], 3, { device: 'cuda' });
      const started = Date.now();
      group.allReduce(x, { out: x });
      let sync;
      try { await group.synchronize(); sync = 'no error'; } catch (e) { sync = e.message; }
      const waited = Date.now() - started;
      await group.destroy();
      return { sync, waited };`);
    expect(o.error).toBeUndefined();
    const v = o.value as { sync: string; waited: number };
    expect(v.sync).toContain('nccl allReduce #1 (8 f32, sum) on rank 0 of 1 did not complete within 1.0 s; the communicator was aborted');
    expect(v.waited).toBeGreaterThanOrEqual(1000);
    expect(v.waited).toBeLessThan(20000);
  });
  whenEmulated('an asynchronous error after a collective: the watchdog aborts the communicator, the group reports it', () => {
    // A kernel that faults kills the CUDA context; NCCL then reports ncclUnhandledCudaError from
    // ncclCommGetAsyncError, which the watchdog turns into an abort and the group's sticky error.
    const o = run({ NM_CUDA_EMU_FAIL: 'fill_kernel<unsigned int>=700' }, `
      const group = await ${groupOfOne};
      const x = nm.full([8], 3, { device: 'cuda' });
      group.allReduce(x, { out: x });
      let sync;
      try { await group.synchronize(); sync = 'no error'; } catch (e) { sync = e.message; }
      const deadline = Date.now() + 5000;
      while (!group.failed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      let check;
      try { await group.check(); check = 'no error'; } catch (e) { check = e.message; }
      await group.destroy();
      return { sync, check };`);
    expect(o.error).toBeUndefined();
    const v = o.value as { sync: string; check: string };
    expect(v.sync).toContain('an illegal memory access was encountered');
    expect(v.check).toContain('nccl reported an asynchronous error on rank 0 of 1');
    expect(v.check).toContain('unhandled cuda error');
    expect(v.check).toContain('the communicator was aborted');
  });
});
