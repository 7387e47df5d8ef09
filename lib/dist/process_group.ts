// ProcessGroup: one process per device, collectives on the package's tensors through NCCL (CUDA)
// or Gloo (CPU). Like every op, a collective is checked, enqueued in the device's stream order and
// returns at once; await synchronize() (or read a tensor) to wait, never blocking the event loop.
//
// Failures never hang: each collective runs against the group's timeout inside the engine (Gloo's
// own timeouts; a watchdog that aborts the NCCL communicator). A failed collective makes the group
// failed for good: synchronize() / check() then throw a DistError that names the failed op, this
// rank and, from the rendezvous store's view, the rank that exited, stopped responding or fell
// behind; the other ranks learn of it through the store and fail too.
import * as os from 'os';

import { dtypeCode, isFloatDtype } from '../dtype';
import { resolveDevice, selectCudaDevice } from '../device';
import type { DeviceName, DeviceSpec } from '../device';
import { CommHandle, native } from '../native';
import { checkTensor } from '../ops';
import { formatShape } from '../shape';
import { Tensor } from '../tensor';
import { backendFor, DistBackend, processGroupBackends } from './backends';
import { launchEnvironment, LaunchInfo } from './env';
import { DistError } from './errors';
import { Rendezvous } from './rendezvous';
import type { GroupFailure } from './store';

export type ReduceOp = 'sum' | 'avg';
const REDUCE_CODES: Record<ReduceOp, number> = { sum: 0, avg: 1 };

/** Default collective timeout: generous, as NCCL's and PyTorch's (a 124M checkpoint write must fit). */
export const DEFAULT_TIMEOUT_MS = 600_000;

export interface ProcessGroupOptions {
  /** The device whose tensors the group moves: 'cpu' (Gloo), 'cuda' (NCCL), 'auto' (default). */
  device?: DeviceSpec;
  /** Set-up and every collective fail after this long without progress. Default 600 000 ms. */
  timeoutMs?: number;
  /** Where this process sits; default launchEnvironment(process.env), or a group of one. */
  launch?: LaunchInfo;
  /** What every rank must agree on besides the package version (e.g. the training configuration). */
  fingerprint?: Record<string, unknown>;
  /**
   * When another rank fails, exit this process (status 1, one line on stderr) if it has not
   * stopped by itself within min(timeout, 5 s): what a trainer wants, so that a rank stuck
   * outside a collective cannot outlive its group. Default false.
   */
  exitOnPeerFailure?: boolean;
}

const LOOPBACK = /^(127\.|::1$|localhost$)/;
const NCCL_ID_KEY = '__nm/nccl-unique-id';
const GLOO_PREFIX = '__nm/gloo/';

function packageVersion(): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('../../package.json') as { version: string }).version;
}

/** A group of one: rank 0 of world 1 with its store on a free loopback port. */
function singleProcess(): LaunchInfo {
  return { source: 'single', rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, masterAddr: '127.0.0.1', storePort: 0 };
}

/** Joins the data-parallel group this process was launched into (or a group of one). */
export async function initProcessGroup(options: ProcessGroupOptions = {}): Promise<ProcessGroup> {
  const launch = options.launch ?? launchEnvironment() ?? singleProcess();
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1) throw new DistError(`timeout must be a whole number of milliseconds >= 1 (got ${String(timeoutMs)})`);
  const spec = options.device ?? 'auto';
  // One GPU per rank: the local rank's, chosen before anything loads CUDA.
  if (spec === 'cuda' || spec === 'auto') selectCudaDevice(launch.localRank);
  const device = resolveDevice(spec, 'initProcessGroup: device');
  const backend = backendFor(device);
  const info = processGroupBackends().find((b) => b.name === backend)!;
  if (!info.available) throw new DistError(`process group backend '${backend}' (for ${device} tensors) is unavailable: ${info.reason}`);
  const fingerprint = { version: packageVersion(), abi: native.abiVersion, backend, ...options.fingerprint };
  const rv = await Rendezvous.join({
    rank: launch.rank, worldSize: launch.worldSize, masterAddr: launch.masterAddr, storePort: launch.storePort, timeoutMs, fingerprint,
  });
  let comm: CommHandle;
  try {
    let uniqueId: ArrayBuffer | undefined;
    if (backend === 'nccl') {
      if (launch.rank === 0) {
        uniqueId = native.commUniqueId('nccl');
        await rv.control.set(NCCL_ID_KEY, Buffer.from(uniqueId));
      } else {
        const id = await rv.control.get(NCCL_ID_KEY, timeoutMs);
        if (id === null) throw new DistError(`rank 0 did not publish NCCL's unique id at ${rv.where} within ${timeoutMs / 1000} s`);
        uniqueId = id.buffer.slice(id.byteOffset, id.byteOffset + id.byteLength) as ArrayBuffer;
      }
    }
    const local = rv.localAddress.replace(/^::ffff:/, '');
    comm = await native.commCreate(backend, device, {
      rank: launch.rank, worldSize: launch.worldSize, timeoutMs, uniqueId,
      storeHost: launch.masterAddr, storePort: rv.server?.port ?? launch.storePort, storePrefix: GLOO_PREFIX,
      hostname: LOOPBACK.test(launch.masterAddr) ? '127.0.0.1' : local,
      iface: process.env.GLOO_SOCKET_IFNAME ?? '',
    });
  } catch (error) {
    const peers = await rv.describePeers();
    const message = `${(error as Error).message}${peers ? `; ${peers}` : ''}`;
    await rv.reportFailure(message);
    rv.close();
    throw new DistError(message);
  }
  return new ProcessGroup(launch, device, backend, timeoutMs, comm, rv, options.exitOnPeerFailure ?? false);
}

/** Another rank's failure as this rank reports it (its own messages already name their rank). */
function peerFailureMessage(f: GroupFailure, me: number): string {
  return f.rank === me || /^(rank|ranks) \d/.test(f.message) ? f.message : `rank ${f.rank} failed: ${f.message}`;
}

export class ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly localRank: number;
  readonly localWorldSize: number;
  private issuedOps = 0;
  private failure: DistError | null = null;
  private peerFailure: GroupFailure | null = null;
  private destroyed = false;
  private objects = 0;
  private barriers = 0;

  /** @internal use initProcessGroup() */
  constructor(readonly launch: LaunchInfo, readonly device: DeviceName, readonly backend: DistBackend, readonly timeoutMs: number,
    private readonly comm: CommHandle, private readonly rendezvous: Rendezvous, exitOnPeerFailure: boolean) {
    this.rank = launch.rank;
    this.worldSize = launch.worldSize;
    this.localRank = launch.localRank;
    this.localWorldSize = launch.localWorldSize;
    rendezvous.reportProgress(() => this.issuedOps);
    rendezvous.onFailure((f) => {
      if (this.destroyed) return;
      this.peerFailure = f;
      const reason = peerFailureMessage(f, this.rank);
      native.commAbort(this.comm, reason);
      if (exitOnPeerFailure) {
        setTimeout(() => {
          process.stderr.write(`newton-muon: rank ${this.rank}: stopping because the process group failed: ${reason.split('\n')[0]}\n`);
          process.exit(1);
        }, Math.min(this.timeoutMs, 5000)).unref();
      }
    });
  }

  /** Collectives issued so far on this rank. */
  get issued(): number {
    return this.issuedOps;
  }

  /** True once a collective failed here or another rank reported a failure. */
  get failed(): boolean {
    return this.failure !== null || this.peerFailure !== null || (!this.destroyed && native.commStatus(this.comm) !== null);
  }

  private begin(op: string): CommHandle {
    if (this.destroyed) throw new DistError(`${op}: the process group was destroyed`);
    if (this.failure !== null) throw this.failure;
    this.issuedOps++;
    return this.comm;
  }

  private checkOperand(value: unknown, op: string, what: string): Tensor {
    const t = checkTensor(value, `${op}: ${what}`);
    if (!isFloatDtype(t.dtype)) throw new TypeError(`${op}: ${what} must be f32 or bf16, got ${t.toString()}`);
    if (t.device !== this.device) throw new Error(`${op}: ${what} is on ${t.device} but this process group (${this.backend}) moves ${this.device} tensors`);
    return t;
  }

  /** out and input agree in dtype, and `sizesFit` (the op's size rule, described by `rule`). */
  private checkPair(op: string, out: Tensor, input: Tensor, sizesFit: boolean, rule: string): void {
    if (out.dtype !== input.dtype) throw new TypeError(`${op}: out is ${out.dtype} but input is ${input.dtype}; they must match`);
    if (!sizesFit) {
      throw new RangeError(`${op}: out ${formatShape(out.shape)} and input ${formatShape(input.shape)} do not fit: with ${this.worldSize} ranks ${rule}`);
    }
  }

  private reduceCode(op: string, value: unknown): number {
    if (value !== 'sum' && value !== 'avg') throw new TypeError(`${op}: op must be 'sum' or 'avg', got ${JSON.stringify(value)}`);
    return REDUCE_CODES[value];
  }

  /** Reduces `tensor` over all ranks (in place, or into opts.out); returns the result tensor. */
  allReduce(tensor: Tensor, opts: { op?: ReduceOp; out?: Tensor } = {}): Tensor {
    const op = 'allReduce';
    const input = this.checkOperand(tensor, op, 'tensor');
    const out = opts.out === undefined ? input : this.checkOperand(opts.out, op, 'out');
    this.checkPair(op, out, input, out.numel === input.numel, 'out needs as many elements as input');
    const code = this.reduceCode(op, opts.op ?? 'sum');
    native.commAllReduce(this.begin(op), out.handle(op), out.byteOffset, input.handle(op), input.byteOffset, input.numel, dtypeCode(input.dtype), code);
    return out;
  }

  /** out = the reduction over ranks of this rank's slice (rank * out.numel ...) of input. */
  reduceScatter(out: Tensor, input: Tensor, opts: { op?: ReduceOp } = {}): Tensor {
    const op = 'reduceScatter';
    this.checkOperand(out, op, 'out');
    this.checkOperand(input, op, 'input');
    this.checkPair(op, out, input, input.numel === out.numel * this.worldSize, 'input needs worldSize x out.numel elements');
    const code = this.reduceCode(op, opts.op ?? 'sum');
    native.commReduceScatter(this.begin(op), out.handle(op), out.byteOffset, input.handle(op), input.byteOffset, out.numel, dtypeCode(out.dtype), code);
    return out;
  }

  /** out = every rank's input, concatenated in rank order (input may be out's own slice). */
  allGather(out: Tensor, input: Tensor): Tensor {
    const op = 'allGather';
    this.checkOperand(out, op, 'out');
    this.checkOperand(input, op, 'input');
    this.checkPair(op, out, input, out.numel === input.numel * this.worldSize, 'out needs worldSize x input.numel elements');
    native.commAllGather(this.begin(op), out.handle(op), out.byteOffset, input.handle(op), input.byteOffset, input.numel, dtypeCode(out.dtype));
    return out;
  }

  /** tensor = root's tensor on every rank. */
  broadcast(tensor: Tensor, opts: { root?: number } = {}): Tensor {
    const op = 'broadcast';
    this.checkOperand(tensor, op, 'tensor');
    const root = opts.root ?? 0;
    if (!Number.isSafeInteger(root) || root < 0 || root >= this.worldSize) throw new RangeError(`${op}: root must be a rank in [0, ${this.worldSize}), got ${String(root)}`);
    native.commBroadcast(this.begin(op), tensor.handle(op), tensor.byteOffset, tensor.numel, dtypeCode(tensor.dtype), root);
    return tensor;
  }

  /** Enqueues a barrier: the stream passes it once every rank has reached it. */
  barrier(): void {
    native.commBarrier(this.begin('barrier'));
  }

  /** Waits (off the event loop) for everything enqueued so far on the device, then check(). */
  async synchronize(): Promise<void> {
    if (this.failure !== null) throw this.failure;
    await native.synchronize(this.device);
    await this.check();
  }

  /** Throws the group's failure (a collective that failed here, or another rank's), if any. */
  async check(): Promise<void> {
    if (this.failure !== null) throw this.failure;
    if (this.destroyed) return;
    const local = native.commStatus(this.comm);
    if (local === null && this.peerFailure === null) return;
    let message: string;
    if (this.peerFailure !== null && (local === null || local === peerFailureMessage(this.peerFailure, this.rank))) {
      message = peerFailureMessage(this.peerFailure, this.rank);
    } else {
      const peers = await this.rendezvous.describePeers();
      message = `${local}${peers ? `; ${peers}` : ''}`;
      await this.rendezvous.reportFailure(message);
    }
    this.failure = new DistError(message);
    throw this.failure;
  }

  /**
   * Small JSON from root to every rank through the rendezvous store (control data such as a
   * resumed run's state; tensors go through broadcast()).
   */
  async broadcastObject<T>(value: T | undefined, root = 0): Promise<T> {
    if (this.failure !== null) throw this.failure;
    const key = `__nm/object/${this.objects++}`;
    if (this.rank === root) {
      await this.rendezvous.control.set(key, JSON.stringify(value ?? null));
      return value as T;
    }
    const got = await this.rendezvous.control.get(key, this.timeoutMs);
    if (got === null) throw new DistError(`rank ${root} did not send ${key} within ${this.timeoutMs / 1000} s`);
    return JSON.parse(got.toString()) as T;
  }

  /**
   * Waits until every rank has reached `name` (through the rendezvous store: for host-side
   * ordering such as one rank per machine preparing a cache first; tensors use barrier()).
   */
  async storeBarrier(name: string): Promise<void> {
    if (this.failure !== null) throw this.failure;
    const key = `__nm/barrier/${name}/${this.barriers++}`;
    if (await this.rendezvous.control.add(key, 1) === this.worldSize) await this.rendezvous.control.set(`${key}/done`, '1');
    if (await this.rendezvous.control.get(`${key}/done`, this.timeoutMs) === null) {
      throw new DistError(`not every rank reached '${name}' within ${this.timeoutMs / 1000} s`);
    }
  }

  /** Stops the group for good (in-flight collectives end with an error; later ones are skipped). */
  abort(reason: string): void {
    if (this.destroyed) return;
    native.commAbort(this.comm, reason);
    void this.rendezvous.reportFailure(`rank ${this.rank}: ${reason}`);
  }

  /**
   * Leaves the group. Healthy: a final barrier, the communicator freed once the stream passed it,
   * then the store (rank 0 serves it until the others left). Failed: the connections are dropped.
   */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    if (this.failed) {
      this.destroyed = true;
      this.rendezvous.close();
      return;
    }
    try {
      this.barrier();
      await this.synchronize();
    } catch (error) {
      this.destroyed = true;
      this.rendezvous.close();
      throw error;
    }
    this.destroyed = true;
    await native.commDestroy(this.comm);
    await this.rendezvous.leave();
  }

  toString(): string {
    return `ProcessGroup(${this.backend}, rank ${this.rank} of ${this.worldSize}, local ${this.localRank} of ${this.localWorldSize}, ${os.hostname()})`;
  }
}
