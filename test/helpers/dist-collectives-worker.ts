// One rank of test/dist-collectives.test.ts: joins the group from torchrun's environment, runs
// every case of dist-collective-cases.ts in order and writes each output's stored bits to
// <outDir>/<rank>-<case>.bin for the test to compare.
//   node -r test/helpers/ts-register.js test/helpers/dist-collectives-worker.ts <outDir> <seed> [cpu|cuda]
import * as fs from 'fs';
import * as path from 'path';

import { initProcessGroup } from '../../lib/dist/process_group';
import { Tensor, empty, tensor } from '../../lib/tensor';
import { collectiveCases, inputLength, inputOf } from './dist-collective-cases';

async function main(): Promise<void> {
  const [outDir, seedText, deviceText] = process.argv.slice(2);
  const seed = Number(seedText);
  const device = deviceText === 'cuda' ? 'cuda' : 'cpu';
  const group = await initProcessGroup({ device, timeoutMs: 20000 });
  const W = group.worldSize;
  const cases = collectiveCases(W);
  for (let index = 0; index < cases.length; index++) {
    const c = cases[index];
    const input = tensor(inputOf(c, index, group.rank, W, seed), [inputLength(c, W)], { dtype: c.dtype, device });
    let out: Tensor;
    const temps: Tensor[] = [input];
    switch (c.op) {
      case 'allReduce':
        out = c.inPlace ? group.allReduce(input, { op: c.reduce }) : group.allReduce(input, { op: c.reduce, out: empty([c.n], { dtype: c.dtype, device }) });
        break;
      case 'reduceScatter':
        out = group.reduceScatter(empty([c.n], { dtype: c.dtype, device }), input, { op: c.reduce });
        break;
      case 'allGather': {
        out = empty([c.n * W], { dtype: c.dtype, device });
        if (c.inPlace) {
          // The input is this rank's own slot of the output.
          const own = out.slice(group.rank * c.n, (group.rank + 1) * c.n);
          temps.push(own);
          const { copy } = await import('../../lib/ops');
          copy(own, input);
          group.allGather(out, own);
        } else {
          group.allGather(out, input);
        }
        break;
      }
      case 'broadcast':
        out = group.broadcast(input, { root: c.root });
        break;
    }
    const raw = await out.readRaw();
    fs.writeFileSync(path.join(outDir, `${group.rank}-${index}.bin`), Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength));
    for (const t of temps) t.dispose();
    if (out !== input) out.dispose();
  }
  group.barrier();
  await group.synchronize();
  await group.destroy();
}

main().then(() => process.exit(0), (error: Error) => {
  process.stderr.write(`worker: ${error.message}\n`);
  process.exit(1);
});
