#!/usr/bin/env node
// newton-muon-train: the package's command line. Today it runs the one job the package can run
// end to end: a device check (which devices exist and why CUDA is not available, a matmul on the
// chosen device checked against float64 math, and proof that every tensor was freed). The GPT-2
// training options arrive with the trainer; the usage text lists only what works now.
import { devices, memoryStats, resolveDevice, synchronize } from '../device';
import type { DeviceName } from '../device';
import { gemm, matmul, sumOfSquares } from '../ops';
import { randn } from '../tensor';

const USAGE = `Usage: newton-muon-train [--device cpu|cuda|auto]

Runs the device check job: lists the devices (with the reason when CUDA is unavailable),
multiplies random 512x768 and 768x384 matrices on the chosen device, checks the product
against float64 math, measures GEMM throughput, and checks that every tensor was freed.
Exits with status 1 when a check fails or the device cannot be used.

Options:
  --device cpu|cuda|auto   where to run (default: auto, which is cuda when available, else cpu)
  -h, --help               show this text
  -v, --version            show the package version
`;

export interface TrainArgs {
  help: boolean;
  version: boolean;
  device: 'cpu' | 'cuda' | 'auto';
}

/** Thrown for a bad command line: the message is printed with the usage hint, status 2. */
export class UsageError extends Error {}

export function parseArgs(argv: readonly string[]): TrainArgs {
  const args: TrainArgs = { help: false, version: false, device: 'auto' };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '-h' || arg === '--help') {
      args.help = true;
    } else if (arg === '-v' || arg === '--version') {
      args.version = true;
    } else if (arg === '--device' || arg.startsWith('--device=')) {
      const value = arg === '--device' ? argv[++i] : arg.slice('--device='.length);
      if (value !== 'cpu' && value !== 'cuda' && value !== 'auto') {
        throw new UsageError(`--device must be cpu, cuda or auto (got ${value === undefined ? 'nothing' : `'${value}'`})`);
      }
      args.device = value;
    } else {
      throw new UsageError(`unknown argument '${arg}'`);
    }
  }
  return args;
}

/** The device check job; resolves to false when a check failed. */
export async function deviceCheck(spec: TrainArgs['device'], log: (line: string) => void): Promise<boolean> {
  for (const d of devices()) {
    log(`device ${d.name}: ${d.available ? 'available' : `unavailable (${d.reason})`}`);
  }
  const device: DeviceName = resolveDevice(spec, '--device');

  const [m, k, n] = [512, 768, 384];
  const a = randn([m, k], { seed: 1, device });
  const b = randn([k, n], { seed: 2, device });
  const c = matmul(a, b);
  const [ha, hb, hc] = await Promise.all([a.read(), b.read(), c.read()]);
  let maxRel = 0;
  for (let i = 0; i < m; i += 37) {
    for (let j = 0; j < n; j++) {
      let ref = 0;
      let mag = 0;
      for (let p = 0; p < k; p++) {
        ref += ha[i * k + p] * hb[p * n + j];
        mag += Math.abs(ha[i * k + p] * hb[p * n + j]);
      }
      maxRel = Math.max(maxRel, Math.abs(hc[i * n + j] - ref) / mag);
    }
  }
  const tolerance = 1e-4;
  log(`matmul [${m}x${k}] @ [${k}x${n}] on ${device}: max relative error vs float64 ${maxRel.toExponential(2)} ` +
    `(${maxRel <= tolerance ? 'ok' : `FAILED, limit ${tolerance}`})`);

  const reps = 10;
  const start = process.hrtime.bigint();
  for (let r = 0; r < reps; r++) gemm(c, a, b);
  await synchronize(device);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  log(`gemm throughput on ${device}: ${((2 * m * n * k * reps) / seconds / 1e9).toFixed(1)} GFLOP/s`);

  const total = sumOfSquares(c);
  log(`||C||_F^2 = ${(await total.read())[0].toExponential(4)}`);
  for (const t of [a, b, c, total]) t.dispose();
  await synchronize();
  const live = memoryStats()[device];
  const freed = live !== undefined && live.bytes === 0 && live.buffers === 0;
  log(`live ${device} memory after dispose: ${live?.bytes ?? '?'} bytes in ${live?.buffers ?? '?'} buffers ` +
    `(${freed ? 'ok' : 'FAILED, expected none'})`);
  return maxRel <= tolerance && freed;
}

export async function main(argv: readonly string[]): Promise<number> {
  let args: TrainArgs;
  try {
    args = parseArgs(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`newton-muon-train: ${error.message} (see --help)\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (args.version) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    process.stdout.write(`${(require('../../package.json') as { version: string }).version}\n`);
    return 0;
  }
  try {
    return (await deviceCheck(args.device, (line) => process.stdout.write(`${line}\n`))) ? 0 : 1;
  } catch (error) {
    process.stderr.write(`newton-muon-train: ${(error as Error).message}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((status) => { process.exitCode = status; });
}
