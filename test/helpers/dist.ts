// What the multi-process suites share: starting rank processes that run the TypeScript sources
// (ts-register.js), torchrun's environment for them, hard timeouts that kill a process's whole
// group so nothing can hang the run, and the Gloo gate: these suites need the Gloo module, which
// needs Debian's libgloo-dev at build time (CI installs it; elsewhere, without it, the suites say
// why and skip unless NM_TEST_DIST=1 or CI=true demand them).
import { ChildProcess, spawn } from 'child_process';
import * as path from 'path';

import { processGroupBackends } from '../../lib/dist/backends';

export const ROOT = path.join(__dirname, '..', '..');
export const REGISTER = path.join(__dirname, 'ts-register.js');
export const TRAIN_CLI = path.join(ROOT, 'lib', 'cli', 'train.ts');

/** Variables of any launcher this test process itself may run under: never passed to ranks. */
const LAUNCH_VARS = /^(RANK|WORLD_SIZE|LOCAL_RANK|LOCAL_WORLD_SIZE|MASTER_ADDR|MASTER_PORT|NM_STORE_PORT|NM_LAUNCHER_PID|TORCHELASTIC_.*|SLURM_.*|OMPI_.*|PMI_.*|MPI_LOCAL.*)$/;

export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !LAUNCH_VARS.test(k)) env[k] = v;
  return { ...env, ...extra };
}

/** torchrun's variables for one rank on this machine. */
export function torchrunEnv(rank: number, world: number, port: number, extra: Record<string, string> = {}): Record<string, string> {
  return cleanEnv({
    RANK: String(rank), WORLD_SIZE: String(world), LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: String(world),
    MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), ...extra,
  });
}

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Milliseconds from spawn to exit. */
  ms: number;
  /** Killed by the hard timeout (a hang). */
  hung: boolean;
}

export interface Proc {
  child: ChildProcess;
  pid: number;
  done: Promise<Finished>;
  /** Resolves once stdout + stderr contain text matching re. */
  waitFor(re: RegExp, timeoutMs: number): Promise<void>;
}

const live = new Set<ChildProcess>();

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    // already gone
  }
}

/** Kills every process these helpers started that still runs (call from afterAll / afterEach). */
export function killAll(): void {
  for (const child of live) killGroup(child, 'SIGKILL');
  live.clear();
}

/**
 * node -r ts-register <script> <args> in its own process group, output captured; killed with its
 * group (SIGKILL) after hardTimeoutMs, which marks it hung.
 */
export function spawnNode(script: string, args: string[], env: Record<string, string>, hardTimeoutMs: number): Proc {
  const t0 = Date.now();
  const child = spawn(process.execPath, ['-r', REGISTER, script, ...args], { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let stdout = '';
  let stderr = '';
  const watchers: { re: RegExp; resolve: () => void }[] = [];
  const check = (): void => {
    for (const w of watchers.splice(0)) {
      if (w.re.test(stdout + stderr)) w.resolve();
      else watchers.push(w);
    }
  };
  child.stdout!.on('data', (c: Buffer) => { stdout += c.toString(); check(); });
  child.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); check(); });
  let hung = false;
  const timer = setTimeout(() => {
    hung = true;
    killGroup(child, 'SIGKILL');
  }, hardTimeoutMs);
  const done = new Promise<Finished>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0, hung });
    });
  });
  const waitFor = (re: RegExp, timeoutMs: number): Promise<void> => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${re} (output so far: ${stdout}${stderr})`)), timeoutMs);
    watchers.push({ re, resolve: () => { clearTimeout(t); resolve(); } });
    check();
  });
  return { child, pid: child.pid!, done, waitFor };
}

export { freePort } from '../../lib/dist/launcher';

/** stderr as lines (without empty ones). */
export function lines(text: string): string[] {
  return text.split('\n').filter((l) => l.trim() !== '');
}

const required = process.env.CI === 'true' || process.env.NM_TEST_DIST === '1';

/**
 * describe() for suites that need a process-group backend: they run when it is available; when it
 * is not, they fail in CI (or with NM_TEST_DIST=1, or for nccl under NM_TEST_DEVICE=cuda, where
 * the GPU kit expects it) and otherwise skip, saying why.
 */
export function describeWithBackend(backend: 'gloo' | 'nccl', name: string, fn: () => void): void {
  const info = processGroupBackends().find((b) => b.name === backend)!;
  if (info.available) {
    describe(name, fn);
  } else if (required || backend === 'nccl') {
    describe(name, () => {
      test(`the ${backend} process-group backend is available`, () => {
        throw new Error(`${backend} is unavailable: ${info.reason}`);
      });
    });
  } else {
    // eslint-disable-next-line no-console
    console.warn(`skipping '${name}': ${backend} is unavailable (${info.reason}); set NM_TEST_DIST=1 to make this a failure`);
    describe.skip(name, fn);
  }
}

/** describeWithBackend('gloo', ...): the CPU suites. */
export function describeWithGloo(name: string, fn: () => void): void {
  describeWithBackend('gloo', name, fn);
}
