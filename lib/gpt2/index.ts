export { GPT2 } from './model';
export { gpt2MatrixParams } from './matrix_params';
export type { ForwardBackwardOptions, GPT2Options } from './model';
export { GPT2_124M, parameterSpecs } from './config';
export type { GPT2Config, ParamSpec } from './config';
export { readSafetensors, readSafetensorsMetadata, writeSafetensors } from './safetensors';
export type { SafetensorsEntry } from './safetensors';
export {
  ATTENTION_ALGOS, attentionBackward, attentionForward, crossEntropy, embeddingBackward, embeddingForward, geluBackward, geluForward,
  rmsnormBackward, rmsnormForward, rotary,
} from './ops';
export type { AttentionAlgo, AttentionShape, RmsnormOptions } from './ops';
