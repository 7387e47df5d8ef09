// The tf.Optimizer both tfjs classes share. It owns no math: the registered 2-D variables are
// stepped by ArrayNewtonMuon / ArrayMuon (which drive our NewtonMuon / Muon) with the [in, out]
// layout of tfjs Dense kernels, every other variable by a tfjs `fallback` optimizer.
//
// Per step (applyGradients, synchronous as tfjs requires): each matrix gradient is read with
// dataSync() and handed over; the weights are re-read from tfjs only when the variable was
// assigned by someone else since our last write (its dataId changed); after the step the new
// weights are read back (readSync) and assigned to the variables. Layer inputs are copied only
// on the steps that refresh the preconditioner, from the Dense layers' call hooks.
import { DeviceSpec, resolveDevice } from '../device';
import { ArrayMatrix, ArrayMatrixOptimizer, ArrayMuon, ArrayNewtonMuon, ArrayOptimizerOptions } from '../optim/array_optimizer';
import { checkMatrixOptimizerOptions, MuonOptions, NewtonMuonOptions } from '../optim/matrix_optimizer';
import { OptimizerState } from '../optim/state';
import { positiveInt } from '../optim/hyperparams';
import { describe } from '../shape';
import { AttachOptions, CallHook, DenseMatrix, denseMatrices, isLayersModel, LayerLike, LayersModelLike, LayerVariableLike, variableOf } from './model';
import { ConfigDict, NamedTensor, NamedTensorMap, Serializable, SerializableConstructor, tf, TfOptimizer, TfScalar, TfTensor, TfVariable } from './tf';
import { packWeights, unpackWeights } from './weights';

export interface TfjsOptimizerOptions {
  /** Steps every variable that is not a matrix (biases, embeddings, norms). Default: tf.train.adam(fallbackLr). */
  fallback?: TfOptimizer;
  /** Learning rate of the default Adam fallback. Default 1e-3. */
  fallbackLr?: number;
  /** Where our optimizer state lives and its math runs. Default 'auto' (CUDA when available). */
  device?: DeviceSpec;
}

export type NewtonMuonOptimizerOptions = NewtonMuonOptions & TfjsOptimizerOptions;
export type MuonOptimizerOptions = MuonOptions & TfjsOptimizerOptions;

export interface AddMatrixOptions {
  /** Names it in the saved state and in messages. Default: the variable's name. */
  name?: string;
  /** Orthogonalise this many blocks of output features (columns of the [in, out] variable) separately. */
  rowBlocks?: number;
  /** Newton-Muon: a block-diagonal input statistic with this many blocks. */
  inputBlocks?: number;
  /** Newton-Muon: matrices with the same key read the same input and share one statistic. */
  inputKey?: string;
}

interface Matrix {
  name: string;
  variable: TfVariable;
  /** [in, out] */
  inputs: number;
  outputs: number;
  inputKey: string;
  rowBlocks?: number;
  inputBlocks?: number;
  layer?: LayerLike;
  /** Host copy of the weights in tfjs's layout; the array optimizer writes each step into it. */
  mirror?: Float32Array;
  /** The variable's data handle when mirror last matched it (an assign() replaces it). */
  syncedData?: unknown;
}

/** Which optimizer owns a layer's call hook (tfjs has one slot per layer). */
const hookOwners = new WeakMap<LayerLike, TfjsMatrixOptimizer>();

const NEWTON_MUON_KEYS = ['refreshEvery', 'statsDecay', 'ridge', 'ridgeEps', 'initDiag'] as const;
const MUON_KEYS = ['lr', 'momentum', 'nesterov', 'nsSteps', 'weightDecay', 'checkFinite'] as const;

export abstract class TfjsMatrixOptimizer extends tf.Optimizer {
  private readonly settings: NewtonMuonOptions;
  private readonly deviceSpec: DeviceSpec;
  private readonly fallback: TfOptimizer;
  private readonly matrices: Matrix[] = [];
  private readonly byVariable = new Map<string, Matrix>();
  private readonly models: LayersModelLike[] = [];
  /** Engine names of every weight of the attached models. */
  private readonly modelWeights = new Set<string>();
  private core?: ArrayMatrixOptimizer;
  private pendingState?: OptimizerState;
  private capturing = 0;
  /** Input tensors already observed this step, per statistic (layers sharing an input see it once each). */
  private readonly observedThisStep = new Map<string, Set<number>>();
  private madeForGetWeights: TfTensor[] = [];
  private disposed = false;

  protected constructor(
    private readonly opName: string,
    private readonly preconditioned: boolean,
    options: NewtonMuonOptimizerOptions,
  ) {
    super();
    if (options === null || typeof options !== 'object') throw new TypeError(`${opName}: options must be an object with at least { lr }`);
    const { fallback, fallbackLr, device, ...settings } = options;
    this.deviceSpec = device ?? 'auto';
    resolveDevice(this.deviceSpec, `${opName}: device`);
    if (fallback !== undefined && !(fallback instanceof tf.Optimizer)) throw new TypeError(`${opName}: fallback must be a tf.Optimizer (e.g. tf.train.adam(1e-3)), got ${describe(fallback)}`);
    if (fallbackLr !== undefined && (typeof fallbackLr !== 'number' || !(fallbackLr > 0) || !Number.isFinite(fallbackLr))) {
      throw new RangeError(`${opName}: fallbackLr must be a finite number > 0, got ${describe(fallbackLr)}`);
    }
    if (!preconditioned) {
      for (const key of NEWTON_MUON_KEYS) if (key in settings) throw new TypeError(`${opName}: ${key} is a Newton-Muon option; use NewtonMuonOptimizer for it`);
    }
    // Validates every hyperparameter now, with the message NewtonMuon / Muon give.
    checkMatrixOptimizerOptions(preconditioned ? 'newton-muon' : 'muon', settings as NewtonMuonOptions);
    this.settings = settings as NewtonMuonOptions;
    this.fallback = fallback ?? tf.train.adam(fallbackLr ?? 1e-3);
  }

  // ---- registration --------------------------------------------------------------------------

  /**
   * Registers the model's Dense kernels as matrices (all trainable ones, or options.layers) and,
   * for Newton-Muon, observes their inputs through the layers' call hooks. Every other weight of
   * the model goes to the fallback. Returns this optimizer, so `model.compile({ optimizer:
   * new NewtonMuonOptimizer({ lr }).attach(model), loss })` reads naturally.
   */
  attach(model: LayersModelLike, options: AttachOptions = {}): this {
    const what = `${this.opName}.attach`;
    this.checkRegistrationOpen(what);
    if (!isLayersModel(model)) throw new TypeError(`${what}: expected a tfjs LayersModel (tf.sequential() or tf.model()), got ${describe(model)}`);
    if (options === null || typeof options !== 'object') throw new TypeError(`${what}: options must be an object`);
    if (this.models.includes(model)) throw new Error(`${what}: model '${model.name}' is attached already`);
    const found = denseMatrices(model, options, what);
    for (const d of this.preconditioned ? found : []) {
      const owner = hookOwners.get(d.layer);
      if (owner && owner !== this && !owner.disposed) throw new Error(`${what}: layer '${d.layer.name}' is attached to another optimizer; dispose() that one first`);
    }
    const planned: Matrix[] = [];
    for (const d of found) planned.push(this.planMatrix(what, variableOf(d.kernel), denseMatrixOptions(d), planned, d.layer));
    this.register(planned);
    this.models.push(model);
    for (const w of modelWeightsOf(model)) this.modelWeights.add(variableOf(w).name);
    // Muon needs no inputs: its layers keep their hook slot free.
    if (this.preconditioned) for (const m of planned) this.hook(m);
    return this;
  }

  /**
   * Registers one 2-D float32 variable ([in, out], like a Dense kernel) as a matrix, for custom
   * loops. Its input is yours to hand over with observeInput(variable, x) on statistics steps.
   */
  addMatrix(variable: TfVariable | LayerVariableLike, options: AddMatrixOptions = {}): this {
    const what = `${this.opName}.addMatrix`;
    this.checkRegistrationOpen(what);
    if (options === null || typeof options !== 'object') throw new TypeError(`${what}: options must be an object`);
    const isLayerVariable = variable !== null && typeof variable === 'object' && typeof (variable as LayerVariableLike).read === 'function' && 'originalName' in variable;
    const v = isLayerVariable ? variableOf(variable as LayerVariableLike) : variable as TfVariable;
    if (!(v instanceof tf.Variable)) throw new TypeError(`${what}: expected a tf.Variable (or a layer's weight), got ${describe(variable)}`);
    const name = options.name ?? (isLayerVariable ? (variable as LayerVariableLike).originalName : v.name);
    this.register([this.planMatrix(what, v, { ...options, name, inputKey: options.inputKey ?? name }, [])]);
    return this;
  }

  /**
   * Declares variables outside the attached model(s) that this optimizer may also be handed
   * (they go to the fallback). Only needed after attach(), which otherwise refuses gradients of
   * variables that are not the model's, so that compiling another model with it is caught.
   */
  addFallbackVariables(...variables: TfVariable[]): this {
    const what = `${this.opName}.addFallbackVariables`;
    this.checkLive(what);
    for (const v of variables) if (!(v instanceof tf.Variable)) throw new TypeError(`${what}: expected tf.Variables, got ${describe(v)}`);
    for (const v of variables) this.modelWeights.add(v.name);
    return this;
  }

  /** Checks one variable as a matrix against those registered and `planned`; returns its record. */
  private planMatrix(what: string, variable: TfVariable, options: AddMatrixOptions & { name: string; inputKey: string },
    planned: readonly Matrix[], layer?: LayerLike): Matrix {
    const label = `'${options.name}'${options.name === variable.name ? '' : ` (variable '${variable.name}')`}`;
    if (variable.isDisposed) throw new Error(`${what}: ${label} was disposed`);
    if (variable.rank !== 2) {
      throw new RangeError(`${what}: ${label} has shape [${variable.shape.join(', ')}]; only 2-D [in, out] variables can be matrices (leave it to the fallback optimizer)`);
    }
    if (variable.dtype !== 'float32') throw new TypeError(`${what}: ${label} is ${variable.dtype}; matrices must be float32`);
    const others = [...this.matrices, ...planned];
    if (others.some((m) => m.variable.name === variable.name)) throw new Error(`${what}: ${label} is registered already`);
    if (others.some((m) => m.name === options.name)) throw new Error(`${what}: the name '${options.name}' is taken by another matrix; pass options.name`);
    const [inputs, outputs] = variable.shape;
    const rowBlocks = positiveInt(options.rowBlocks ?? 1, `${what}: ${label}: rowBlocks`);
    const inputBlocks = positiveInt(options.inputBlocks ?? 1, `${what}: ${label}: inputBlocks`);
    if (outputs % rowBlocks !== 0) throw new RangeError(`${what}: ${label}: its ${outputs} output features do not split into ${rowBlocks} row blocks`);
    if (inputs % inputBlocks !== 0) throw new RangeError(`${what}: ${label}: its ${inputs} input features do not split into ${inputBlocks} blocks`);
    const sharing = others.find((m) => m.inputKey === options.inputKey);
    if (this.preconditioned && sharing && (sharing.inputs !== inputs || (sharing.inputBlocks ?? 1) !== inputBlocks)) {
      throw new RangeError(`${what}: ${label} shares input '${options.inputKey}' with '${sharing.name}' but reads ${inputs} features in ` +
        `${inputBlocks} block(s), while '${sharing.name}' reads ${sharing.inputs} in ${sharing.inputBlocks ?? 1}`);
    }
    return { name: options.name, variable, inputs, outputs, inputKey: options.inputKey, layer, rowBlocks, inputBlocks };
  }

  private register(matrices: readonly Matrix[]): void {
    for (const m of matrices) {
      this.matrices.push(m);
      this.byVariable.set(m.variable.name, m);
    }
  }

  private hook(m: Matrix): void {
    const layer = m.layer!;
    hookOwners.set(layer, this);
    const onCall: CallHook = (inputs, kwargs) => this.onLayerCall(m, inputs, kwargs);
    layer.setCallHook(onCall);
  }

  private checkRegistrationOpen(what: string): void {
    this.checkLive(what);
    if (this.core) throw new Error(`${what}: register every matrix before the first step (the optimizer state is laid out once)`);
  }

  // ---- statistics ----------------------------------------------------------------------------

  private onLayerCall(m: Matrix, inputs: TfTensor | TfTensor[], kwargs: Record<string, unknown> | undefined): void {
    if (this.disposed) return;
    // A training forward: model.fit, apply(x, { training: true }), or inside our minimize().
    if (kwargs?.training !== true && this.capturing === 0) return;
    const core = this.build();
    if (!core.collectsStatistics()) return;
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    let seen = this.observedThisStep.get(m.inputKey);
    if (!seen) this.observedThisStep.set(m.inputKey, seen = new Set());
    if (seen.has(x.id)) return;
    seen.add(x.id);
    this.observe(m, x, 'call hook');
  }

  /**
   * This step's input x ([..., in], any rank: [B, in], [B, T, in]) of the matrix `variable`
   * (the variable, its layer weight, or its registered name). Copied only on steps that refresh
   * the preconditioner (returns false otherwise, and always for Muon). attach() does this itself
   * for Dense layers; custom loops that compute gradients themselves call it.
   */
  observeInput(variable: TfVariable | LayerVariableLike | string, x: TfTensor): boolean {
    const what = `${this.opName}.observeInput`;
    this.checkLive(what);
    const m = this.matrixOf(variable, what);
    if (!(x instanceof tf.Tensor)) throw new TypeError(`${what}('${m.name}'): x must be a tf.Tensor, got ${describe(x)}`);
    this.checkInputWidth(m, x, what);
    if (!this.preconditioned) return false;
    if (!this.build().collectsStatistics()) return false;
    return this.observe(m, x, what);
  }

  private observe(m: Matrix, x: TfTensor, what: string): boolean {
    this.checkInputWidth(m, x, what);
    if (x.dtype !== 'float32') throw new TypeError(`${what}('${m.name}'): x must be float32, got ${x.dtype}`);
    return this.build().observeInput(m.name, x.dataSync() as Float32Array, x.size / m.inputs);
  }

  private checkInputWidth(m: Matrix, x: TfTensor, what: string): void {
    if (x.rank < 1 || x.shape[x.rank - 1] !== m.inputs) {
      throw new RangeError(`${what}('${m.name}'): the input must end in ${m.inputs} features ([..., ${m.inputs}]: '${m.name}' is [${m.inputs}, ${m.outputs}]), got shape [${x.shape.join(', ')}]`);
    }
  }

  private matrixOf(target: TfVariable | LayerVariableLike | string, what: string): Matrix {
    let m: Matrix | undefined;
    if (typeof target === 'string') m = this.matrices.find((x) => x.name === target) ?? this.byVariable.get(target);
    else if (target instanceof tf.Variable) m = this.byVariable.get(target.name);
    else if (target !== null && typeof target === 'object' && typeof (target as LayerVariableLike).read === 'function') m = this.byVariable.get(variableOf(target as LayerVariableLike).name);
    if (m) return m;
    const label = typeof target === 'string' ? `'${target}'` : target instanceof tf.Variable ? `variable '${target.name}'` : describe(target);
    throw new TypeError(`${what}: ${label} is not a matrix of this optimizer (matrices: ${this.matrices.map((x) => x.name).join(', ') || 'none'}); register it with attach(model) or addMatrix(variable)`);
  }

  // ---- the step ------------------------------------------------------------------------------

  override computeGradients(f: () => TfScalar, varList?: TfVariable[]): { value: TfScalar; grads: NamedTensorMap } {
    // Layer inputs seen while the gradient is taken belong to the coming step.
    this.capturing++;
    try {
      return super.computeGradients(f, varList);
    } finally {
      this.capturing--;
    }
  }

  /**
   * Steps every matrix (exactly NewtonMuon / Muon) and hands the other gradients to the fallback.
   * Synchronous: the variables hold the new weights when it returns. Everything is checked first.
   */
  override applyGradients(variableGradients: NamedTensorMap | NamedTensor[]): void {
    const what = `${this.opName}.applyGradients`;
    this.checkLive(what);
    const entries = gradientEntries(variableGradients, what);
    const core = this.build();
    const matrixGrads = new Map<Matrix, TfTensor>();
    const rest: NamedTensor[] = [];
    for (const { name, tensor } of entries) {
      const m = this.byVariable.get(name);
      if (!m) {
        if (this.models.length > 0 && !this.modelWeights.has(name)) {
          throw new Error(`${what}: got a gradient for variable '${name}', which is not a weight of the attached model ` +
            `${this.models.map((x) => `'${x.name}'`).join(', ')} (attach(model) the model you train; addMatrix() or addFallbackVariables() ` +
            'a variable of your own); nothing was updated');
        }
        rest.push({ name, tensor });
        continue;
      }
      if (tensor == null) continue; // reported below as missing
      if (!(tensor instanceof tf.Tensor) || tensor.dtype !== 'float32' || tensor.rank !== 2 || tensor.shape[0] !== m.inputs || tensor.shape[1] !== m.outputs) {
        throw new RangeError(`${what}: the gradient of '${m.name}' must be a float32 tensor [${m.inputs}, ${m.outputs}], got ${tensor instanceof tf.Tensor ? `${tensor.dtype} [${tensor.shape.join(', ')}]` : describe(tensor)}; nothing was updated`);
      }
      matrixGrads.set(m, tensor);
    }
    const missing = this.matrices.filter((m) => !matrixGrads.has(m));
    if (missing.length > 0) {
      throw new Error(`${what}: no gradient for matrix ${missing.map((m) => `'${m.name}'`).join(', ')}; every registered matrix needs ` +
        'one each step (is it used by the loss? is it in varList?); nothing was updated');
    }
    for (const m of this.matrices) {
      if (m.variable.isDisposed) throw new Error(`${what}: the variable of matrix '${m.name}' was disposed`);
    }

    for (const m of this.matrices) this.syncMirror(m);
    const grads: Record<string, Float32Array> = {};
    for (const [m, g] of matrixGrads) grads[m.name] = g.dataSync() as Float32Array;
    core.stepSync(grads);
    for (const m of this.matrices) this.assignFromMirror(m);
    if (rest.length > 0) this.fallback.applyGradients(rest);
    this.incrementIterations();
    this.observedThisStep.clear();
  }

  /** Brings the mirror up to date when the variable was assigned elsewhere (setWeights, a load). */
  private syncMirror(m: Matrix): void {
    if (m.syncedData === m.variable.dataId) return;
    m.mirror!.set(m.variable.dataSync() as Float32Array);
    m.syncedData = m.variable.dataId;
  }

  private assignFromMirror(m: Matrix): void {
    // A copy: a tfjs backend may keep the array it is given as the tensor's storage.
    const value = tf.tensor(m.mirror!.slice(), m.variable.shape, 'float32');
    m.variable.assign(value);
    value.dispose();
    m.syncedData = m.variable.dataId;
  }

  /** Lays out the optimizer state once, at the first step (or first statistic, or getWeights). */
  private build(): ArrayMatrixOptimizer {
    if (this.core) return this.core;
    if (this.matrices.length === 0) {
      throw new Error(`${this.opName}: no matrices are registered; call optimizer.attach(model) (or addMatrix) before training` +
        (this.pendingState ? '. This optimizer was restored by tf.loadLayersModel: attach it to the loaded model, `model.optimizer.attach(model)`' : ''));
    }
    for (const m of this.matrices) {
      m.mirror = new Float32Array(m.inputs * m.outputs);
      m.syncedData = undefined;
    }
    const core = this.createCore(this.matrices.map((m) => ({
      weight: m.mirror!, shape: [m.inputs, m.outputs] as [number, number], layout: 'in-out' as const, name: m.name,
      rowBlocks: m.rowBlocks, inputBlocks: m.inputBlocks, inputKey: this.preconditioned ? m.inputKey : undefined,
    })), { ...this.settings, onWarning: this.warningSink(), device: this.deviceSpec });
    if (this.pendingState) {
      try {
        core.loadStateDict(this.pendingState);
      } catch (error) {
        core.dispose();
        throw new Error(`${this.opName}: the state given to setWeights() does not fit the registered matrices: ${(error as Error).message}`);
      }
      this.pendingState = undefined;
    }
    this.core = core;
    return core;
  }

  private createCore(matrices: ArrayMatrix[], options: NewtonMuonOptions & ArrayOptimizerOptions): ArrayMatrixOptimizer {
    return this.preconditioned ? new ArrayNewtonMuon(matrices, options) : new ArrayMuon(matrices, options);
  }

  private warningSink(): (message: string) => void {
    const sink = this.settings.onWarning ?? ((message: string) => console.warn(message));
    return (message) => sink(/no input was observed/.test(message)
      ? `${message}. In tfjs, Dense inputs are captured during model.fit, inside optimizer.minimize(), and from ` +
        'model.apply(x, { training: true }); otherwise call optimizer.observeInput(variable, x)'
      : message);
  }

  // ---- the rest of tf.Optimizer --------------------------------------------------------------

  /** Learning rate of the matrices (the fallback keeps its own). */
  get lr(): number {
    return this.core ? this.core.lr : this.settings.lr;
  }

  set lr(value: number) {
    checkMatrixOptimizerOptions(this.preconditioned ? 'newton-muon' : 'muon', { ...this.settings, lr: value });
    this.settings.lr = value;
    if (this.core) this.core.lr = value;
  }

  /**
   * True when the coming step refreshes the preconditioner (Newton-Muon), the only steps whose
   * layer inputs are copied; a custom loop calls observeInput() then. Always false for Muon.
   */
  collectsStatistics(): boolean {
    this.checkLive('collectsStatistics');
    return this.preconditioned && this.matrices.length > 0 && this.build().collectsStatistics();
  }

  /** Preconditioner factorisations that failed so far (Newton-Muon). */
  get failedRefreshes(): number {
    return this.core?.failedRefreshes ?? 0;
  }

  /** Waits for the factorisation reports of earlier refresh steps (failedRefreshes is then current). */
  async flushReports(): Promise<void> {
    await this.core?.flushReports();
  }

  /** The fallback optimizer that steps every variable that is not a matrix. */
  get fallbackOptimizer(): TfOptimizer {
    return this.fallback;
  }

  /** Names of the registered matrices, in registration order. */
  get matrixNames(): string[] {
    return this.matrices.map((m) => m.name);
  }

  /**
   * The state as tfjs tensors: 'iter', our state (momentum per matrix, K and Kinv per
   * statistic; flat float32), then the fallback's. The tensors this call makes stay valid until
   * the next getWeights() or dispose() (model.save reads them at once).
   */
  override async getWeights(): Promise<NamedTensor[]> {
    this.checkLive('getWeights');
    this.releaseMadeTensors();
    const state = this.core ? await this.core.stateDict() : this.pendingState ?? await this.build().stateDict();
    const { weights, made } = await packWeights(state, this.fallback);
    this.madeForGetWeights = made;
    return weights;
  }

  /**
   * Restores getWeights() output (what tf.loadLayersModel passes). Exact: momentum, K, K^-1,
   * the step count and the fallback's state. Applied now if the matrices are laid out, otherwise
   * at the first step after attach().
   */
  override async setWeights(weightValues: NamedTensor[]): Promise<void> {
    const what = `${this.opName}.setWeights`;
    this.checkLive(what);
    const state = await unpackWeights(weightValues, this.preconditioned ? 'newton-muon' : 'muon', this.fallback, what);
    if (this.core) this.core.loadStateDict(state);
    else this.pendingState = state;
    this.iterations_ = state.step;
  }

  /** Every hyperparameter (defaults filled in), the device spec and the fallback's { className, config }. */
  override getConfig(): ConfigDict {
    const resolved = checkMatrixOptimizerOptions(this.preconditioned ? 'newton-muon' : 'muon', this.settings) as unknown as Record<string, number | boolean>;
    const config: ConfigDict = {};
    for (const key of [...MUON_KEYS, ...(this.preconditioned ? NEWTON_MUON_KEYS : [])]) config[key] = resolved[key];
    config.device = this.deviceSpec;
    config.fallback = { className: this.fallback.getClassName(), config: this.fallback.getConfig() };
    return config;
  }

  /** The optimizer a getConfig() dict describes (what tfjs's deserializer calls, on the subclass). */
  static override fromConfig<T extends Serializable>(cls: SerializableConstructor<T>, config: ConfigDict): T {
    const { fallback, device, ...rest } = config as Record<string, unknown>;
    const options: NewtonMuonOptimizerOptions = { ...(rest as unknown as NewtonMuonOptions), device: device as DeviceSpec, fallback: deserializeOptimizer(fallback) };
    return new (cls as unknown as new (o: NewtonMuonOptimizerOptions) => T)(options);
  }

  /**
   * Frees our device state, clears the call hooks, disposes the fallback (also one passed in:
   * the optimizer owns it). tfjs's model.dispose() does not dispose a compile()d optimizer
   * instance, so call this yourself.
   */
  override dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const m of this.matrices) {
      if (m.layer && hookOwners.get(m.layer) === this) {
        m.layer.clearCallHook();
        hookOwners.delete(m.layer);
      }
    }
    this.core?.dispose();
    this.core = undefined;
    this.releaseMadeTensors();
    this.fallback.dispose();
  }

  private releaseMadeTensors(): void {
    for (const t of this.madeForGetWeights) t.dispose();
    this.madeForGetWeights = [];
  }

  private checkLive(what: string): void {
    if (this.disposed) throw new Error(`${what}: the optimizer was disposed`);
  }
}

function denseMatrixOptions(d: DenseMatrix): AddMatrixOptions & { name: string; inputKey: string } {
  return { name: d.name, inputKey: d.inputKey, rowBlocks: d.options.rowBlocks, inputBlocks: d.options.inputBlocks };
}

function modelWeightsOf(model: LayersModelLike): readonly LayerVariableLike[] {
  const all = (model as { weights?: readonly LayerVariableLike[] }).weights;
  return Array.isArray(all) ? all : model.trainableWeights;
}

function gradientEntries(grads: NamedTensorMap | NamedTensor[], what: string): NamedTensor[] {
  if (Array.isArray(grads)) {
    return grads.map((g, i) => {
      if (g === null || typeof g !== 'object' || typeof g.name !== 'string') throw new TypeError(`${what}: entry ${i} must be { name, tensor }`);
      return { name: g.name, tensor: g.tensor };
    });
  }
  if (grads === null || typeof grads !== 'object') throw new TypeError(`${what}: expected { variableName: gradient } or [{ name, tensor }], got ${describe(grads)}`);
  return Object.entries(grads).map(([name, tensor]) => ({ name, tensor }));
}

/** A tf.Optimizer from its { className, config } through tfjs's serialization registry. */
function deserializeOptimizer(spec: unknown): TfOptimizer | undefined {
  if (spec === undefined || spec === null) return undefined;
  const { className, config } = spec as { className?: string; config?: ConfigDict };
  const entry = className ? tf.serialization.SerializationMap.getMap().classNameMap[className] : undefined;
  if (!entry) throw new TypeError(`fallback optimizer '${String(className)}' is not registered with tf.serialization.registerClass()`);
  const [cls, fromConfig] = entry;
  return fromConfig(cls, config ?? {}) as unknown as TfOptimizer;
}
