// Joining a group through the store (store.ts): rank 0 serves it, every rank connects twice (a
// control connection for waits and data, a life-line connection for the join and heartbeats),
// registers with its fingerprint (version and configuration: a mismatch fails every rank at once,
// naming it) and waits until all ranks have joined. Afterwards the heartbeats keep the store's
// view of who is alive current, so that a failure can name the rank that died, hung or fell behind,
// and they deliver other ranks' failures to this one.
import * as os from 'os';

import { DistError } from './errors';
import { ALL_JOINED_KEY, GroupFailure, StoreClient, StoreRefusal, StoreServer, StoreStatus } from './store';

export interface RendezvousOptions {
  rank: number;
  worldSize: number;
  masterAddr: string;
  storePort: number;
  timeoutMs: number;
  fingerprint: Record<string, unknown>;
}

const LOOPBACK = /^(127\.|::1$|localhost$)/;

/** Heartbeat period: often enough to tell a hung rank within the timeout, at most once a second. */
export function beatPeriodMs(timeoutMs: number): number {
  return Math.max(50, Math.min(1000, Math.floor(timeoutMs / 8)));
}

export class Rendezvous {
  private beatTimer: NodeJS.Timeout | null = null;
  private failureListeners: ((f: GroupFailure) => void)[] = [];
  private failure: GroupFailure | null = null;
  private closing = false;
  /** Collectives this rank has issued so far (sent with each heartbeat). */
  private progress: () => number = () => 0;
  readonly beatMs: number;

  private constructor(readonly options: RendezvousOptions, readonly server: StoreServer | null, readonly control: StoreClient,
    private readonly life: StoreClient) {
    this.beatMs = beatPeriodMs(options.timeoutMs);
  }

  get where(): string {
    return this.control.where;
  }

  /** This host's address as rank 0 sees it (what Gloo should advertise to the other ranks). */
  get localAddress(): string {
    return this.control.localAddress;
  }

  static async join(options: RendezvousOptions): Promise<Rendezvous> {
    const { rank, worldSize, masterAddr, storePort, timeoutMs } = options;
    let server: StoreServer | null = null;
    if (rank === 0) {
      // Loopback masters bind loopback only; otherwise every interface (rank 0's MASTER_ADDR may
      // name any of them), as torchrun's store does.
      server = await StoreServer.listen({ host: LOOPBACK.test(masterAddr) ? masterAddr : '', port: storePort, worldSize, fingerprint: options.fingerprint });
    }
    const port = server?.port ?? storePort; // a group of one serves on any free port
    const where = `${masterAddr}:${port}`;
    const deadline = Date.now() + timeoutMs;
    const info = { rank, worldSize, fingerprint: options.fingerprint, pid: process.pid, host: os.hostname() };
    let clients: StoreClient[] = [];
    const closeAll = (): void => {
      for (const c of clients) c.close();
      clients = [];
    };
    try {
      // Connect and join, again while what answers is not (yet) rank 0's store: a connection
      // refused, or accepted and dropped (a proxy, a port being reused).
      for (;;) {
        const left = deadline - Date.now();
        try {
          clients.push(await StoreClient.connect(masterAddr, port, Math.max(1, left)));
          clients.push(await StoreClient.connect(masterAddr, port, Math.max(1, deadline - Date.now())));
          await clients[1].join(info, Math.max(100, Math.min(5000, deadline - Date.now())));
          break;
        } catch (error) {
          closeAll();
          if (error instanceof StoreRefusal || Date.now() >= deadline) {
            if (error instanceof StoreRefusal || /^cannot reach/.test((error as Error).message)) throw error;
            const why = (error as Error).message.startsWith('lost the connection') ? 'a connection was accepted, then dropped without an answer'
              : (error as Error).message.startsWith('no answer') ? 'a connection was accepted but nothing answered' : (error as Error).message;
            throw new DistError(`cannot reach the rendezvous store of rank 0 at ${where} within ${(timeoutMs / 1000).toFixed(1)} s (${why}); check MASTER_ADDR / MASTER_PORT and that rank 0 started`);
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      const [control, life] = clients;
      const rv = new Rendezvous(options, server, control, life);
      server?.onFailure((f) => rv.noteFailure(f));
      life.onLost((error) => rv.noteFailure({ rank: 0, message: error.message }));
      rv.startBeats();
      const joined = await control.get(ALL_JOINED_KEY, Math.max(1, deadline - Date.now()));
      if (joined === null) {
        const missing = (await control.status()).ranks.filter((r) => r.state === 'never-joined').map((r) => r.rank);
        throw new DistError(`rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')} never joined the rendezvous at ${control.where} within ${(timeoutMs / 1000).toFixed(1)} s ` +
          `(not started, or started with other MASTER_ADDR / MASTER_PORT / WORLD_SIZE)`);
      }
      return rv;
    } catch (error) {
      closeAll();
      server?.close();
      throw error;
    }
  }

  /** Where the heartbeats read this rank's collective count from. */
  reportProgress(progress: () => number): void {
    this.progress = progress;
  }

  /** Called once with the first failure of the group (another rank's or the store's loss). */
  onFailure(listener: (f: GroupFailure) => void): void {
    if (this.failure !== null) listener(this.failure);
    else this.failureListeners.push(listener);
  }

  private noteFailure(f: GroupFailure): void {
    if (this.failure !== null || this.closing) return;
    this.failure = f;
    for (const listener of this.failureListeners.splice(0)) listener(f);
  }

  private startBeats(): void {
    let inFlight = false;
    this.beatTimer = setInterval(() => {
      if (inFlight) return;
      inFlight = true;
      this.life.beat(this.options.rank, this.progress())
        .then((f) => { if (f !== null) this.noteFailure(f); })
        .catch(() => undefined) // a lost connection is reported through onLost
        .finally(() => { inFlight = false; });
    }, this.beatMs);
  }

  /** Tells every rank about this rank's failure (best effort: the store may be gone too). */
  async reportFailure(message: string): Promise<void> {
    try {
      await withTimeout(this.life.fail({ rank: this.options.rank, message }), 2000);
    } catch {
      // nothing to do: the other ranks learn from our exit instead
    }
  }

  /**
   * A sentence about the other ranks for an error message: who exited, stopped responding, or
   * is behind this rank's collectives; '' when nothing is wrong with them as far as the store
   * knows. A collective can fail (a connection reset by a dying peer) a moment before the store
   * sees that peer's connection close, so the store is asked again for up to settleMs until it
   * names a rank that is gone or silent.
   */
  async describePeers(settleMs = 1000): Promise<string> {
    const until = Date.now() + settleMs;
    for (;;) {
      let status: StoreStatus;
      try {
        status = await withTimeout(this.life.status(), 2000);
      } catch {
        return this.options.rank === 0 ? '' : `rank 0 (which serves the rendezvous store at ${this.where}) is unreachable: it exited or its machine is down`;
      }
      const sentence = describeStatus(status, this.options.rank, this.progress(), this.beatMs);
      if (/exited|stopped responding|never joined/.test(sentence) || Date.now() >= until) return sentence;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Leaves cleanly; rank 0 keeps serving until the others left too (at most the timeout). */
  async leave(): Promise<void> {
    this.closing = true;
    if (this.beatTimer !== null) clearInterval(this.beatTimer);
    this.beatTimer = null;
    try {
      await withTimeout(this.life.leave(this.options.rank), 2000);
    } catch {
      // the store is gone: nothing to leave
    }
    if (this.server !== null) {
      const deadline = Date.now() + this.options.timeoutMs;
      while (!this.server.allGone() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    }
    this.close();
  }

  /** Drops the connections (and the server) at once. */
  close(): void {
    this.closing = true;
    if (this.beatTimer !== null) clearInterval(this.beatTimer);
    this.beatTimer = null;
    this.life.close();
    this.control.close();
    this.server?.close();
  }
}

/** The status sentence of describePeers (exported for its unit test). */
export function describeStatus(status: StoreStatus, me: number, myOps: number, beatMs: number): string {
  const parts: string[] = [];
  for (const r of status.ranks) {
    if (r.rank === me) continue;
    if (r.state === 'exited') parts.push(`rank ${r.rank} exited`);
    else if (r.state === 'never-joined') parts.push(`rank ${r.rank} never joined`);
    else if (r.state === 'alive' && r.beatAgeMs !== null && r.beatAgeMs > 3 * beatMs + 500) {
      parts.push(`rank ${r.rank} stopped responding (no heartbeat for ${(r.beatAgeMs / 1000).toFixed(1)} s)`);
    } else if (r.state === 'alive' && r.ops < myOps) {
      parts.push(`rank ${r.rank} is alive but had issued ${r.ops} collectives at its last heartbeat, this rank ${myOps}`);
    }
  }
  if (parts.length === 0 && status.failure !== null && status.failure.rank !== me) parts.push(`rank ${status.failure.rank} failed: ${status.failure.message}`);
  return parts.join('; ');
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new DistError('timed out')), ms);
    promise.then((v) => { clearTimeout(timer); resolve(v); }, (e) => { clearTimeout(timer); reject(e as Error); });
  });
}
