// The sharded Muon / Newton-Muon step: each rank preconditions, orthogonalises and updates only
// its share of the matrices, then every rank gathers the updated weights from their owners.
//
// Shares are whole matrices, and matrices that read the same input statistic (a fused q/k/v is
// one matrix; params with one inputKey share one K) go to one owner, so every statistic is
// factorised once. Shares are balanced by cost with the longest-first greedy rule (each unit,
// most expensive first, to the rank with the least work so far): for GPT-2's 4 matrix kinds per
// layer (costs 9 : 3 : 9 : 9 in units of C^3) this splits 12 layers evenly over 1, 2, 3, 4, 6 or
// 8 ranks.
//
// Moving the weights: the owned matrices are packed into this rank's slot of one buffer of
// worldSize equal slots (the largest share's size), one all-gather fills the others, and each
// matrix is copied out of its owner's slot. gatherState() does the same for the optimizer state
// (momentum, and Kinv, which only owners refresh) before a checkpoint, so rank 0 saves exactly
// what a single process would.
import type { MatrixOptimizer, MatrixParam } from '../optim/matrix_optimizer';
import { copy } from '../ops';
import { untracked } from '../scope';
import { empty, Tensor } from '../tensor';
import type { ProcessGroup } from './process_group';

/** Matrices that must share an owner, and their relative cost. */
export interface ShardUnit {
  names: string[];
  cost: number;
}

/**
 * Relative cost of one matrix's update: Newton-Schulz dominates (per row block of [r, c], with
 * m = min(r, c) and n = max: 2 m^2 n + m^3 per iteration), plus the right preconditioning
 * (r x c times its d x d blocks) for Newton-Muon.
 */
export function matrixCost(rows: number, cols: number, rowBlocks: number, inputBlocks: number, preconditioned: boolean): number {
  const r = rows / rowBlocks;
  const m = Math.min(r, cols);
  const n = Math.max(r, cols);
  const ns = rowBlocks * (2 * m * m * n + m * m * m);
  return ns + (preconditioned ? rows * cols * (cols / inputBlocks) : 0);
}

/** The units of a Muon (each matrix alone) or Newton-Muon (grouped by input statistic) param list. */
export function shardUnits(params: readonly MatrixParam[], preconditioned: boolean): ShardUnit[] {
  const units = new Map<string, ShardUnit>();
  params.forEach((p, i) => {
    const name = p.name ?? `param${i}`;
    const key = preconditioned ? (p.inputKey ?? name) : name;
    const [rows, cols] = p.param.shape;
    const cost = matrixCost(rows, cols, p.rowBlocks ?? 1, p.inputBlocks ?? 1, preconditioned);
    const unit = units.get(key);
    if (unit) {
      unit.names.push(name);
      unit.cost += cost;
    } else {
      units.set(key, { names: [name], cost });
    }
  });
  return [...units.values()];
}

/** The owner of each unit: longest first, to the least-loaded rank (ties: the lower rank). */
export function assignShards(units: readonly ShardUnit[], worldSize: number): number[] {
  const order = units.map((u, i) => i).sort((a, b) => units[b].cost - units[a].cost || a - b);
  const load = new Array<number>(worldSize).fill(0);
  const owners = new Array<number>(units.length);
  for (const i of order) {
    let best = 0;
    for (let r = 1; r < worldSize; r++) if (load[r] < load[best]) best = r;
    owners[i] = best;
    load[best] += units[i].cost;
  }
  return owners;
}

/** Param name -> owning rank. */
export function planShards(params: readonly MatrixParam[], preconditioned: boolean, worldSize: number): Map<string, number> {
  const units = shardUnits(params, preconditioned);
  const owners = assignShards(units, worldSize);
  const byName = new Map<string, number>();
  units.forEach((u, i) => { for (const name of u.names) byName.set(name, owners[i]); });
  return byName;
}

interface Part {
  /** The rank-local tensor (a weight, a momentum, a Kinv slice). */
  tensor: Tensor;
  /** Its place in the gather buffer: owner * slot + offset. */
  at: number;
  owner: number;
}

/** Places every part in its owner's slot; returns the slot size (the largest share). */
function layout(parts: { tensor: Tensor; owner: number }[], worldSize: number): { placed: Part[]; slot: number } {
  const used = new Array<number>(worldSize).fill(0);
  const offsets = parts.map((p) => {
    const at = used[p.owner];
    used[p.owner] += p.tensor.numel;
    return at;
  });
  const slot = Math.max(1, ...used);
  return { placed: parts.map((p, i) => ({ tensor: p.tensor, owner: p.owner, at: p.owner * slot + offsets[i] })), slot };
}

/** Packs own parts into buffer, all-gathers, unpacks the others' parts. Enqueued only. */
function exchange(group: ProcessGroup, buffer: Tensor, placed: Part[], slot: number): void {
  const views: Tensor[] = [];
  const view = (p: Part): Tensor => {
    const v = buffer.slice(p.at, p.at + p.tensor.numel);
    views.push(v);
    return v;
  };
  try {
    for (const p of placed) if (p.owner === group.rank) copy(view(p), p.tensor);
    const mine = buffer.slice(group.rank * slot, (group.rank + 1) * slot);
    views.push(mine);
    group.allGather(buffer, mine);
    for (const p of placed) if (p.owner !== group.rank) copy(p.tensor, view(p));
  } finally {
    for (const v of views) v.dispose();
  }
}

export class ShardedMatrixStep {
  private readonly weights: { placed: Part[]; slot: number };
  private buffer: Tensor | null = null;

  /** `owners`: planShards() of the params the optimizer was built with (owns = owner === rank). */
  constructor(private readonly group: ProcessGroup, private readonly optimizer: MatrixOptimizer, private readonly owners: Map<string, number>) {
    const { matrices } = optimizer.shardingLayout();
    for (const m of matrices) {
      if (m.owned !== (owners.get(m.name) === group.rank)) {
        throw new Error(`ShardedMatrixStep: the optimizer's owner of '${m.name}' disagrees with the plan`);
      }
    }
    this.weights = layout(matrices.map((m) => ({ tensor: m.param, owner: owners.get(m.name)! })), group.worldSize);
  }

  /** Bytes each rank receives per step in the weight all-gather (f32). */
  get gatherBytes(): number {
    return this.weights.slot * this.group.worldSize * 4;
  }

  /** After optimizer.step(): every rank gets every updated matrix from its owner (enqueued). */
  gatherWeights(): void {
    this.buffer ??= untracked(() => empty([this.weights.slot * this.group.worldSize], { device: this.group.device }));
    exchange(this.group, this.buffer, this.weights.placed, this.weights.slot);
  }

  /**
   * Makes every rank's optimizer state whole (momentum of every matrix, Kinv of every statistic),
   * as a single process would hold it: call it before stateDict() when saving a checkpoint.
   */
  async gatherState(): Promise<void> {
    const { matrices, statistics } = this.optimizer.shardingLayout();
    const parts = matrices.map((m) => ({ tensor: m.momentum, owner: this.owners.get(m.name)! }));
    const ownerOf = new Map<string, number>();
    for (const m of matrices) if (m.statistic !== null) ownerOf.set(m.statistic, this.owners.get(m.name)!);
    for (const s of statistics) parts.push({ tensor: s.kinv, owner: ownerOf.get(s.key)! });
    const { placed, slot } = layout(parts, this.group.worldSize);
    const buffer = untracked(() => empty([slot * this.group.worldSize], { device: this.group.device }));
    try {
      exchange(this.group, buffer, placed, slot);
      await this.group.synchronize();
    } finally {
      buffer.dispose();
    }
  }

  dispose(): void {
    this.buffer?.dispose();
    this.buffer = null;
  }
}
