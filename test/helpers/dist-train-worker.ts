// One rank of test/dist-training.test.ts: joins the group from torchrun's environment and runs a
// Trainer on the spec's configuration (rank 0 writes the run folder, metrics.jsonl included).
//   node -r test/helpers/ts-register.js test/helpers/dist-train-worker.ts <spec.json>
// spec: { config, outDir, shard, stopAtStep?, resumeFrom?, timeoutMs }
import * as fs from 'fs';

import { initProcessGroup } from '../../lib/dist/process_group';
import { Trainer } from '../../lib/train/trainer';
import type { TrainConfig } from '../../lib/train/config';

interface Spec {
  config: TrainConfig;
  outDir: string;
  shard: boolean;
  stopAtStep?: number;
  resumeFrom?: string;
  timeoutMs: number;
}

async function main(): Promise<void> {
  const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8')) as Spec;
  const group = await initProcessGroup({ device: 'cpu', timeoutMs: spec.timeoutMs, fingerprint: { config: spec.config }, exitOnPeerFailure: true });
  const trainer = await Trainer.create({
    config: spec.config, outDir: spec.outDir, resumeFrom: spec.resumeFrom, group, shardOptimizer: spec.shard, onWarning: () => undefined,
  });
  try {
    await trainer.run({ stopAtStep: spec.stopAtStep });
  } finally {
    trainer.dispose();
  }
  await group.destroy();
}

main().then(() => process.exit(0), (error: Error) => {
  process.stderr.write(`worker: ${error.message}\n`);
  process.exit(1);
});
