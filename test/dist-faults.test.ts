// Faults and bad input in data-parallel runs of newton-muon-train on Gloo, each rank a process
// started with torchrun's environment (or by --nproc-per-node): a rank that is killed, hangs
// (SIGSTOP) or never starts makes every other process exit non-zero within --dist-timeout (3 s
// here, plus process start-up and the margin stated below) with a message naming the rank; no
// partial checkpoint is left. Bad input (WORLD_SIZE mismatch, a rank >= the world size, an
// unreachable master, another configuration, Gloo missing) gets one line and a non-zero exit.
// Every process runs under a hard timeout that kills its process group: nothing can hang the run.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';

import { writeShard } from '../lib/data/shard';
import { structuredTokens } from './helpers/tokens';
import { cleanEnv, describeWithGloo, Finished, freePort, killAll, lines, Proc, spawnNode, torchrunEnv, TRAIN_CLI } from './helpers/dist';

const TIMEOUT_S = 3;
/** Detection happens within the timeout; exiting (flushing, closing sockets) takes a little more. */
const EXIT_MARGIN_MS = 2500;
const HARD_TIMEOUT_MS = 60_000;

let root: string;
const timings: string[] = [];

/** A long run (it is interrupted), checkpointing every 10 steps. */
function trainArgs(out: string, extra: string[] = []): string[] {
  return ['--data', path.join(root, 'data', 'toy_train_*.bin'), '--val-data', path.join(root, 'data', 'toy_val_*.bin'),
    '--vocab-size', '64', '--micro-batch', '2', '--seq-len', '16', '--batch-size', '64', '--val-tokens', '64', '--val-every', '1000',
    '--steps', '600', '--save-every', '10', '--device', 'cpu', '--dist-timeout', String(TIMEOUT_S), '--out', out, ...extra];
}

function startRanks(world: number, port: number, out: string, started: number[] = [...Array(world).keys()], extraEnv: (rank: number) => Record<string, string> = () => ({})): Proc[] {
  return started.map((rank) => spawnNode(TRAIN_CLI, trainArgs(out), torchrunEnv(rank, world, port, extraEnv(rank)), HARD_TIMEOUT_MS));
}

/** One line on stderr, 'newton-muon-train: ...', no stack trace; non-zero exit; not hung. */
function expectOneLine(r: Finished, ...parts: (string | RegExp)[]): string {
  expect({ hung: r.hung, failed: r.code !== 0 || r.signal !== null }).toEqual({ hung: false, failed: true });
  const errors = lines(r.stderr);
  expect(errors).toHaveLength(1);
  expect(errors[0]).toMatch(/^newton-muon-train: /);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  for (const part of parts) expect(errors[0]).toMatch(part);
  return errors[0];
}

/** Every checkpoint folder is complete, and no temp folder is left. */
function expectNoPartialCheckpoint(out: string): void {
  const dir = path.join(out, 'checkpoints');
  if (!fs.existsSync(dir)) return;
  for (const entry of fs.readdirSync(dir)) {
    expect(entry).toMatch(/^step_\d{6}$/);
    expect(fs.readdirSync(path.join(dir, entry)).sort()).toEqual(['metrics.jsonl', 'model.safetensors', 'optimizer.safetensors', 'state.json']);
  }
}

/** The pids of pid's children (from /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'nm-dist-faults-'));
  fs.mkdirSync(path.join(root, 'data'));
  writeShard(path.join(root, 'data', 'toy_val_000000.bin'), structuredTokens(1000, 1));
  writeShard(path.join(root, 'data', 'toy_train_000001.bin'), structuredTokens(200_000, 2));
});
afterEach(killAll);
afterAll(() => {
  // eslint-disable-next-line no-console
  if (timings.length > 0) console.log(`fault handling (--dist-timeout ${TIMEOUT_S} s):\n  ${timings.join('\n  ')}`);
  fs.rmSync(root, { recursive: true, force: true });
});

describeWithGloo('a rank that fails', () => {
  test('killed (SIGKILL) mid-run: rank 0 exits non-zero at once, naming rank 1; no partial checkpoint', async () => {
    const out = path.join(root, 'killed');
    const [r0, r1] = startRanks(2, await freePort(), out);
    await r0.waitFor(/step 30\/600/, 40_000);
    const t = Date.now();
    process.kill(r1.pid, 'SIGKILL');
    const a = await r0.done;
    const b = await r1.done;
    timings.push(`rank 1 killed: rank 0 exited ${Date.now() - t} ms later`);
    expect(b.signal).toBe('SIGKILL');
    expectOneLine(a, /^newton-muon-train: rank 0: /, /rank 1 exited/);
    expect(Date.now() - t).toBeLessThan(TIMEOUT_S * 1000 + EXIT_MARGIN_MS);
    expectNoPartialCheckpoint(out);
  }, 90_000);

  test('hung (SIGSTOP) mid-run: rank 0 exits non-zero within the timeout, naming rank 1; rank 1, continued, exits non-zero too', async () => {
    const out = path.join(root, 'hung');
    const [r0, r1] = startRanks(2, await freePort(), out);
    await r0.waitFor(/step 30\/600/, 40_000);
    const t = Date.now();
    process.kill(r1.pid, 'SIGSTOP');
    const a = await r0.done;
    const detected = Date.now() - t;
    timings.push(`rank 1 stopped: rank 0 exited ${detected} ms later`);
    expectOneLine(a, /^newton-muon-train: rank 0: /, /rank 1 stopped responding \(no heartbeat for [\d.]+ s\)/);
    expect(detected).toBeLessThan(TIMEOUT_S * 1000 + EXIT_MARGIN_MS);
    expect(detected).toBeGreaterThanOrEqual(TIMEOUT_S * 1000 - 500);
    const t2 = Date.now();
    process.kill(r1.pid, 'SIGCONT');
    const b = await r1.done;
    timings.push(`rank 1 continued after rank 0 left: it exited ${Date.now() - t2} ms later`);
    expectOneLine(b, /^newton-muon-train: rank 1: /, /rank 0/);
    expect(Date.now() - t2).toBeLessThan(TIMEOUT_S * 1000 + EXIT_MARGIN_MS);
    expectNoPartialCheckpoint(out);
  }, 90_000);

  test('never started: rank 0 exits non-zero within the timeout, naming rank 1', async () => {
    const out = path.join(root, 'never');
    const [r0] = startRanks(2, await freePort(), out, [0]);
    const a = await r0.done;
    timings.push(`rank 1 never started: rank 0 exited after ${a.ms} ms (start-up included)`);
    expectOneLine(a, /rank 1 never joined the rendezvous at 127\.0\.0\.1:\d+ within 3\.0 s/);
    expect(a.ms).toBeLessThan(TIMEOUT_S * 1000 + EXIT_MARGIN_MS + 3000);
    expect(fs.existsSync(out)).toBe(false);
  }, 90_000);

  test('--nproc-per-node 2 with a rank killed: the launcher stops the other, exits non-zero naming the rank', async () => {
    const out = path.join(root, 'launched');
    const launcher = spawnNode(TRAIN_CLI, [...trainArgs(out), '--nproc-per-node', '2'], cleanEnv(), HARD_TIMEOUT_MS);
    await launcher.waitFor(/step 30\/600/, 40_000);
    const ranks = childrenOf(launcher.pid);
    expect(ranks).toHaveLength(2);
    const rank1 = ranks.find((pid) => fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes('RANK=1'))!;
    const t = Date.now();
    process.kill(rank1, 'SIGKILL');
    const r = await launcher.done;
    timings.push(`launcher: rank 1 killed, launcher exited ${Date.now() - t} ms later`);
    expect(r.code).toBe(1);
    const last = lines(r.stderr).pop()!;
    expect(last).toBe(`newton-muon-train: rank 1 (pid ${rank1}) was killed by SIGKILL; the other ranks were stopped`);
    expect(Date.now() - t).toBeLessThan(TIMEOUT_S * 1000 + EXIT_MARGIN_MS);
    for (const pid of ranks) expect({ pid, alive: alive(pid) }).toEqual({ pid, alive: false });
    expectNoPartialCheckpoint(out);
  }, 90_000);

  test('--nproc-per-node 2 with a rank hung: the launcher exits non-zero within the timeout, naming the rank that reported it', async () => {
    const out = path.join(root, 'launched-hung');
    const launcher = spawnNode(TRAIN_CLI, [...trainArgs(out), '--nproc-per-node', '2'], cleanEnv(), HARD_TIMEOUT_MS);
    await launcher.waitFor(/step 30\/600/, 40_000);
    const ranks = childrenOf(launcher.pid);
    const rank1 = ranks.find((pid) => fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes('RANK=1'))!;
    const t = Date.now();
    process.kill(rank1, 'SIGSTOP');
    const r = await launcher.done;
    timings.push(`launcher: rank 1 stopped, launcher exited ${Date.now() - t} ms later`);
    expect(r.code).toBe(1);
    expect(lines(r.stderr).pop()).toMatch(/^newton-muon-train: rank 0 \(pid \d+\) exited with status 1: rank 0: .*rank 1 stopped responding.*; the other ranks were stopped$/);
    expect(Date.now() - t).toBeLessThan(TIMEOUT_S * 1000 + EXIT_MARGIN_MS + 1000);
    for (const pid of ranks) expect({ pid, alive: alive(pid) }).toEqual({ pid, alive: false });
    expectNoPartialCheckpoint(out);
  }, 90_000);
});

describeWithGloo('bad input: one line, non-zero exit', () => {
  const run = async (rank: number, world: number, port: number, extra: Record<string, string> = {}, args?: string[]): Promise<Finished> =>
    spawnNode(TRAIN_CLI, args ?? trainArgs(path.join(root, `bad-${rank}-${world}-${port}`)), torchrunEnv(rank, world, port, extra), HARD_TIMEOUT_MS).done;

  test('a WORLD_SIZE mismatch fails both ranks at once, naming it', async () => {
    const port = await freePort();
    const [a, b] = await Promise.all([run(0, 2, port), run(1, 3, port)]);
    expectOneLine(b, /WORLD_SIZE mismatch: rank 1 \(pid \d+ on .*\) was started with WORLD_SIZE=3, rank 0 with WORLD_SIZE=2/);
    expectOneLine(a, /WORLD_SIZE mismatch/);
    expect(Math.max(a.ms, b.ms)).toBeLessThan(TIMEOUT_S * 1000 + 3000);
  }, 60_000);

  test('another configuration on one rank fails both, naming the option', async () => {
    const port = await freePort();
    const out = path.join(root, 'config-mismatch');
    const [a, b] = await Promise.all([
      spawnNode(TRAIN_CLI, trainArgs(out), torchrunEnv(0, 2, port), HARD_TIMEOUT_MS).done,
      spawnNode(TRAIN_CLI, [...trainArgs(out), '--lr', '0.01'], torchrunEnv(1, 2, port), HARD_TIMEOUT_MS).done,
    ]);
    expectOneLine(b, /rank 1 does not run the same version and configuration as rank 0: option lr is 0\.01 on rank 1, missing on rank 0/);
    expectOneLine(a, /option lr/);
  }, 60_000);

  test('a rank >= the world size', async () => {
    expectOneLine(await run(2, 2, 29500), 'newton-muon-train: RANK=2 is not below WORLD_SIZE=2 (ranks are 0..1)');
    const slurm = await spawnNode(TRAIN_CLI, ['--device', 'cpu'], cleanEnv({ SLURM_PROCID: '4', SLURM_NTASKS: '4' }), HARD_TIMEOUT_MS).done;
    expectOneLine(slurm, 'newton-muon-train: SLURM_PROCID=4 is not below SLURM_NTASKS=4 (ranks are 0..3)');
  }, 60_000);

  test('an unreachable master: nothing listening, or something that never answers', async () => {
    const port = await freePort();
    const refused = await run(1, 2, port);
    expectOneLine(refused, new RegExp(`cannot reach the rendezvous store of rank 0 at 127\\.0\\.0\\.1:${port} within 3\\.0 s \\(ECONNREFUSED\\)`));
    const silent = net.createServer(() => undefined); // accepts connections, never answers
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const mute = await run(1, 2, (silent.address() as net.AddressInfo).port);
      expectOneLine(mute, /cannot reach the rendezvous store of rank 0 at .* within 3\.0 s \(a connection was accepted but nothing answered\)/);
    } finally {
      silent.close();
    }
  }, 60_000);

  test('Gloo missing: the module not found, or its libgloo.so.0 missing', async () => {
    const missing = await run(0, 1, await freePort(), { NM_GLOO_MODULE: path.join(root, 'no', 'newton_muon_gloo.so') });
    expectOneLine(missing, /process group backend 'gloo' \(for cpu tensors\) is unavailable: the Gloo module newton_muon_gloo\.so was not found .*npm run build:gloo.*apt-get install libgloo-dev/);
    // A module that links a libgloo.so.0 that is not there (built here, the library then removed).
    const dir = path.join(root, 'fake-gloo');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'lib.c'), 'int nm_fake_gloo(void) { return 1; }\n');
    fs.writeFileSync(path.join(dir, 'module.c'), 'int nm_fake_gloo(void); int nm_gloo_comm_ops(void) { return nm_fake_gloo(); }\n');
    const lib = path.join(dir, 'libgloo.so.0');
    execFileSync('cc', ['-shared', '-fPIC', '-o', lib, path.join(dir, 'lib.c')]);
    execFileSync('cc', ['-shared', '-fPIC', '-o', path.join(dir, 'newton_muon_gloo.so'), path.join(dir, 'module.c'), lib]);
    fs.rmSync(lib);
    const noLib = await run(0, 1, await freePort(), { NM_GLOO_MODULE: path.join(dir, 'newton_muon_gloo.so') });
    expectOneLine(noLib, /is unavailable: libgloo\.so\.0 not found: apt-get install libgloo0/);
  }, 60_000);

  test('what rank 0 alone reads is wrong (a missing --resume checkpoint, a taken --out): every rank fails with its words and kind', async () => {
    // Rank 0 plans the runs (reads the checkpoint) and prepares the run folder; the others must
    // fail with the same line instead of waiting for it in a collective. No "error:" prefix:
    // the CheckpointError / DataError kept its type across the group.
    const missing = path.join(root, 'no-such-checkpoint');
    let port = await freePort();
    const resumed = await Promise.all([0, 1].map((rank) => run(rank, 2, port, {}, [...trainArgs(path.join(root, 'resume-out')), '--resume', missing])));
    for (const r of resumed) expectOneLine(r, `newton-muon-train: rank ${resumed.indexOf(r)}: checkpoint '${missing}' does not exist`);

    const taken = path.join(root, 'taken-out');
    fs.mkdirSync(taken);
    fs.writeFileSync(path.join(taken, 'metrics.jsonl'), '');
    port = await freePort();
    const fresh = await Promise.all([0, 1].map((rank) => run(rank, 2, port, {}, trainArgs(taken))));
    for (const r of fresh) expectOneLine(r, new RegExp(`^newton-muon-train: rank ${fresh.indexOf(r)}: the output folder '.*taken-out' already holds a run`));
  }, 60_000);

  test('--nproc-per-node under another launcher', async () => {
    const r = await spawnNode(TRAIN_CLI, ['--nproc-per-node', '2', '--device', 'cpu'], torchrunEnv(1, 2, 29500), HARD_TIMEOUT_MS).done;
    expectOneLine(r, '--nproc-per-node starts its own ranks, but this process is already rank 1 of 2 (torchrun)');
    expect(r.code).toBe(2);
  }, 30_000);
});
