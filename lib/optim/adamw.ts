// AdamW as PyTorch defines it (decoupled weight decay, bias-corrected moments), for the
// embedding / tied head and any 1-D parameter. One fused native update per parameter.
import { native } from '../native';
import { checkTensor } from '../ops';
import { formatShape, sameShape } from '../shape';
import { untracked } from '../scope';
import { Tensor, zeros } from '../tensor';
import { assertGradientsFinite } from './finite';
import { bool, nonNegative, positive, unitInterval } from './hyperparams';
import { checkStateNames, loadAll, OptimizerState } from './state';

export interface AdamWParam {
  param: Tensor;
  grad: Tensor;
  name?: string;
}

export interface AdamWOptions {
  lr: number;
  /** Default [0.9, 0.999]. */
  betas?: [number, number];
  /** Default 1e-8. */
  eps?: number;
  /** Decoupled: W *= 1 - lr * weightDecay. Default 0.01 (PyTorch's AdamW default). */
  weightDecay?: number;
  /** Throw (naming the parameter, before any update) if a gradient is not finite. Default false. */
  checkFinite?: boolean;
}

interface AdamState {
  name: string;
  param: Tensor;
  grad: Tensor;
  m: Tensor;
  v: Tensor;
}

export class AdamW {
  private readonly entries: AdamState[] = [];
  private stepCount = 0;
  private disposed = false;
  private lrValue: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly checkFinite: boolean;

  constructor(params: readonly AdamWParam[], options: AdamWOptions) {
    if (options === null || typeof options !== 'object') throw new TypeError('AdamW: options must be an object with at least { lr }');
    this.lrValue = positive(options.lr, 'AdamW: lr');
    const betas = options.betas ?? [0.9, 0.999];
    if (!Array.isArray(betas) || betas.length !== 2) throw new TypeError(`AdamW: betas must be [beta1, beta2], got ${String(betas)}`);
    this.beta1 = unitInterval(betas[0], 'AdamW: betas[0]');
    this.beta2 = unitInterval(betas[1], 'AdamW: betas[1]');
    this.eps = positive(options.eps ?? 1e-8, 'AdamW: eps');
    this.weightDecay = nonNegative(options.weightDecay ?? 0.01, 'AdamW: weightDecay');
    this.checkFinite = bool(options.checkFinite ?? false, 'AdamW: checkFinite');
    if (!Array.isArray(params) || params.length === 0) throw new TypeError('AdamW: params must be a non-empty array of { param, grad }');
    const names = new Set<string>();
    params.forEach((spec, i) => {
      const where = `AdamW: params[${i}]`;
      if (spec === null || typeof spec !== 'object') throw new TypeError(`${where} must be { param, grad }`);
      const name = spec.name ?? `param${i}`;
      if (typeof name !== 'string' || names.has(name)) throw new TypeError(`${where}: name ${JSON.stringify(name)} is not a unique string`);
      names.add(name);
      const param = checkTensor(spec.param, `${where} (${name}).param`);
      const grad = checkTensor(spec.grad, `${where} (${name}).grad`);
      if (param.dtype !== 'f32' || grad.dtype !== 'f32') throw new TypeError(`${where} (${name}): param and grad must be f32, got ${param.dtype} and ${grad.dtype}`);
      if (!sameShape(param.shape, grad.shape)) throw new RangeError(`${where} (${name}): grad has shape ${formatShape(grad.shape)} but param has ${formatShape(param.shape)}`);
      const device = this.entries[0]?.param.device ?? param.device;
      if (param.device !== device || grad.device !== device) {
        throw new Error(`${where} (${name}): param/grad on ${param.device}/${grad.device}, expected every tensor on ${device}`);
      }
      this.entries.push(untracked(() => ({ name, param, grad, m: zeros(param.shape, { device }), v: zeros(param.shape, { device }) })));
    });
  }

  get lr(): number {
    return this.lrValue;
  }

  set lr(value: number) {
    this.lrValue = positive(value, 'AdamW: lr');
  }

  get steps(): number {
    return this.stepCount;
  }

  /** One step for every parameter (stream-ordered; see MatrixOptimizer.step for the promise). */
  async step(): Promise<void> {
    this.checkLive('step');
    for (const e of this.entries) {
      checkTensor(e.param, `AdamW.step: ${e.name}.param`);
      checkTensor(e.grad, `AdamW.step: ${e.name}.grad`);
    }
    if (this.checkFinite) await assertGradientsFinite('AdamW.step', this.entries);
    // The step's scalars in double, each rounded to f32 once by the binding (PyTorch forms them
    // in Python floats the same way); 1 - beta2 in f32 arithmetic would lose digits near 1.
    const t = this.stepCount + 1;
    const stepSize = this.lrValue / (1 - this.beta1 ** t);
    const sqrtBias2 = Math.sqrt(1 - this.beta2 ** t);
    const keep = 1 - this.lrValue * this.weightDecay;
    for (const e of this.entries) {
      const op = 'AdamW.step';
      native.adamwUpdate(e.param.handle(op), e.param.byteOffset, e.grad.handle(op), e.grad.byteOffset,
        e.m.handle(op), e.m.byteOffset, e.v.handle(op), e.v.byteOffset, e.param.numel,
        keep, this.beta1, 1 - this.beta1, this.beta2, 1 - this.beta2, stepSize, sqrtBias2, this.eps);
    }
    this.stepCount = t;
  }

  stateDict(): OptimizerState {
    this.checkLive('stateDict');
    const tensors: Record<string, Tensor> = {};
    for (const e of this.entries) {
      tensors[`m/${e.name}`] = e.m;
      tensors[`v/${e.name}`] = e.v;
    }
    return { kind: 'adamw', step: this.stepCount, tensors };
  }

  async loadStateDict(state: OptimizerState): Promise<void> {
    this.checkLive('loadStateDict');
    const own = this.stateDict();
    checkStateNames(state, Object.keys(own.tensors), 'adamw');
    await loadAll(own.tensors as Record<string, Tensor>, state);
    this.stepCount = state.step;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const e of this.entries) {
      e.m.dispose();
      e.v.dispose();
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  private checkLive(what: string): void {
    if (this.disposed) throw new Error(`AdamW.${what}: the optimizer was disposed`);
  }
}
