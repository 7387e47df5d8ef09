// The local launcher behind `newton-muon-train --nproc-per-node N`: starts N ranks of the same
// command on this machine with torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT = a free port), so each rank takes the GPU
// of its local rank. When a rank fails (non-zero exit or a signal), the others are stopped
// (SIGTERM, then SIGKILL after a grace period) and the launcher returns 1 with one line naming
// the rank and its error (its last stderr line). The ranks run in their own process group, so a
// Ctrl-C reaches them once, through the launcher: SIGINT / SIGTERM to the launcher are passed to
// every rank (SIGINT: the trainer checkpoints and stops at the same step on every rank, status 130).
import { ChildProcess, spawn } from 'child_process';
import * as net from 'net';

export interface LaunchOptions {
  /** Ranks to start. */
  nproc: number;
  /** Program and arguments of every rank (the launcher adds the environment). */
  command: string[];
  /** Extra environment for the ranks (on top of process.env). */
  env?: Record<string, string>;
  /** Where rank errors and the launcher's summary go. */
  stderr: { write(text: string | Uint8Array): unknown };
  /** Seconds between SIGTERM and SIGKILL for ranks that do not stop. Default 5. */
  graceS?: number;
  /** The one-line prefix of the summary ("newton-muon-train"). */
  program: string;
}

/**
 * In a rank started by launchLocal: exits this process (status 1, one line on stderr) when the
 * launcher is gone (its ranks run in their own process group, so nothing else would stop them
 * when the launcher is killed). A no-op elsewhere.
 */
export function exitWithLauncher(stderr: { write(text: string): unknown }, env: Record<string, string | undefined> = process.env): void {
  const launcher = Number(env.NM_LAUNCHER_PID);
  if (!Number.isSafeInteger(launcher) || launcher <= 0 || process.ppid !== launcher) return;
  setInterval(() => {
    if (process.ppid === launcher) return;
    stderr.write(`newton-muon-train: rank ${env.RANK ?? '?'}: the launcher (pid ${launcher}) is gone; stopping\n`);
    process.exit(1);
  }, 500).unref();
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

interface Rank {
  rank: number;
  child: ChildProcess;
  lastError: string;
  exit: { code: number | null; signal: NodeJS.Signals | null } | null;
}

function describeExit(r: Rank): string {
  const how = r.exit!.signal !== null ? `was killed by ${r.exit!.signal}` : `exited with status ${r.exit!.code}`;
  return `rank ${r.rank} (pid ${r.child.pid}) ${how}${r.lastError ? `: ${r.lastError}` : ''}`;
}

/** Runs the ranks to completion; resolves to the launcher's exit status. */
export async function launchLocal(options: LaunchOptions): Promise<number> {
  const port = await freePort();
  const n = options.nproc;
  const ranks: Rank[] = [];
  let firstFailure: Rank | null = null;
  let stopping = false;
  let killTimer: NodeJS.Timeout | null = null;
  const stopOthers = (): void => {
    if (stopping) return;
    stopping = true;
    for (const r of ranks) {
      if (r.exit !== null) continue;
      r.child.kill('SIGTERM');
      r.child.kill('SIGCONT'); // a stopped (hung) rank must wake up to receive it
    }
    killTimer = setTimeout(() => {
      for (const r of ranks) if (r.exit === null) r.child.kill('SIGKILL');
    }, (options.graceS ?? 5) * 1000);
  };
  let interrupted = false;
  const forward = (signal: NodeJS.Signals) => () => {
    if (signal === 'SIGINT') interrupted = true;
    for (const r of ranks) if (r.exit === null) r.child.kill(signal);
  };
  const onInt = forward('SIGINT');
  const onTerm = forward('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  try {
    const done = Array.from({ length: n }, (_, rank) => new Promise<void>((resolve) => {
      const child = spawn(options.command[0], options.command.slice(1), {
        stdio: ['ignore', 'inherit', 'pipe'],
        detached: true,
        env: {
          ...process.env, ...options.env,
          RANK: String(rank), WORLD_SIZE: String(n), LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: String(n),
          MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), NM_STORE_PORT: '', NM_LAUNCHER_PID: String(process.pid),
        },
      });
      const record: Rank = { rank, child, lastError: '', exit: null };
      ranks.push(record);
      let partial = '';
      child.stderr!.on('data', (chunk: Buffer) => {
        options.stderr.write(chunk.toString());
        const lines = (partial + chunk.toString()).split('\n');
        partial = lines.pop() ?? '';
        const last = lines.map((l) => l.trim()).filter((l) => l !== '').pop();
        if (last !== undefined) record.lastError = last.replace(/^newton-muon-train: /, '');
      });
      child.on('error', (error) => {
        record.lastError = error.message;
      });
      child.on('close', (code, signal) => {
        if (partial.trim() !== '') record.lastError = partial.trim().replace(/^newton-muon-train: /, '');
        record.exit = { code, signal };
        const stoppedAsAsked = interrupted && code === 130;
        if ((code !== 0 || signal !== null) && !stoppedAsAsked && firstFailure === null && !stopping) {
          firstFailure = record;
          stopOthers();
        }
        resolve();
      });
    }));
    await Promise.all(done);
  } finally {
    if (killTimer !== null) clearTimeout(killTimer);
    process.removeListener('SIGINT', onInt);
    process.removeListener('SIGTERM', onTerm);
  }
  if (firstFailure !== null) {
    options.stderr.write(`${options.program}: ${describeExit(firstFailure)}; the other ranks were stopped\n`);
    return 1;
  }
  const bad = ranks.find((r) => r.exit!.code !== 0 || r.exit!.signal !== null);
  if (bad !== undefined) {
    // Stopped by a signal we forwarded (Ctrl-C): the trainer's own status (130 after a stop).
    return bad.exit!.code ?? 1;
  }
  return 0;
}
