// Muon and Newton-Muon share this class: per matrix, (precondition) -> Nesterov momentum ->
// Newton-Schulz -> scaled update. Newton-Muon adds the input statistics K, refreshed every
// `refreshEvery` steps into Kinv = (K + ridge I)^-1 that right-multiplies the raw gradient.
//
// Layout (why it is this way): every matrix (or row block) with the same shape owns one slot
// in a contiguous [count, rows, cols] buffer, so one batched Newton-Schulz call covers all
// same-shape matrices; every statistic with the same block size d owns blocks of one contiguous
// [count, d, d] K / Kinv buffer, so one batched Cholesky call refreshes all of them.
import { dtypeCode } from '../dtype';
import { native } from '../native';
import { axpy, checkTensor } from '../ops';
import { formatShape, sameShape } from '../shape';
import { untracked } from '../scope';
import { Tensor, tensor, zeros } from '../tensor';
import { assertGradientsFinite, assertGradientsFiniteSync } from './finite';
import { bool, nonNegative, positive, positiveInt, unitInterval } from './hyperparams';
import { accumulateInputGram, NS5_COEFFICIENTS, rightPrecondition } from './kernels';
import { checkStateNames, loadAll, loadAllSync, OptimizerState } from './state';

export interface MatrixParam {
  param: Tensor;
  grad: Tensor;
  /** Used in state dicts and messages. Default `param{i}`. */
  name?: string;
  /** Orthogonalise each of this many row blocks separately (fused q,k,v: 3). Default 1. */
  rowBlocks?: number;
  /** Newton-Muon: the input statistic is block-diagonal with this many d x d blocks (mlp.c_proj: 4). */
  inputBlocks?: number;
  /** Newton-Muon: params with the same key read the same input and share one statistic. */
  inputKey?: string;
}

export interface MuonOptions {
  lr: number;
  /** Default 0.95. */
  momentum?: number;
  /** Default true. */
  nesterov?: boolean;
  /** Newton-Schulz iterations. Default 5. */
  nsSteps?: number;
  /** Decoupled weight decay: W *= 1 - lr * weightDecay. Default 0. */
  weightDecay?: number;
  /** Throw (naming the parameter, before any update) if a gradient is not finite. Default false. */
  checkFinite?: boolean;
  /**
   * Data parallel, sharded step: the matrices this rank updates (by name). The others keep their
   * weights and state for the caller to gather from their owners (lib/dist's ShardedMatrixStep).
   * Matrices that share an input statistic need one owner. Default: every matrix.
   */
  owns?: (name: string) => boolean;
}

export interface NewtonMuonOptions extends MuonOptions {
  /** Refresh the preconditioner on steps where (step + 1) % refreshEvery === 0. Default 32. */
  refreshEvery?: number;
  /** K <- statsDecay * K + (1 - statsDecay) * S. Default 0.95. */
  statsDecay?: number;
  /** ridge = ridge * trace(K) / d + ridgeEps. Defaults 0.2 and 1e-8. */
  ridge?: number;
  ridgeEps?: number;
  /** K starts as initDiag * I. Default 1e-3. */
  initDiag?: number;
  /** Where warnings go (a statistic never observed, a failed factorisation). Default console.warn. */
  onWarning?: (message: string) => void;
  /**
   * Data parallel: on refresh steps, called with this rank's statistic sums (one [count, d, d]
   * tensor per block size) and the observation counts (an f32 tensor, one per statistic), which
   * it must replace in place, stream-ordered, by their sums over all ranks; the refresh then
   * averages over every rank's micro-batches, as a single process over all of them would.
   */
  allReduceStatistics?: (tensors: Tensor[]) => void;
}

/** One matrix as the data-parallel sharding sees it (MatrixOptimizer.shardingLayout()). */
export interface ShardedMatrix {
  name: string;
  param: Tensor;
  momentum: Tensor;
  owned: boolean;
  /** The key of its input statistic (Newton-Muon), else null. */
  statistic: string | null;
}

/** One input statistic as the sharding sees it. */
export interface ShardedStatistic {
  key: string;
  kinv: Tensor;
  owned: boolean;
}

/** Every Muon / NewtonMuon option with its default, checked (messages name the option). */
export function checkMatrixOptimizerOptions(
  kind: 'muon' | 'newton-muon',
  options: NewtonMuonOptions,
): Required<Omit<NewtonMuonOptions, 'allReduceStatistics'>> & Pick<NewtonMuonOptions, 'allReduceStatistics'> {
  const op = kind === 'muon' ? 'Muon' : 'NewtonMuon';
  if (options === null || typeof options !== 'object') throw new TypeError(`${op}: options must be an object with at least { lr }`);
  if (options.onWarning !== undefined && typeof options.onWarning !== 'function') throw new TypeError(`${op}: onWarning must be a function`);
  if (options.owns !== undefined && typeof options.owns !== 'function') throw new TypeError(`${op}: owns must be a function of a param name`);
  if (options.allReduceStatistics !== undefined && typeof options.allReduceStatistics !== 'function') {
    throw new TypeError(`${op}: allReduceStatistics must be a function`);
  }
  return {
    lr: positive(options.lr, `${op}: lr`),
    momentum: unitInterval(options.momentum ?? 0.95, `${op}: momentum`),
    nesterov: bool(options.nesterov ?? true, `${op}: nesterov`),
    nsSteps: positiveInt(options.nsSteps ?? 5, `${op}: nsSteps`),
    weightDecay: nonNegative(options.weightDecay ?? 0, `${op}: weightDecay`),
    checkFinite: bool(options.checkFinite ?? false, `${op}: checkFinite`),
    refreshEvery: positiveInt(options.refreshEvery ?? 32, `${op}: refreshEvery`),
    statsDecay: unitInterval(options.statsDecay ?? 0.95, `${op}: statsDecay`),
    ridge: nonNegative(options.ridge ?? 0.2, `${op}: ridge`),
    ridgeEps: nonNegative(options.ridgeEps ?? 1e-8, `${op}: ridgeEps`),
    initDiag: positive(options.initDiag ?? 1e-3, `${op}: initDiag`),
    onWarning: options.onWarning ?? ((message: string) => console.warn(message)),
    owns: options.owns ?? (() => true),
    allReduceStatistics: options.allReduceStatistics,
  };
}

interface NsGroup {
  rows: number;
  cols: number;
  count: number;
  input?: Tensor;
  output?: Tensor;
}

interface StatGroup {
  d: number;
  count: number;
  k?: Tensor; s?: Tensor; kinv?: Tensor; info?: Tensor;
}

interface Statistic {
  key: string;
  d: number;
  blocks: number;
  group: StatGroup;
  first: number;
  k?: Tensor; s?: Tensor; kinv?: Tensor; info?: Tensor;
  observations: number;
  failures: number;
  warnedUnobserved: boolean;
  /** Factorised by this rank (a statistic of an owned matrix). */
  owned: boolean;
}

interface MatrixState {
  name: string;
  param: Tensor;
  grad: Tensor;
  rows: number;
  cols: number;
  rowBlocks: number;
  scale: number;
  /** Updated by this rank (always, unless the step is sharded). Owned matrices have an NS slot. */
  owned: boolean;
  group?: NsGroup;
  slot: number;
  stat?: Statistic;
  momentum?: Tensor;
  u?: Tensor;
  o?: Tensor;
}

export abstract class MatrixOptimizer {
  protected readonly matrices: MatrixState[] = [];
  private readonly nsGroups = new Map<string, NsGroup>();
  private readonly statGroups = new Map<number, StatGroup>();
  private readonly stats = new Map<string, Statistic>();
  private readonly statByParam = new Map<Tensor, Statistic>();
  private stepCount = 0;
  private disposed = false;
  private pendingReports: Promise<void>[] = [];
  private failed = 0;
  private lrValue: number;
  readonly momentum: number;
  readonly nesterov: boolean;
  readonly nsSteps: number;
  readonly weightDecay: number;
  readonly checkFinite: boolean;
  readonly refreshEvery: number;
  readonly statsDecay: number;
  readonly ridge: number;
  readonly ridgeEps: number;
  readonly initDiag: number;
  private readonly warn: (message: string) => void;
  private readonly owns: (name: string) => boolean;
  private readonly allReduceStatistics: ((tensors: Tensor[]) => void) | undefined;

  protected constructor(readonly kind: 'muon' | 'newton-muon', params: readonly MatrixParam[], options: NewtonMuonOptions) {
    const op = kind === 'muon' ? 'Muon' : 'NewtonMuon';
    const o = checkMatrixOptimizerOptions(kind, options);
    this.lrValue = o.lr;
    this.momentum = o.momentum;
    this.nesterov = o.nesterov;
    this.nsSteps = o.nsSteps;
    this.weightDecay = o.weightDecay;
    this.checkFinite = o.checkFinite;
    this.refreshEvery = o.refreshEvery;
    this.statsDecay = o.statsDecay;
    this.ridge = o.ridge;
    this.ridgeEps = o.ridgeEps;
    this.initDiag = o.initDiag;
    this.warn = o.onWarning;
    this.owns = o.owns;
    this.allReduceStatistics = o.allReduceStatistics;
    this.plan(op, params);
    untracked(() => this.allocate());
  }

  private get preconditioned(): boolean {
    return this.kind === 'newton-muon';
  }

  // ---- construction ------------------------------------------------------------------------

  private plan(op: string, params: readonly MatrixParam[]): void {
    if (!Array.isArray(params) || params.length === 0) throw new TypeError(`${op}: params must be a non-empty array of { param, grad }`);
    const names = new Set<string>();
    const seen = new Set<Tensor>();
    params.forEach((spec, i) => {
      const where = `${op}: params[${i}]`;
      if (spec === null || typeof spec !== 'object') throw new TypeError(`${where} must be { param, grad, ... }`);
      const name = spec.name ?? `param${i}`;
      if (typeof name !== 'string' || names.has(name)) throw new TypeError(`${where}: name ${JSON.stringify(name)} is not a unique string`);
      names.add(name);
      const param = checkTensor(spec.param, `${where} (${name}).param`);
      const grad = checkTensor(spec.grad, `${where} (${name}).grad`);
      if (param.shape.length !== 2) {
        throw new RangeError(`${where} (${name}): ${op} only handles 2-D matrices, got param ${param.toString()}; use AdamW for it`);
      }
      if (param.dtype !== 'f32' || grad.dtype !== 'f32') throw new TypeError(`${where} (${name}): param and grad must be f32, got ${param.dtype} and ${grad.dtype}`);
      if (!sameShape(param.shape, grad.shape)) throw new RangeError(`${where} (${name}): grad has shape ${formatShape(grad.shape)} but param has ${formatShape(param.shape)}`);
      if (seen.has(param)) throw new TypeError(`${where} (${name}): this param tensor is listed twice`);
      seen.add(param);
      const first = this.matrices[0];
      if (first && (param.device !== first.param.device || grad.device !== first.param.device)) {
        throw new Error(`${where} (${name}): on ${param.device}/${grad.device} but '${first.name}' is on ${first.param.device}; all params and grads must share a device`);
      }
      if (!first && grad.device !== param.device) throw new Error(`${where} (${name}): grad is on ${grad.device} but param is on ${param.device}`);
      const [rows, cols] = param.shape;
      const rowBlocks = positiveInt(spec.rowBlocks ?? 1, `${where} (${name}).rowBlocks`);
      if (rows % rowBlocks !== 0) throw new RangeError(`${where} (${name}): ${rows} rows do not split into ${rowBlocks} row blocks`);
      const blockRows = rows / rowBlocks;
      const owned = this.owns(name) === true;
      const group = owned ? this.nsGroup(blockRows, cols) : undefined;
      const state: MatrixState = {
        name, param, grad, rows, cols, rowBlocks, owned,
        // Per the spec: sqrt(max(d_out, d_in)) for a whole matrix; sqrt(d_in) per row block when
        // it is split (rowBlocks > 1; rowBlocks: 1 is the whole matrix).
        scale: rowBlocks > 1 ? Math.sqrt(cols) : Math.sqrt(Math.max(rows, cols)),
        group, slot: group?.count ?? -1,
      };
      if (group) group.count += rowBlocks;
      if (this.preconditioned) state.stat = this.statistic(spec, state, where);
      this.matrices.push(state);
    });
  }

  private nsGroup(rows: number, cols: number): NsGroup {
    const key = `${rows}x${cols}`;
    let group = this.nsGroups.get(key);
    if (!group) {
      group = { rows, cols, count: 0 };
      this.nsGroups.set(key, group);
    }
    return group;
  }

  private statistic(spec: MatrixParam, state: MatrixState, where: string): Statistic {
    const blocks = positiveInt(spec.inputBlocks ?? 1, `${where} (${state.name}).inputBlocks`);
    if (state.cols % blocks !== 0) throw new RangeError(`${where} (${state.name}): ${state.cols} input features do not split into ${blocks} blocks`);
    const key = spec.inputKey ?? state.name;
    if (typeof key !== 'string') throw new TypeError(`${where} (${state.name}).inputKey must be a string`);
    const d = state.cols / blocks;
    const existing = this.stats.get(key);
    if (existing) {
      if (existing.d !== d || existing.blocks !== blocks) {
        throw new RangeError(`${where} (${state.name}): shares input '${key}' but needs ${blocks} block(s) of ${d}, while it has ${existing.blocks} of ${existing.d}`);
      }
      if (existing.owned !== state.owned) {
        throw new RangeError(`${where} (${state.name}): shares input '${key}' with a matrix of another owner; owns() must give matrices that share a statistic one owner`);
      }
      this.statByParam.set(state.param, existing);
      return existing;
    }
    let group = this.statGroups.get(d);
    if (!group) {
      group = { d, count: 0 };
      this.statGroups.set(d, group);
    }
    const stat: Statistic = { key, d, blocks, group, first: group.count, observations: 0, failures: 0, warnedUnobserved: false, owned: state.owned };
    group.count += blocks;
    this.stats.set(key, stat);
    this.statByParam.set(state.param, stat);
    return stat;
  }

  private allocate(): void {
    const device = this.matrices[0].param.device;
    for (const g of this.nsGroups.values()) {
      g.input = zeros([g.count, g.rows, g.cols], { device });
      g.output = zeros([g.count, g.rows, g.cols], { device });
    }
    for (const m of this.matrices) {
      m.momentum = zeros([m.rows, m.cols], { device });
      if (!m.group) continue;
      m.u = rowsView(m.group.input!, m.slot, m.rowBlocks, [m.rows, m.cols]);
      m.o = rowsView(m.group.output!, m.slot, m.rowBlocks, [m.rows, m.cols]);
    }
    for (const g of this.statGroups.values()) {
      g.k = zeros([g.count, g.d, g.d], { device });
      g.s = zeros([g.count, g.d, g.d], { device });
      g.kinv = zeros([g.count, g.d, g.d], { device });
      g.info = zeros([g.count], { dtype: 'i32', device });
      setDiagonal(g.k, this.initDiag);
      setDiagonal(g.kinv, 1);
    }
    for (const s of this.stats.values()) {
      const end = s.first + s.blocks;
      s.k = s.group.k!.slice(s.first, end);
      s.s = s.group.s!.slice(s.first, end);
      s.kinv = s.group.kinv!.slice(s.first, end);
      s.info = s.group.info!.slice(s.first, end);
    }
  }

  // ---- the public surface --------------------------------------------------------------------

  get lr(): number {
    return this.lrValue;
  }

  set lr(value: number) {
    this.lrValue = positive(value, `${this.kind}: lr`);
  }

  /** Completed steps. */
  get steps(): number {
    return this.stepCount;
  }

  /** Preconditioner factorisations that failed so far (those matrices used the identity). */
  get failedRefreshes(): number {
    return this.failed;
  }

  /** True when the coming step refreshes the preconditioner: pass layer inputs to observeInput. */
  collectsStatistics(): boolean {
    return this.preconditioned && (this.stepCount + 1) % this.refreshEvery === 0;
  }

  /**
   * Hands this step's layer input X ([tokens, d_in], f32 or bf16) for `target` (its param tensor
   * or its inputKey). Accumulates X^T X / tokens; several calls in one step are averaged. Does
   * nothing (returns false) on steps that do not collect statistics, and always for Muon.
   */
  observeInput(target: Tensor | string, x: Tensor): boolean {
    const stat = this.observedStatistic('observeInput', target);
    if (!stat) return false;
    checkTensor(x, `observeInput(${stat.key}): x`);
    const width = stat.d * stat.blocks;
    if (x.shape.length !== 2 || x.shape[1] !== width) {
      throw new RangeError(`observeInput(${stat.key}): x must be [tokens, ${width}], got ${x.toString()}`);
    }
    if (x.device !== stat.k!.device) throw new Error(`observeInput(${stat.key}): x is on ${x.device} but the optimizer is on ${stat.k!.device}`);
    if (!this.collectsStatistics()) return false;
    if (x.shape[0] === 0) return false;
    this.zeroIfUnobserved(stat, 'observeInput');
    accumulateInputGram(stat.s!, x, { blocks: stat.blocks, scale: 1 / x.shape[0] });
    stat.observations++;
    return true;
  }

  /**
   * observeInput() for callers that formed the Gram matrix themselves: `gram` holds X^T X
   * summed over `tokens` rows of the layer input (f32, [d_in, d_in] for one block, or
   * [inputBlocks, d, d], the diagonal blocks, for a block-diagonal statistic). Adds gram / tokens
   * to this step's statistic, counted as one observation. Returns false where observeInput would.
   */
  observeGram(target: Tensor | string, gram: Tensor, tokens: number): boolean {
    const stat = this.observedStatistic('observeGram', target);
    if (!stat) return false;
    checkTensor(gram, `observeGram(${stat.key}): gram`);
    const expected = stat.blocks === 1 ? [stat.d, stat.d] : [stat.blocks, stat.d, stat.d];
    if (gram.dtype !== 'f32' || !sameShape(gram.shape, expected)) {
      throw new RangeError(`observeGram(${stat.key}): gram must be f32 ${formatShape(expected)}, got ${gram.toString()}`);
    }
    if (gram.device !== stat.k!.device) throw new Error(`observeGram(${stat.key}): gram is on ${gram.device} but the optimizer is on ${stat.k!.device}`);
    if (typeof tokens !== 'number' || !Number.isSafeInteger(tokens) || tokens < 0) {
      throw new RangeError(`observeGram(${stat.key}): tokens must be a non-negative integer, got ${String(tokens)}`);
    }
    if (!this.collectsStatistics()) return false;
    if (tokens === 0) return false;
    this.zeroIfUnobserved(stat, 'observeGram');
    const asStat = gram.view(stat.s!.shape);
    axpy(stat.s!, asStat, 1 / tokens);
    asStat.dispose(); // the update is enqueued; the view only held a reference
    stat.observations++;
    return true;
  }

  /** The statistic `target` (param tensor or inputKey) feeds; undefined for Muon. */
  private observedStatistic(what: string, target: Tensor | string): Statistic | undefined {
    this.checkLive(what);
    const stat = typeof target === 'string' ? this.stats.get(target) : this.statByParam.get(target);
    if (!this.preconditioned) return undefined;
    if (!stat) throw new TypeError(`${what}: ${typeof target === 'string' ? `no input key '${target}'` : 'that tensor is not a param of this optimizer'}`);
    return stat;
  }

  /**
   * Zeroes a statistic's sum that holds nothing of this step yet: before a step's first
   * observation adds to it, and before the data-parallel reduce (where an unobserved statistic
   * must add nothing).
   */
  private zeroIfUnobserved(stat: Statistic, what: string): void {
    if (stat.observations === 0) native.fill(stat.s!.handle(what), stat.s!.byteOffset, dtypeCode('f32'), stat.s!.numel, 0);
  }

  /**
   * One optimizer step for every matrix. Stream-ordered: all work is enqueued when the returned
   * promise settles at the latest (at once when checkFinite is off). Await it before reusing grads.
   */
  async step(): Promise<void> {
    this.checkStepInputs();
    if (this.checkFinite) await assertGradientsFinite(`${this.kind}.step`, this.matrices);
    const counts = this.beginStatisticsReduce();
    if (counts) {
      try {
        this.endStatisticsReduce(await counts.read());
      } finally {
        counts.dispose();
      }
    }
    this.enqueueStep();
  }

  /**
   * step() for callers that cannot await (interop adapters): the same work, enqueued before it
   * returns. With checkFinite the gradient check waits on the calling thread (readSync), which
   * blocks the event loop; without it nothing waits.
   */
  stepSync(): void {
    this.checkStepInputs();
    if (this.checkFinite) assertGradientsFiniteSync(`${this.kind}.step`, this.matrices);
    const counts = this.beginStatisticsReduce();
    if (counts) {
      try {
        this.endStatisticsReduce(counts.readSync());
      } finally {
        counts.dispose();
      }
    }
    this.enqueueStep();
  }

  private checkStepInputs(): void {
    const op = `${this.kind}.step`;
    this.checkLive('step');
    for (const m of this.matrices) {
      checkTensor(m.param, `${op}: ${m.name}.param`);
      checkTensor(m.grad, `${op}: ${m.name}.grad`);
    }
  }

  private enqueueStep(): void {
    const op = `${this.kind}.step`;
    if (this.collectsStatistics()) this.refreshPreconditioners();
    // Before the first refresh every Kinv is exactly I: skip the products.
    const precondition = this.preconditioned && this.stepCount + 1 >= this.refreshEvery;
    for (const m of this.matrices) {
      if (!m.owned) continue;
      const u = m.u!;
      let g = m.grad;
      if (precondition) {
        const s = m.stat!;
        if (s.blocks === 1) {
          const kinv = s.kinv!.view([s.d, s.d]);
          rightPrecondition(m.grad, kinv, { out: u });
          kinv.dispose(); // the product is already enqueued; the view only held a reference
        } else {
          rightPrecondition(m.grad, s.kinv!, { out: u });
        }
        g = u;
      }
      native.momentumUpdate(m.momentum!.handle(op), m.momentum!.byteOffset, u.handle(op), u.byteOffset,
        g.handle(op), g.byteOffset, u.numel, this.momentum, this.nesterov);
    }
    const [a, b, c] = NS5_COEFFICIENTS;
    for (const g of this.nsGroups.values()) {
      if (g.count === 0) continue;
      native.newtonSchulz(g.output!.handle(op), g.output!.byteOffset, g.input!.handle(op), g.input!.byteOffset,
        g.count, g.rows, g.cols, this.nsSteps, a, b, c, 1e-7);
    }
    const decay = 1 - this.lrValue * this.weightDecay;
    for (const m of this.matrices) {
      if (!m.owned) continue;
      native.applyUpdate(m.param.handle(op), m.param.byteOffset, m.o!.handle(op), m.o!.byteOffset, m.param.numel,
        decay, this.lrValue * m.scale);
    }
    this.stepCount++;
  }

  /**
   * Data parallel, on a step that collects statistics with allReduceStatistics set: enqueues the
   * reduction of this rank's statistic sums and observation counts to their sums over all ranks
   * and returns the counts tensor, whose values endStatisticsReduce() needs (the caller reads
   * them, awaiting or not, and disposes it). Undefined when there is nothing to reduce.
   */
  private beginStatisticsReduce(): Tensor | undefined {
    if (this.allReduceStatistics === undefined || !this.collectsStatistics()) return undefined;
    const stats = [...this.stats.values()];
    for (const s of stats) this.zeroIfUnobserved(s, 'reduceStatistics');
    const counts = untracked(() => tensor(Float32Array.from(stats, (s) => s.observations), [stats.length], { device: this.matrices[0].param.device }));
    try {
      this.allReduceStatistics([...[...this.statGroups.values()].map((g) => g.s!), counts]);
    } catch (e) {
      counts.dispose();
      throw e;
    }
    return counts;
  }

  /** The observation counts summed over all ranks (beginStatisticsReduce's tensor, read). */
  private endStatisticsReduce(global: ArrayLike<number>): void {
    [...this.stats.values()].forEach((s, i) => { s.observations = global[i]; });
  }

  private refreshPreconditioners(): void {
    const op = `${this.kind}.step`;
    for (const s of this.stats.values()) {
      if (s.observations === 0) {
        if (!s.warnedUnobserved) {
          s.warnedUnobserved = true;
          this.warn(`NewtonMuon: no input was observed for '${s.key}' on refresh step ${this.stepCount}; its preconditioner was kept (warned once)`);
        }
        continue;
      }
      // K <- beta K + (1 - beta) * mean of this step's observations.
      const k = s.k!;
      native.scale(k.handle(op), k.byteOffset, k.handle(op), k.byteOffset, this.statsDecay, 0, k.numel);
      native.axpy(k.handle(op), k.byteOffset, s.s!.handle(op), s.s!.byteOffset, (1 - this.statsDecay) / s.observations, 0, k.numel);
    }
    for (const group of this.statGroups.values()) {
      // Runs of consecutive observed statistics: one batched factorisation per run (usually one).
      const members = [...this.stats.values()].filter((s) => s.group === group).sort((x, y) => x.first - y.first);
      let run: Statistic[] = [];
      const flush = (): void => {
        if (run.length > 0) this.factorize(group, run);
        run = [];
      };
      for (const s of members) {
        if (s.observations === 0 || !s.owned) flush();
        else run.push(s);
      }
      flush();
    }
    for (const s of this.stats.values()) s.observations = 0;
  }

  private factorize(group: StatGroup, run: Statistic[]): void {
    const op = `${this.kind}.step`;
    const first = run[0].first;
    const blocks = run.reduce((n, s) => n + s.blocks, 0);
    const d = group.d;
    const offset = first * d * d * 4;
    native.choleskyInverse(group.kinv!.handle(op), group.kinv!.byteOffset + offset, group.k!.handle(op), group.k!.byteOffset + offset,
      group.info!.handle(op), group.info!.byteOffset + first * 4, blocks, d, this.ridge, this.ridgeEps);
    const info = group.info!.slice(first, first + blocks);
    const step = this.stepCount;
    const report = info.read().then((flags) => {
      for (const s of run) {
        const mine = Array.from(flags.subarray(s.first - first, s.first - first + s.blocks));
        const bad = mine.filter((f) => f !== 0).length;
        if (bad > 0) {
          if (s.failures === 0) {
            this.warn(`NewtonMuon: the preconditioner of '${s.key}' could not be factorised at step ${step} ` +
              `(info ${mine.join(',')}); the identity is used for it until a later refresh succeeds (warned once)`);
          }
          s.failures += bad;
          this.failed += bad;
        }
      }
    }, (error: Error) => this.warn(`NewtonMuon: reading the factorisation flags failed: ${error.message}`))
      .finally(() => info.dispose());
    this.pendingReports.push(report);
  }

  /** Waits for the factorisation reports of earlier refresh steps (failedRefreshes is then current). */
  async flushReports(): Promise<void> {
    const pending = this.pendingReports;
    this.pendingReports = [];
    await Promise.all(pending);
  }

  /** @internal Data-parallel sharding: every matrix and statistic with its owner flag. */
  shardingLayout(): { matrices: ShardedMatrix[]; statistics: ShardedStatistic[] } {
    this.checkLive('shardingLayout');
    return {
      matrices: this.matrices.map((m) => ({ name: m.name, param: m.param, momentum: m.momentum!, owned: m.owned, statistic: m.stat?.key ?? null })),
      statistics: [...this.stats.values()].map((s) => ({ key: s.key, kinv: s.kinv!, owned: s.owned })),
    };
  }

  // ---- state ---------------------------------------------------------------------------------

  /** The optimizer's state: momentum per matrix, and K and Kinv per statistic (Newton-Muon). */
  stateDict(): OptimizerState {
    this.checkLive('stateDict');
    const tensors: Record<string, Tensor> = {};
    for (const m of this.matrices) tensors[`momentum/${m.name}`] = m.momentum!;
    for (const s of this.stats.values()) {
      tensors[`K/${s.key}`] = s.k!;
      tensors[`Kinv/${s.key}`] = s.kinv!;
    }
    return { kind: this.kind, step: this.stepCount, tensors };
  }

  /** Restores a stateDict() (tensors on any device, or host Float32Arrays) for exact resumption. */
  async loadStateDict(state: OptimizerState): Promise<void> {
    this.checkLive('loadStateDict');
    const own = this.stateDict();
    checkStateNames(state, Object.keys(own.tensors), this.kind);
    await loadAll(own.tensors as Record<string, Tensor>, state);
    this.stepCount = state.step;
  }

  /** loadStateDict() for callers that cannot await: a tensor on another device is read with readSync. */
  loadStateDictSync(state: OptimizerState): void {
    this.checkLive('loadStateDict');
    const own = this.stateDict();
    checkStateNames(state, Object.keys(own.tensors), this.kind);
    loadAllSync(own.tensors as Record<string, Tensor>, state);
    this.stepCount = state.step;
  }

  /** Frees every state tensor. The optimizer cannot be used afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const owned: (Tensor | undefined)[] = [];
    for (const m of this.matrices) owned.push(m.momentum, m.u, m.o);
    for (const g of this.nsGroups.values()) owned.push(g.input, g.output);
    for (const s of this.stats.values()) owned.push(s.k, s.s, s.kinv, s.info);
    for (const g of this.statGroups.values()) owned.push(g.k, g.s, g.kinv, g.info);
    for (const t of owned) t?.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  private checkLive(what: string): void {
    if (this.disposed) throw new Error(`${this.kind}.${what}: the optimizer was disposed`);
  }
}

/** Slots [first, first + count) of a batch buffer, viewed as `shape` (one view, no leftover). */
function rowsView(batch: Tensor, first: number, count: number, shape: number[]): Tensor {
  const slots = batch.slice(first, first + count);
  const view = slots.view(shape);
  slots.dispose();
  return view;
}

/** Sets the diagonal of every matrix of a [count, d, d] f32 tensor to value (others untouched). */
function setDiagonal(t: Tensor, value: number): void {
  const [count, d] = t.shape;
  const ones = zeros([d], { device: t.device });
  native.fill(ones.handle('setDiagonal'), 0, 0, d, value);
  for (let b = 0; b < count; b++) {
    // Row stride (d + 1) floats walks down the diagonal of matrix b.
    native.copyRows(t.handle('setDiagonal'), t.byteOffset + b * d * d * 4, (d + 1) * 4, ones.handle('setDiagonal'), 0, 4, d, 4);
  }
  ones.dispose();
}
