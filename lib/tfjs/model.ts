// What the adapter reads from a tfjs-layers model: its Dense layers, their kernels, which of
// them read the same input, and the call hook that shows each layer's input. Typed here as the
// small slice of tfjs-layers' API it uses, so tfjs-layers is not a dependency.
import type { TfTensor, TfVariable } from './tf';

/** tfjs-layers' LayerVariable: a layer's weight (read() gives the engine's tf.Variable, typed as a Tensor). */
export interface LayerVariableLike {
  readonly originalName: string;
  readonly trainable: boolean;
  read(): TfTensor;
}

/** The engine variable behind a layer weight. */
export function variableOf(weight: LayerVariableLike): TfVariable {
  return weight.read() as TfVariable;
}

export type CallHook = (inputs: TfTensor | TfTensor[], kwargs: Record<string, unknown> | undefined) => void;

export interface LayerLike {
  readonly name: string;
  trainable: boolean;
  getClassName(): string;
  setCallHook(hook: CallHook): void;
  clearCallHook(): void;
  readonly inboundNodes?: readonly { readonly inputTensors: readonly { readonly id: number }[] }[];
  /** Dense */
  readonly kernel?: LayerVariableLike | null;
  /** A nested model used as a layer. */
  readonly layers?: readonly LayerLike[];
}

export interface LayersModelLike {
  readonly name: string;
  readonly layers: readonly LayerLike[];
  readonly trainableWeights: readonly LayerVariableLike[];
}

export interface DenseMatrixOptions {
  /** Orthogonalise this many blocks of the layer's units (its output features) separately. */
  rowBlocks?: number;
  /** Newton-Muon: a block-diagonal input statistic with this many blocks. */
  inputBlocks?: number;
}

export interface AttachOptions {
  /** The Dense layers (by name) whose kernels become matrices. Default: every trainable Dense layer. */
  layers?: readonly string[];
  /** Per layer name: rowBlocks / inputBlocks for its kernel. */
  matrixOptions?: Readonly<Record<string, DenseMatrixOptions>>;
}

export interface DenseMatrix {
  layer: LayerLike;
  kernel: LayerVariableLike;
  /** The kernel's model-relative name (stable across save and load), e.g. 'dense_Dense1/kernel'. */
  name: string;
  /** Layers that read the same input tensor share this key (the first such kernel's name). */
  inputKey: string;
  options: DenseMatrixOptions;
}

export function isLayersModel(value: unknown): value is LayersModelLike {
  const m = value as LayersModelLike;
  return m !== null && typeof m === 'object' && Array.isArray(m.layers) && Array.isArray(m.trainableWeights);
}

/** Every layer of the model, nested models' layers included, in model order. */
function allLayers(layers: readonly LayerLike[], out: LayerLike[] = []): LayerLike[] {
  for (const layer of layers) {
    if (Array.isArray(layer.layers)) allLayers(layer.layers, out);
    else out.push(layer);
  }
  return out;
}

/** The Dense kernels attach() registers, after checking the options name real Dense layers. */
export function denseMatrices(model: LayersModelLike, options: AttachOptions, what: string): DenseMatrix[] {
  const layers = allLayers(model.layers);
  const dense = layers.filter((l) => l.getClassName() === 'Dense');
  const byName = new Map(layers.map((l) => [l.name, l]));
  const checkName = (name: unknown, where: string): void => {
    const layer = typeof name === 'string' ? byName.get(name) : undefined;
    if (!layer) throw new TypeError(`${what}: ${where} names ${JSON.stringify(name)}, which is not a layer of model '${model.name}' (its Dense layers: ${dense.map((l) => l.name).join(', ') || 'none'})`);
    if (layer.getClassName() !== 'Dense') throw new TypeError(`${what}: ${where} names '${layer.name}', a ${layer.getClassName()} layer; only Dense kernels can be matrices`);
  };
  if (options.layers !== undefined && !Array.isArray(options.layers)) throw new TypeError(`${what}: options.layers must be an array of layer names`);
  options.layers?.forEach((name, i) => checkName(name, `options.layers[${i}]`));
  const matrixOptions = options.matrixOptions ?? {};
  if (matrixOptions === null || typeof matrixOptions !== 'object') throw new TypeError(`${what}: options.matrixOptions must be an object { layerName: { rowBlocks, inputBlocks } }`);
  for (const name of Object.keys(matrixOptions)) checkName(name, 'options.matrixOptions');

  const picked = options.layers ? dense.filter((l) => options.layers!.includes(l.name)) : dense.filter((l) => l.trainable);
  const keyOfInput = new Map<number, string>();
  return picked.map((layer) => {
    const kernel = layer.kernel;
    if (!kernel) throw new Error(`${what}: Dense layer '${layer.name}' has no kernel yet; build the model first (give its first layer an inputShape, or call model.build())`);
    if (!kernel.trainable || !layer.trainable) throw new Error(`${what}: Dense layer '${layer.name}' is not trainable; leave it out of options.layers`);
    const name = kernel.originalName;
    const nodes = layer.inboundNodes ?? [];
    // A layer called once reads one symbolic input: layers reading the same one share a statistic.
    // A layer called on several inputs averages them all in its own statistic.
    let inputKey = name;
    if (nodes.length === 1 && nodes[0].inputTensors.length === 1) {
      const id = nodes[0].inputTensors[0].id;
      inputKey = keyOfInput.get(id) ?? name;
      keyOfInput.set(id, inputKey);
    }
    return { layer, kernel, name, inputKey, options: { ...matrixOptions[layer.name] } };
  });
}
