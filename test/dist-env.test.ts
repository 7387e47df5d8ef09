// The pieces of the data-parallel layer that need no second process: reading torchrun's, Open
// MPI's, MPICH's and SLURM's environments (and refusing inconsistent ones, naming the variable),
// the rendezvous store (joins, mismatches, waits, failures, a rank that vanishes), the sentences
// that name a culprit rank, and the balance of the sharded step's assignment.
import { launchEnvironment, firstSlurmHost } from '../lib/dist/env';
import { describeStatus } from '../lib/dist/rendezvous';
import { assignShards, planShards, shardUnits } from '../lib/dist/sharding';
import { ALL_JOINED_KEY, fingerprintDifference, GroupFailure, JoinInfo, StoreClient, StoreRefusal, StoreServer, StoreStatus } from '../lib/dist/store';
import type { MatrixParam } from '../lib/optim/matrix_optimizer';
import { zeros } from '../lib/tensor';

describe('launchEnvironment', () => {
  test('no launcher: null', () => {
    expect(launchEnvironment({ PATH: '/bin' })).toBeNull();
  });

  test('torchrun (and newton-muon-train --nproc-per-node)', () => {
    expect(launchEnvironment({ RANK: '3', WORLD_SIZE: '8', LOCAL_RANK: '3', LOCAL_WORLD_SIZE: '4', MASTER_ADDR: 'node1', MASTER_PORT: '29501' }))
      .toEqual({ source: 'torchrun', rank: 3, worldSize: 8, localRank: 3, localWorldSize: 4, masterAddr: 'node1', storePort: 29501 });
    // Under torchrun's agent store, MASTER_PORT is torchrun's: ours is the next one, or NM_STORE_PORT.
    const agent = { RANK: '0', WORLD_SIZE: '2', LOCAL_RANK: '0', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '29500', TORCHELASTIC_USE_AGENT_STORE: 'True' };
    expect(launchEnvironment(agent)?.storePort).toBe(29501);
    expect(launchEnvironment({ ...agent, NM_STORE_PORT: '40000' })?.storePort).toBe(40000);
    // One node and no MASTER_ADDR: loopback; no MASTER_PORT: 29500.
    expect(launchEnvironment({ RANK: '1', WORLD_SIZE: '2', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '2' }))
      .toMatchObject({ masterAddr: '127.0.0.1', storePort: 29500 });
  });

  test('Open MPI, MPICH / Intel MPI (hydra) and SLURM', () => {
    expect(launchEnvironment({ OMPI_COMM_WORLD_RANK: '5', OMPI_COMM_WORLD_SIZE: '8', OMPI_COMM_WORLD_LOCAL_RANK: '1', OMPI_COMM_WORLD_LOCAL_SIZE: '4', MASTER_ADDR: 'n0' }))
      .toEqual({ source: 'openmpi', rank: 5, worldSize: 8, localRank: 1, localWorldSize: 4, masterAddr: 'n0', storePort: 29500 });
    expect(launchEnvironment({ PMI_RANK: '2', PMI_SIZE: '4', MPI_LOCALRANKID: '0', MPI_LOCALNRANKS: '1', MASTER_ADDR: 'n0', MASTER_PORT: '1234' }))
      .toEqual({ source: 'mpich', rank: 2, worldSize: 4, localRank: 0, localWorldSize: 1, masterAddr: 'n0', storePort: 1234 });
    expect(launchEnvironment({ SLURM_PROCID: '6', SLURM_NTASKS: '8', SLURM_LOCALID: '2', SLURM_STEP_TASKS_PER_NODE: '4(x2)', SLURM_STEP_NODELIST: 'gpu[03-04]' }))
      .toEqual({ source: 'slurm', rank: 6, worldSize: 8, localRank: 2, localWorldSize: 4, masterAddr: 'gpu03', storePort: 29500 });
    // torchrun inside a SLURM allocation: RANK wins; mpiexec inside one: OMPI_* wins.
    expect(launchEnvironment({ RANK: '1', WORLD_SIZE: '2', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '2', SLURM_PROCID: '0', SLURM_NTASKS: '1' })?.source).toBe('torchrun');
    expect(launchEnvironment({ OMPI_COMM_WORLD_RANK: '0', OMPI_COMM_WORLD_SIZE: '1', SLURM_PROCID: '0', SLURM_NTASKS: '1' })?.source).toBe('openmpi');
  });

  test('SLURM node lists', () => {
    expect(firstSlurmHost('gpu[03-05,9],cpu1')).toBe('gpu03');
    expect(firstSlurmHost('node7')).toBe('node7');
    expect(firstSlurmHost('a1,b2')).toBe('a1');
    expect(firstSlurmHost('n[12]')).toBe('n12');
  });

  test('inconsistent environments are refused, naming the variable', () => {
    expect(() => launchEnvironment({ RANK: '2', WORLD_SIZE: '2' })).toThrow('RANK=2 is not below WORLD_SIZE=2 (ranks are 0..1)');
    expect(() => launchEnvironment({ RANK: '0' })).toThrow('RANK is set but WORLD_SIZE is not');
    expect(() => launchEnvironment({ WORLD_SIZE: '2' })).toThrow('WORLD_SIZE is set but RANK is not');
    expect(() => launchEnvironment({ RANK: '-1', WORLD_SIZE: '2' })).toThrow('RANK="-1" is not an integer >= 0');
    expect(() => launchEnvironment({ RANK: '0', WORLD_SIZE: 'two' })).toThrow('WORLD_SIZE="two" is not an integer >= 1');
    expect(() => launchEnvironment({ RANK: '0', WORLD_SIZE: '1', MASTER_PORT: '70000' })).toThrow('MASTER_PORT=70000 is not a TCP port');
    expect(() => launchEnvironment({ OMPI_COMM_WORLD_RANK: '4', OMPI_COMM_WORLD_SIZE: '4' })).toThrow('OMPI_COMM_WORLD_RANK=4 is not below OMPI_COMM_WORLD_SIZE=4');
    expect(() => launchEnvironment({ RANK: '0', WORLD_SIZE: '4', LOCAL_RANK: '0', LOCAL_WORLD_SIZE: '2' }))
      .toThrow('MASTER_ADDR is not set: a 4-rank job over several nodes (torchrun) needs the address of rank 0\'s host');
    expect(() => launchEnvironment({ RANK: '0', WORLD_SIZE: '4', LOCAL_RANK: '3', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: 'x' }))
      .toThrow('LOCAL_RANK=3 is not below the 2 ranks of this node');
  });
});

describe('the rendezvous store', () => {
  const fingerprint = { version: '1.0.0', lr: 0.03 };
  const join = (rank: number, over: Partial<JoinInfo> = {}): JoinInfo => ({ rank, worldSize: 2, fingerprint, pid: 100 + rank, host: 'h', ...over });
  let server: StoreServer;
  let clients: StoreClient[];
  let failures: GroupFailure[];
  beforeEach(async () => {
    server = await StoreServer.listen({ host: '127.0.0.1', port: 0, worldSize: 2, fingerprint });
    clients = [];
    failures = [];
    server.onFailure((f) => failures.push(f));
  });
  afterEach(() => {
    for (const c of clients) c.close();
    server.close();
  });
  const connect = async (): Promise<StoreClient> => {
    const c = await StoreClient.connect('127.0.0.1', server.port, 2000);
    clients.push(c);
    return c;
  };

  test('set, get (waiting for the key), add; a wait that times out answers null', async () => {
    const [a, b] = [await connect(), await connect()];
    const waiting = b.get('k', 2000);
    await a.set('k', 'v');
    expect((await waiting)!.toString()).toBe('v');
    expect(await b.get('missing', 50)).toBeNull();
    expect(await a.add('n', 2)).toBe(2);
    expect(await b.add('n', 3)).toBe(5);
  });

  test('both ranks join: the all-joined key appears; status, heartbeats and leaving', async () => {
    const [a, b] = [await connect(), await connect()];
    await a.join(join(0));
    expect(await a.get(ALL_JOINED_KEY, 20)).toBeNull();
    await b.join(join(1));
    expect(await a.get(ALL_JOINED_KEY, 20)).not.toBeNull();
    expect(await b.beat(1, 7)).toBeNull();
    const status = await a.status();
    expect(status.ranks.map((r) => [r.rank, r.state, r.ops])).toEqual([[0, 'alive', 0], [1, 'alive', 7]]);
    await a.leave(0);
    await b.leave(1);
    expect(server.allGone()).toBe(true);
    expect(failures).toEqual([]);
  });

  test('a WORLD_SIZE mismatch, a duplicate rank and another fingerprint are refused and fail the group', async () => {
    const a = await connect();
    await expect(a.join(join(1, { worldSize: 3 }))).rejects.toThrow(StoreRefusal);
    expect(failures[0].message).toBe('WORLD_SIZE mismatch: rank 1 (pid 101 on h) was started with WORLD_SIZE=3, rank 0 with WORLD_SIZE=2');
    // Every later wait for a missing key answers the failure at once.
    await expect(a.get('anything', 5000)).rejects.toThrow('WORLD_SIZE mismatch');

    const s2 = await StoreServer.listen({ host: '127.0.0.1', port: 0, worldSize: 2, fingerprint });
    try {
      const c = await StoreClient.connect('127.0.0.1', s2.port, 2000);
      const d = await StoreClient.connect('127.0.0.1', s2.port, 2000);
      clients.push(c, d);
      await c.join(join(1));
      await expect(d.join(join(1, { pid: 999 }))).rejects.toThrow('two processes claim rank 1: pid 101 on h and pid 999 on h');
    } finally {
      s2.close();
    }
    const s3 = await StoreServer.listen({ host: '127.0.0.1', port: 0, worldSize: 2, fingerprint });
    try {
      const e = await StoreClient.connect('127.0.0.1', s3.port, 2000);
      clients.push(e);
      await expect(e.join(join(1, { fingerprint: { version: '1.0.1', lr: 0.03 } })))
        .rejects.toThrow('rank 1 does not run the same version and configuration as rank 0: version is "1.0.1" on rank 1, "1.0.0" on rank 0');
    } finally {
      s3.close();
    }
  });

  test('a rank whose connection drops is recorded as exited, failing the group; waiters learn at once', async () => {
    const [a, b] = [await connect(), await connect()];
    await a.join(join(0));
    await b.join(join(1));
    const waiting = a.get('never-set', 10_000);
    b.close();
    await expect(waiting).rejects.toThrow('rank 1 exited (its connection to the rendezvous store closed)');
    expect(failures).toEqual([{ rank: 1, message: 'rank 1 exited (its connection to the rendezvous store closed)' }]);
    expect((await a.status()).ranks[1].state).toBe('exited');
    expect(await a.beat(0, 1)).toEqual(failures[0]);
  });

  test('the client reports a lost store, and cannot reach a port with no server', async () => {
    const a = await connect();
    const lost = new Promise<Error>((resolve) => a.onLost(resolve));
    server.close();
    expect((await lost).message).toMatch(/^lost the connection to the rendezvous store at 127\.0\.0\.1:\d+ \(rank 0 exited/);
    const port = server.port;
    await expect(StoreClient.connect('127.0.0.1', port, 300)).rejects.toThrow(`cannot reach the rendezvous store of rank 0 at 127.0.0.1:${port} within 0.3 s (ECONNREFUSED)`);
  });

  test('fingerprint differences name the first differing field', () => {
    expect(fingerprintDifference({ a: 1, b: [1, 2] }, { a: 1, b: [1, 2] }, 1)).toBeNull();
    expect(fingerprintDifference({ a: 1, b: 2 }, { a: 1, b: 3 }, 4)).toBe('b is 2 on rank 4, 3 on rank 0');
    expect(fingerprintDifference({ a: 1 }, { a: 1, c: 'x' }, 1)).toBe('c is missing on rank 1, "x" on rank 0');
  });
});

describe('naming the rank at fault', () => {
  const status = (ranks: Partial<StoreStatus['ranks'][number]>[], failure: GroupFailure | null = null): StoreStatus => ({
    worldSize: ranks.length, failure,
    ranks: ranks.map((r, rank) => ({ rank, state: 'alive', beatAgeMs: 10, ops: 5, host: 'h', pid: 1, ...r })),
  });
  test('exited, never joined, stopped responding, behind; nothing to say when all is well', () => {
    expect(describeStatus(status([{}, { state: 'exited' }]), 0, 5, 100)).toBe('rank 1 exited');
    expect(describeStatus(status([{}, {}, { state: 'never-joined', beatAgeMs: null }]), 0, 5, 100)).toBe('rank 2 never joined');
    expect(describeStatus(status([{}, { beatAgeMs: 3300 }]), 0, 5, 375)).toBe('rank 1 stopped responding (no heartbeat for 3.3 s)');
    expect(describeStatus(status([{}, { ops: 3 }]), 0, 5, 100)).toBe('rank 1 is alive but had issued 3 collectives at its last heartbeat, this rank 5');
    expect(describeStatus(status([{}, {}]), 0, 5, 100)).toBe('');
    expect(describeStatus(status([{}, {}], { rank: 1, message: 'boom' }), 0, 5, 100)).toBe('rank 1 failed: boom');
  });
});

describe('the sharded step\'s assignment', () => {
  // GPT-2's four block matrices per layer, as gpt2MatrixParams hands them to the optimizer.
  function gpt2Params(layers: number, C: number): MatrixParam[] {
    const t = (rows: number, cols: number) => ({ shape: [rows, cols] }) as unknown as MatrixParam['param'];
    const out: MatrixParam[] = [];
    for (let l = 0; l < layers; l++) {
      const p = `h.${l}`;
      out.push({ name: `${p}.c_attn`, param: t(3 * C, C), grad: t(3 * C, C), rowBlocks: 3 });
      out.push({ name: `${p}.attn.c_proj`, param: t(C, C), grad: t(C, C) });
      out.push({ name: `${p}.c_fc`, param: t(4 * C, C), grad: t(4 * C, C) });
      out.push({ name: `${p}.mlp.c_proj`, param: t(C, 4 * C), grad: t(C, 4 * C), inputBlocks: 4 });
    }
    return out;
  }

  test.each([true, false])('GPT-2 124M (12 layers) splits evenly over 1, 2, 3, 4, 6 and 8 ranks (Newton-Muon: %s)', (preconditioned) => {
    const units = shardUnits(gpt2Params(12, 768), preconditioned);
    expect(units).toHaveLength(48); // whole matrices: the fused q/k/v is one unit
    for (const world of [1, 2, 3, 4, 6, 8]) {
      const owners = assignShards(units, world);
      const load = new Array<number>(world).fill(0);
      owners.forEach((o, i) => { load[o] += units[i].cost; });
      expect({ world, spread: Math.max(...load) - Math.min(...load) }).toEqual({ world, spread: 0 });
    }
    for (const world of [5, 7]) {
      const owners = assignShards(units, world);
      const load = new Array<number>(world).fill(0);
      owners.forEach((o, i) => { load[o] += units[i].cost; });
      expect(Math.max(...load) / (load.reduce((a, b) => a + b) / world)).toBeLessThan(1.08);
    }
  });

  test('params that share an input statistic share an owner', () => {
    const w = zeros([8, 4]);
    const params: MatrixParam[] = [
      { name: 'a', param: w, grad: w, inputKey: 'x' }, { name: 'b', param: w, grad: w, inputKey: 'x' },
      { name: 'c', param: w, grad: w }, { name: 'd', param: w, grad: w },
    ];
    expect(shardUnits(params, true).map((u) => u.names)).toEqual([['a', 'b'], ['c'], ['d']]);
    expect(shardUnits(params, false).map((u) => u.names)).toEqual([['a'], ['b'], ['c'], ['d']]);
    const owners = planShards(params, true, 2);
    expect(owners.get('a')).toBe(owners.get('b'));
    expect(new Set(owners.values())).toEqual(new Set([0, 1]));
    w.dispose();
  });
});
