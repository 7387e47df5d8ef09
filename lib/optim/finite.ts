// checkFinite: before an update is enqueued, prove every gradient is finite, so a NaN/Inf
// never reaches the weights. One sum per gradient (accumulated in double by both backends, so
// large finite values do not overflow it, while NaN or Inf always poisons it) into one small
// tensor, then one read.
import { dtypeCode } from '../dtype';
import { native } from '../native';
import { empty, Tensor } from '../tensor';

type Grads = readonly { name: string; grad: Tensor }[];

export async function assertGradientsFinite(op: string, grads: Grads): Promise<void> {
  if (grads.length === 0) return;
  const sums = enqueueSums(op, grads);
  try {
    checkSums(op, grads, await sums.read());
  } finally {
    sums.dispose();
  }
}

/** The same check, waiting on the calling thread (for stepSync()). */
export function assertGradientsFiniteSync(op: string, grads: Grads): void {
  if (grads.length === 0) return;
  const sums = enqueueSums(op, grads);
  try {
    checkSums(op, grads, sums.readSync());
  } finally {
    sums.dispose();
  }
}

function enqueueSums(op: string, grads: Grads): Tensor {
  const sums = empty([grads.length], { dtype: 'f32', device: grads[0].grad.device });
  grads.forEach(({ grad }, i) => {
    native.reduce(sums.handle(op), sums.byteOffset + 4 * i, grad.handle(op), grad.byteOffset, dtypeCode(grad.dtype), grad.numel, false);
  });
  return sums;
}

function checkSums(op: string, grads: Grads, host: ArrayLike<number>): void {
  grads.forEach(({ name }, i) => {
    if (!Number.isFinite(host[i])) {
      throw new Error(`${op}: the gradient of '${name}' is not finite (it contains NaN or Inf: its sum is ${host[i]}); ` +
        'no parameter was updated');
    }
  });
}
