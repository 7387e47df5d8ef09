// The rendezvous store: a small key-value server that rank 0 runs on its event loop (as
// torchrun's TCPStore does) and every rank reaches over TCP at MASTER_ADDR:port. It carries the
// control plane only: the bootstrap (NCCL's unique id, Gloo's connectFullMesh addresses through
// csrc/gloo/store_client.cc), the check that every rank runs the same version and configuration,
// heartbeats and failure notices (so an error can name the rank that died or hung), and small
// JSON such as a resumed run's state. Tensors never travel here: they move through NCCL / Gloo.
//
// Wire format (csrc/gloo/store_client.h documents the same; integers little-endian):
//   request  = u32 length | u8 command | u32 key length | key | u32 value length | value |
//              u32 timeout ms
//   response = u32 length | u8 status | u32 value length | value
// A connection's requests are answered one at a time, in order (a GET that waits holds up the
// ones behind it, so heartbeats use a connection of their own).
import * as net from 'net';

import { DistError } from './errors';

export const COMMAND = { SET: 1, GET: 2, ADD: 3, JOIN: 4, BEAT: 5, FAIL: 6, STATUS: 7, LEAVE: 8 } as const;
export const STATUS = { OK: 0, TIMEOUT: 1, ERROR: 2 } as const;

/** The key set when every rank has joined. */
export const ALL_JOINED_KEY = '__nm/all-joined';

export interface JoinInfo {
  rank: number;
  worldSize: number;
  /** What every rank must share (package version, configuration...): compared with rank 0's. */
  fingerprint: Record<string, unknown>;
  pid: number;
  host: string;
}

export type RankState = 'never-joined' | 'alive' | 'exited' | 'left';

export interface RankStatus {
  rank: number;
  state: RankState;
  /** Milliseconds since its last heartbeat (null before it joined). */
  beatAgeMs: number | null;
  /** Collectives it had issued at its last heartbeat. */
  ops: number;
  host: string | null;
  pid: number | null;
}

/** The first failure anyone reported (later ones are consequences). */
export interface GroupFailure {
  rank: number;
  message: string;
}

export interface StoreStatus {
  worldSize: number;
  ranks: RankStatus[];
  failure: GroupFailure | null;
}

interface Request {
  command: number;
  key: string;
  value: Buffer;
  timeoutMs: number;
}

interface Response {
  status: number;
  value: Buffer;
}

function frame(payload: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt32LE(payload.length, 0);
  return Buffer.concat([header, payload]);
}

export function encodeRequest(r: Request): Buffer {
  const key = Buffer.from(r.key, 'utf8');
  const head = Buffer.alloc(5);
  head.writeUInt8(r.command, 0);
  head.writeUInt32LE(key.length, 1);
  const valueLen = Buffer.alloc(4);
  valueLen.writeUInt32LE(r.value.length, 0);
  const timeout = Buffer.alloc(4);
  timeout.writeUInt32LE(Math.max(0, Math.min(0xffffffff, Math.round(r.timeoutMs))), 0);
  return frame(Buffer.concat([head, key, valueLen, r.value, timeout]));
}

function decodeRequest(p: Buffer): Request {
  if (p.length < 13) throw new DistError('malformed store request');
  const command = p.readUInt8(0);
  const keyLen = p.readUInt32LE(1);
  if (5 + keyLen + 8 > p.length) throw new DistError('malformed store request');
  const key = p.toString('utf8', 5, 5 + keyLen);
  const valueLen = p.readUInt32LE(5 + keyLen);
  const valueStart = 9 + keyLen;
  if (valueStart + valueLen + 4 !== p.length) throw new DistError('malformed store request');
  return { command, key, value: p.subarray(valueStart, valueStart + valueLen), timeoutMs: p.readUInt32LE(valueStart + valueLen) };
}

function encodeResponse(status: number, value: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(status, 0);
  head.writeUInt32LE(value.length, 1);
  return frame(Buffer.concat([head, value]));
}

function decodeResponse(p: Buffer): Response {
  if (p.length < 5 || p.readUInt32LE(1) !== p.length - 5) throw new DistError('malformed store response');
  return { status: p.readUInt8(0), value: p.subarray(5) };
}

/** Splits a byte stream into length-prefixed payloads. */
class FrameSplitter {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const out: Buffer[] = [];
    while (this.pending.length >= 4) {
      const length = this.pending.readUInt32LE(0);
      if (this.pending.length < 4 + length) break;
      out.push(this.pending.subarray(4, 4 + length));
      this.pending = this.pending.subarray(4 + length);
    }
    return out;
  }
}

const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value), 'utf8');

/** The store answered with a refusal (a mismatch, a failed group): final, never retried. */
export class StoreRefusal extends DistError {}

/** Extra time a reply may take beyond the request's own wait. */
const REPLY_SLACK_MS = 5000;

/** The first field where two fingerprints differ, as "name is A on rank r, B on rank 0". */
export function fingerprintDifference(mine: Record<string, unknown>, theirs: Record<string, unknown>, rank: number): string | null {
  const keys = [...new Set([...Object.keys(theirs), ...Object.keys(mine)])];
  for (const key of keys) {
    const a = JSON.stringify(mine[key]);
    const b = JSON.stringify(theirs[key]);
    if (a !== b) return `${key} is ${a ?? 'missing'} on rank ${rank}, ${b ?? 'missing'} on rank 0`;
  }
  return null;
}

interface RankRecord {
  state: RankState;
  lastBeat: number;
  ops: number;
  host: string | null;
  pid: number | null;
}

interface Waiter {
  done: (r: Response) => void;
}

/** The server half: rank 0 only. */
export class StoreServer {
  private readonly data = new Map<string, Buffer>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  private readonly ranks: RankRecord[];
  private failure: GroupFailure | null = null;
  private readonly failureListeners: ((f: GroupFailure) => void)[] = [];
  private readonly sockets = new Set<net.Socket>();
  private closed = false;

  private constructor(private readonly server: net.Server, readonly port: number, readonly worldSize: number,
    private readonly fingerprint: Record<string, unknown>) {
    this.ranks = Array.from({ length: worldSize }, () => ({ state: 'never-joined' as RankState, lastBeat: 0, ops: 0, host: null, pid: null }));
  }

  /**
   * Serves on host:port ('' = every interface; port 0 = any free port). Fails with a DistError
   * that says what to do when the port is taken.
   */
  static listen(options: { host: string; port: number; worldSize: number; fingerprint: Record<string, unknown> }): Promise<StoreServer> {
    return new Promise((resolve, reject) => {
      const server = net.createServer();
      server.once('error', (error: NodeJS.ErrnoException) => {
        const where = `${options.host || '*'}:${options.port}`;
        reject(new DistError(error.code === 'EADDRINUSE'
          ? `rank 0 cannot serve the rendezvous store on ${where}: the port is in use (another job, or torchrun's own store; set MASTER_PORT, or NM_STORE_PORT, to a free port)`
          : `rank 0 cannot serve the rendezvous store on ${where}: ${error.code ?? error.message}`));
      });
      server.listen({ host: options.host === '' ? undefined : options.host, port: options.port }, () => {
        const address = server.address() as net.AddressInfo;
        const store = new StoreServer(server, address.port, options.worldSize, options.fingerprint);
        server.on('connection', (socket) => store.serve(socket));
        resolve(store);
      });
    });
  }

  /** Called once with the first failure anyone reports (a rank's error, a lost connection). */
  onFailure(listener: (f: GroupFailure) => void): void {
    if (this.failure !== null) listener(this.failure);
    else this.failureListeners.push(listener);
  }

  /** Records the first failure: pending and later GETs of missing keys answer it at once. */
  recordFailure(failure: GroupFailure): void {
    if (this.failure !== null || this.closed) return;
    this.failure = failure;
    for (const [key, set] of this.waiters) {
      for (const w of set) w.done({ status: STATUS.ERROR, value: Buffer.from(failure.message) });
      this.waiters.delete(key);
    }
    for (const listener of this.failureListeners.splice(0)) listener(failure);
  }

  status(): StoreStatus {
    const now = Date.now();
    return {
      worldSize: this.worldSize,
      failure: this.failure,
      ranks: this.ranks.map((r, rank) => ({
        rank, state: r.state, beatAgeMs: r.state === 'never-joined' ? null : now - r.lastBeat, ops: r.ops, host: r.host, pid: r.pid,
      })),
    };
  }

  /** True once every rank left (or exited). */
  allGone(): boolean {
    return this.ranks.every((r) => r.state === 'left' || r.state === 'exited' || r.state === 'never-joined');
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const set of this.waiters.values()) for (const w of set) w.done({ status: STATUS.ERROR, value: Buffer.from('the rendezvous store closed') });
    this.waiters.clear();
    for (const socket of this.sockets) socket.destroy();
    this.server.close();
  }

  private serve(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.setNoDelay(true);
    const splitter = new FrameSplitter();
    let chain = Promise.resolve();
    let boundRank: number | null = null;
    let alive = true;
    socket.on('data', (chunk: Buffer) => {
      let payloads: Buffer[];
      try {
        payloads = splitter.push(chunk);
      } catch {
        socket.destroy();
        return;
      }
      for (const payload of payloads) {
        chain = chain.then(async () => {
          let response: Response;
          try {
            const request = decodeRequest(payload);
            response = await this.handle(request, (rank) => { boundRank = rank; });
          } catch (error) {
            response = { status: STATUS.ERROR, value: Buffer.from((error as Error).message) };
          }
          if (alive) socket.write(encodeResponse(response.status, response.value));
        });
      }
    });
    const gone = (): void => {
      if (!alive) return;
      alive = false;
      this.sockets.delete(socket);
      if (boundRank !== null && this.ranks[boundRank].state === 'alive') {
        this.ranks[boundRank].state = 'exited';
        this.recordFailure({ rank: boundRank, message: `rank ${boundRank} exited (its connection to the rendezvous store closed)` });
      }
    };
    socket.on('close', gone);
    socket.on('error', gone);
  }

  private wait(key: string, timeoutMs: number): Promise<Response> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | null = null;
      const waiter: Waiter = {
        done: (r) => {
          if (timer !== null) clearTimeout(timer);
          resolve(r);
        },
      };
      let set = this.waiters.get(key);
      if (!set) {
        set = new Set();
        this.waiters.set(key, set);
      }
      set.add(waiter);
      timer = setTimeout(() => {
        this.waiters.get(key)?.delete(waiter);
        resolve({ status: STATUS.TIMEOUT, value: Buffer.alloc(0) });
      }, timeoutMs);
    });
  }

  private put(key: string, value: Buffer): void {
    this.data.set(key, Buffer.from(value));
    const set = this.waiters.get(key);
    if (!set) return;
    this.waiters.delete(key);
    for (const w of set) w.done({ status: STATUS.OK, value: Buffer.from(value) });
  }

  private async handle(r: Request, bind: (rank: number) => void): Promise<Response> {
    const ok = (value?: Buffer): Response => ({ status: STATUS.OK, value: value ?? Buffer.alloc(0) });
    switch (r.command) {
      case COMMAND.SET:
        this.put(r.key, r.value);
        return ok();
      case COMMAND.GET: {
        const value = this.data.get(r.key);
        if (value !== undefined) return ok(value);
        if (this.failure !== null) return { status: STATUS.ERROR, value: Buffer.from(this.failure.message) };
        return this.wait(r.key, r.timeoutMs);
      }
      case COMMAND.ADD: {
        const next = Number(this.data.get(r.key)?.toString() ?? '0') + Number(r.value.toString());
        this.put(r.key, Buffer.from(String(next)));
        return ok(Buffer.from(String(next)));
      }
      case COMMAND.JOIN:
        return this.join(JSON.parse(r.value.toString()) as JoinInfo, bind);
      case COMMAND.BEAT: {
        const { rank, ops } = JSON.parse(r.value.toString()) as { rank: number; ops: number };
        const record = this.ranks[rank];
        if (record !== undefined && record.state === 'alive') {
          record.lastBeat = Date.now();
          record.ops = ops;
        }
        return ok(json({ failure: this.failure }));
      }
      case COMMAND.FAIL: {
        const failure = JSON.parse(r.value.toString()) as GroupFailure;
        this.recordFailure(failure);
        return ok();
      }
      case COMMAND.STATUS:
        return ok(json(this.status()));
      case COMMAND.LEAVE: {
        const { rank } = JSON.parse(r.value.toString()) as { rank: number };
        if (this.ranks[rank] !== undefined) this.ranks[rank].state = 'left';
        return ok();
      }
      default:
        return { status: STATUS.ERROR, value: Buffer.from(`unknown store command ${r.command}`) };
    }
  }

  private join(info: JoinInfo, bind: (rank: number) => void): Response {
    const refuse = (message: string): Response => {
      this.recordFailure({ rank: info.rank, message });
      return { status: STATUS.ERROR, value: Buffer.from(message) };
    };
    const who = `rank ${info.rank} (pid ${info.pid} on ${info.host})`;
    if (info.worldSize !== this.worldSize) {
      return refuse(`WORLD_SIZE mismatch: ${who} was started with WORLD_SIZE=${info.worldSize}, rank 0 with WORLD_SIZE=${this.worldSize}`);
    }
    if (!Number.isSafeInteger(info.rank) || info.rank < 0 || info.rank >= this.worldSize) {
      return refuse(`${who} is not a rank of a group of ${this.worldSize}`);
    }
    const record = this.ranks[info.rank];
    if (record.state !== 'never-joined') {
      return refuse(`two processes claim rank ${info.rank}: pid ${record.pid} on ${record.host} and pid ${info.pid} on ${info.host} (check RANK / the launcher)`);
    }
    const difference = fingerprintDifference(info.fingerprint, this.fingerprint, info.rank);
    if (difference !== null) return refuse(`rank ${info.rank} does not run the same version and configuration as rank 0: ${difference}`);
    Object.assign(record, { state: 'alive', lastBeat: Date.now(), host: info.host, pid: info.pid });
    bind(info.rank);
    if (this.ranks.every((r) => r.state !== 'never-joined')) this.put(ALL_JOINED_KEY, Buffer.from('1'));
    return { status: STATUS.OK, value: Buffer.alloc(0) };
  }
}

const RETRYABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND', 'EPIPE']);

/** The client half: every rank (rank 0 reaches its own server over loopback). */
export class StoreClient {
  private readonly splitter = new FrameSplitter();
  private readonly pending: { resolve: (r: Response) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }[] = [];
  private closedByUs = false;
  private lost: Error | null = null;
  private readonly closeListeners: ((error: Error) => void)[] = [];

  private constructor(private readonly socket: net.Socket, readonly where: string) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      for (const payload of this.splitter.push(chunk)) {
        const waiter = this.pending.shift();
        if (waiter !== undefined) clearTimeout(waiter.timer);
        try {
          waiter?.resolve(decodeResponse(payload));
        } catch (error) {
          waiter?.reject(error as Error);
        }
      }
    });
    const gone = (): void => this.drop(`lost the connection to the rendezvous store at ${where} (rank 0 exited or its machine is unreachable)`);
    socket.on('close', gone);
    socket.on('error', gone);
  }

  private drop(message: string): void {
    if (this.lost !== null) return;
    this.lost = new DistError(message);
    this.socket.destroy();
    for (const w of this.pending.splice(0)) {
      clearTimeout(w.timer);
      w.reject(this.lost);
    }
    if (!this.closedByUs) for (const listener of this.closeListeners.splice(0)) listener(this.lost);
  }

  /** Connects to host:port, retrying while the server is not up yet, until timeoutMs. */
  static async connect(host: string, port: number, timeoutMs: number): Promise<StoreClient> {
    const where = `${host}:${port}`;
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      try {
        const socket = await connectOnce(host, port, Math.min(left, 2000));
        return new StoreClient(socket, where);
      } catch (error) {
        const e = error as NodeJS.ErrnoException;
        last = e.code ?? e.message;
        if (e.code !== undefined && !RETRYABLE.has(e.code)) break;
      }
      await new Promise((r) => setTimeout(r, Math.min(100, Math.max(0, deadline - Date.now()))));
    }
    throw new DistError(`cannot reach the rendezvous store of rank 0 at ${where} within ${(timeoutMs / 1000).toFixed(1)} s (${last || 'timed out'}); check MASTER_ADDR / MASTER_PORT and that rank 0 started`);
  }

  /** The local address of this connection: an address of this host that routes to rank 0. */
  get localAddress(): string {
    return this.socket.localAddress ?? '';
  }

  /** Called once if the connection drops without close(). */
  onLost(listener: (error: Error) => void): void {
    if (this.lost !== null && !this.closedByUs) listener(this.lost);
    else this.closeListeners.push(listener);
  }

  /** One round trip; a reply that does not come within the wait + slack drops the connection. */
  private request(command: number, key: string, value: Buffer, timeoutMs = 0, replyMs = timeoutMs + REPLY_SLACK_MS): Promise<Response> {
    if (this.lost !== null) return Promise.reject(this.lost);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.drop(`no answer from the rendezvous store at ${this.where} within ${(replyMs / 1000).toFixed(1)} s (is it rank 0's store?)`);
      }, replyMs);
      this.pending.push({ resolve, reject, timer });
      this.socket.write(encodeRequest({ command, key, value, timeoutMs }));
    });
  }

  private static check(r: Response, what: string): Buffer {
    if (r.status === STATUS.OK) return r.value;
    if (r.status === STATUS.ERROR) throw new StoreRefusal(r.value.toString());
    throw new DistError(`${what}: timed out`);
  }

  async set(key: string, value: Buffer | string): Promise<void> {
    StoreClient.check(await this.request(COMMAND.SET, key, Buffer.from(value)), `set ${key}`);
  }

  /** The value of key once it exists; null when it did not appear within timeoutMs. */
  async get(key: string, timeoutMs: number): Promise<Buffer | null> {
    const r = await this.request(COMMAND.GET, key, Buffer.alloc(0), timeoutMs);
    if (r.status === STATUS.TIMEOUT) return null;
    return StoreClient.check(r, `get ${key}`);
  }

  async add(key: string, delta: number): Promise<number> {
    return Number(StoreClient.check(await this.request(COMMAND.ADD, key, Buffer.from(String(delta))), `add ${key}`).toString());
  }

  /**
   * Registers this process as info.rank; throws the server's reason (mismatch, duplicate rank) as
   * a StoreRefusal, or a DistError when no answer came within replyMs.
   */
  async join(info: JoinInfo, replyMs = REPLY_SLACK_MS): Promise<void> {
    StoreClient.check(await this.request(COMMAND.JOIN, '', json(info), 0, replyMs), 'join');
  }

  /** Heartbeat; answers the group's failure, if any. */
  async beat(rank: number, ops: number): Promise<GroupFailure | null> {
    const value = StoreClient.check(await this.request(COMMAND.BEAT, '', json({ rank, ops })), 'beat');
    return (JSON.parse(value.toString()) as { failure: GroupFailure | null }).failure;
  }

  async fail(failure: GroupFailure): Promise<void> {
    StoreClient.check(await this.request(COMMAND.FAIL, '', json(failure)), 'fail');
  }

  async status(): Promise<StoreStatus> {
    return JSON.parse(StoreClient.check(await this.request(COMMAND.STATUS, '', Buffer.alloc(0)), 'status').toString()) as StoreStatus;
  }

  async leave(rank: number): Promise<void> {
    StoreClient.check(await this.request(COMMAND.LEAVE, '', json({ rank })), 'leave');
  }

  close(): void {
    this.closedByUs = true;
    this.socket.destroy();
  }
}

function connectOnce(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    });
  });
}
