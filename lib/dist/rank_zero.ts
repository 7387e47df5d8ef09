// Work that one rank does for the whole group (reading a checkpoint, planning the runs of a
// command line): rank 0 runs it, and every rank gets its result, or fails with its error, so a
// bad file or a bad option stops every rank with the same message instead of leaving the others
// waiting in the next collective.
import type { ProcessGroup } from './process_group';

/** The error classes that keep their type across the group, by a name of the caller's choice. */
export type RankZeroErrorTypes = Readonly<Record<string, new (message: string) => Error>>;

interface Outcome<T> {
  value?: T;
  error?: { kind: string | null; message: string };
}

/**
 * Runs fn on rank 0 and hands its (JSON-serialisable) result to every rank. When fn throws,
 * every rank, rank 0 included, throws an error with its message: of the same class when that
 * class is one of errorTypes, else a plain Error. A group of one runs fn as it is.
 */
export async function onRankZero<T>(group: ProcessGroup, fn: () => T | Promise<T>, errorTypes: RankZeroErrorTypes): Promise<T> {
  if (group.worldSize === 1) return fn();
  let outcome: Outcome<T> | undefined;
  if (group.rank === 0) {
    try {
      outcome = { value: await fn() };
    } catch (error) {
      const kind = Object.keys(errorTypes).find((k) => error instanceof errorTypes[k]) ?? null;
      outcome = { error: { kind, message: (error as Error)?.message ?? String(error) } };
    }
  }
  outcome = await group.broadcastObject(outcome, 0);
  if (outcome.error !== undefined) {
    // Rank 0's store holds the message, and rank 0 exits on this error, closing the store: wait
    // until every rank has read it (bounded by the group's timeout), or a slower rank would fail
    // with a lost connection instead of the message.
    await group.storeBarrier('rank-zero-failure').catch(() => undefined);
    const type = outcome.error.kind !== null ? errorTypes[outcome.error.kind] : Error;
    throw new type(outcome.error.message);
  }
  return outcome.value as T;
}
