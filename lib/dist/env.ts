// Where this process sits in a data-parallel job, read from the launcher's environment:
//   torchrun (and newton-muon-train --nproc-per-node): RANK, WORLD_SIZE, LOCAL_RANK,
//     LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT
//   Open MPI's mpiexec: OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE
//   MPICH / Intel MPI (hydra): PMI_RANK, PMI_SIZE, MPI_LOCALRANKID, MPI_LOCALNRANKS
//   SLURM's srun: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE /
//     SLURM_STEP_TASKS_PER_NODE, and the first host of SLURM_STEP_NODELIST / SLURM_JOB_NODELIST
// in that order of precedence (torchrun inside a SLURM allocation sets RANK; mpiexec inside one
// sets OMPI_*). MASTER_ADDR / MASTER_PORT always win when set: MPI launchers set neither, and
// SLURM's node list gives a host name only. The rendezvous store listens on MASTER_PORT, or on
// NM_STORE_PORT when set, or on MASTER_PORT + 1 under torchrun's agent store (torchrun serves its
// own store on MASTER_PORT then: TORCHELASTIC_USE_AGENT_STORE=True).
import { DistError } from './errors';

/** Which launcher set the environment ('single': none; a group of one made by initProcessGroup). */
export type LaunchSource = 'torchrun' | 'openmpi' | 'mpich' | 'slurm' | 'single';

export interface LaunchInfo {
  source: LaunchSource;
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  /** Host of rank 0 (its rendezvous store). */
  masterAddr: string;
  /** The port of the rendezvous store (see the file comment). */
  storePort: number;
}

/** Default MASTER_PORT when a launcher names none (torchrun's default too). */
export const DEFAULT_MASTER_PORT = 29500;

type Env = Record<string, string | undefined>;

/**
 * Each launcher's variables, in order of precedence (torchrun inside a SLURM allocation sets
 * RANK; mpiexec inside one sets OMPI_*). SLURM's tasks per node come from a count list instead.
 */
const SOURCES: { source: Exclude<LaunchSource, 'single'>; rank: string; size: string; localRank: string; localSize: string | null }[] = [
  { source: 'torchrun', rank: 'RANK', size: 'WORLD_SIZE', localRank: 'LOCAL_RANK', localSize: 'LOCAL_WORLD_SIZE' },
  { source: 'openmpi', rank: 'OMPI_COMM_WORLD_RANK', size: 'OMPI_COMM_WORLD_SIZE', localRank: 'OMPI_COMM_WORLD_LOCAL_RANK', localSize: 'OMPI_COMM_WORLD_LOCAL_SIZE' },
  { source: 'mpich', rank: 'PMI_RANK', size: 'PMI_SIZE', localRank: 'MPI_LOCALRANKID', localSize: 'MPI_LOCALNRANKS' },
  { source: 'slurm', rank: 'SLURM_PROCID', size: 'SLURM_NTASKS', localRank: 'SLURM_LOCALID', localSize: null },
];

function integer(env: Env, name: string, min: number): number {
  const text = env[name];
  if (text === undefined) throw new DistError(`${name} is not set`);
  const value = Number(text);
  if (text.trim() === '' || !Number.isSafeInteger(value) || value < min) {
    throw new DistError(`${name}=${JSON.stringify(text)} is not an integer >= ${min}`);
  }
  return value;
}

function optionalInteger(env: Env, name: string, min: number): number | undefined {
  return env[name] === undefined || env[name] === '' ? undefined : integer(env, name, min);
}

/** The first host of a SLURM node list: "node[03-05,9],gpu1" -> "node03". */
export function firstSlurmHost(list: string): string {
  const m = /^([^,[]+)(?:\[([^\],-]+)[^\]]*\])?/.exec(list.trim());
  if (m === null) return '';
  return m[2] === undefined ? m[1] : `${m[1]}${m[2]}`;
}

/** SLURM_NTASKS_PER_NODE-style counts "4(x2),3" -> tasks on the first node (4). */
function firstCount(text: string | undefined): number | undefined {
  if (text === undefined || text === '') return undefined;
  const n = Number(/^(\d+)/.exec(text)?.[1]);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

function port(env: Env): number {
  if (env.MASTER_PORT === undefined || env.MASTER_PORT === '') return DEFAULT_MASTER_PORT;
  const p = integer(env, 'MASTER_PORT', 1);
  if (p > 65535) throw new DistError(`MASTER_PORT=${p} is not a TCP port (1..65535)`);
  return p;
}

function storePort(env: Env, masterPort: number): number {
  if (env.NM_STORE_PORT !== undefined && env.NM_STORE_PORT !== '') {
    const p = integer(env, 'NM_STORE_PORT', 1);
    if (p > 65535) throw new DistError(`NM_STORE_PORT=${p} is not a TCP port (1..65535)`);
    return p;
  }
  if ((env.TORCHELASTIC_USE_AGENT_STORE ?? '').toLowerCase() === 'true') {
    if (masterPort >= 65535) throw new DistError(`MASTER_PORT=${masterPort}: torchrun's store holds it and MASTER_PORT + 1 is no port; set NM_STORE_PORT`);
    return masterPort + 1;
  }
  return masterPort;
}

/**
 * The launch environment of this process, or null when no launcher set one (a single-process
 * run). Throws a DistError naming the variable when the environment is inconsistent.
 */
export function launchEnvironment(env: Env = process.env): LaunchInfo | null {
  // torchrun's pair counts if either is set (the other missing is an error); SLURM's only when
  // both are (a batch script's shell has SLURM_PROCID too).
  const present = (s: (typeof SOURCES)[number]): boolean => (s.source === 'torchrun' ? env.RANK !== undefined || env.WORLD_SIZE !== undefined
    : env[s.rank] !== undefined && (s.source !== 'slurm' || env[s.size] !== undefined));
  const source = SOURCES.find(present)?.source;
  if (source === undefined) return null;
  const vars = SOURCES.find((s) => s.source === source)!;
  if (source === 'torchrun') {
    if (env.RANK === undefined) throw new DistError('WORLD_SIZE is set but RANK is not (a torchrun-style launch sets both)');
    if (env.WORLD_SIZE === undefined) throw new DistError('RANK is set but WORLD_SIZE is not (a torchrun-style launch sets both)');
  }
  const rank = integer(env, vars.rank, 0);
  const worldSize = integer(env, vars.size, 1);
  let localRank = optionalInteger(env, vars.localRank, 0);
  let localWorldSize = vars.localSize === null ? undefined : optionalInteger(env, vars.localSize, 1);
  let masterAddr = env.MASTER_ADDR;
  if (source === 'slurm') {
    localWorldSize = firstCount(env.SLURM_STEP_TASKS_PER_NODE) ?? firstCount(env.SLURM_NTASKS_PER_NODE);
    if (masterAddr === undefined || masterAddr === '') {
      masterAddr = firstSlurmHost(env.SLURM_STEP_NODELIST ?? env.SLURM_JOB_NODELIST ?? env.SLURM_NODELIST ?? '') || undefined;
    }
  }
  const [rankName, sizeName, localName] = [vars.rank, vars.size, vars.localRank];
  if (rank >= worldSize) throw new DistError(`${rankName}=${rank} is not below ${sizeName}=${worldSize} (ranks are 0..${worldSize - 1})`);
  // Without local information every rank is taken to be on its own node.
  localRank ??= worldSize === 1 ? 0 : (localWorldSize === worldSize ? rank : 0);
  localWorldSize ??= 1;
  if (localRank >= localWorldSize && localWorldSize > 1) {
    throw new DistError(`${localName}=${localRank} is not below the ${localWorldSize} ranks of this node`);
  }
  if (masterAddr === undefined || masterAddr === '') {
    if (worldSize === 1 || localWorldSize === worldSize) masterAddr = '127.0.0.1';
    else throw new DistError(`MASTER_ADDR is not set: a ${worldSize}-rank job over several nodes (${source}) needs the address of rank 0's host`);
  }
  const masterPort = port(env);
  return { source, rank, worldSize, localRank, localWorldSize: Math.max(localWorldSize, localRank + 1), masterAddr, storePort: storePort(env, masterPort) };
}
