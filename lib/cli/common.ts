// What the two CLIs share: their I/O seam, the usage-error type and exit convention, and the
// parsing of counts written with k / M / G suffixes.

/** What a CLI's main() writes to; process.stdout / process.stderr by default. */
export interface CliIO {
  stdout: { write(text: string): unknown; isTTY?: boolean };
  stderr: { write(text: string): unknown; isTTY?: boolean };
  /** Milliseconds clock (the progress bar's throttle). */
  now?: () => number;
}

/** A bad command line: printed with a hint to --help, exit status 2. */
export class UsageError extends Error {}

const SUFFIX: Record<string, number> = { '': 1, k: 1e3, K: 1e3, m: 1e6, M: 1e6, g: 1e9, G: 1e9 };

/** A number with an optional k/M/G suffix (powers of 1000): '524288', '5e5', '512k'; NaN if malformed. */
export function parseSuffixed(text: string): number {
  const m = /^(\d+(?:\.\d+)?(?:[eE]\d+)?)([kKmMgG]?)$/.exec(text.trim());
  return m === null ? NaN : Number(m[1]) * SUFFIX[m[2]];
}

/**
 * parse(argv), or the exit status 2 after writing a UsageError as one line on stderr (other
 * errors propagate: they are bugs, not bad input).
 */
export function parseOrUsageExit<T>(program: string, argv: readonly string[], parse: (argv: readonly string[]) => T, io: CliIO): T | number {
  try {
    return parse(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.stderr.write(`${program}: ${error.message} (see --help)\n`);
    return 2;
  }
}
