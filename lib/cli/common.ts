// What the two CLIs share: their I/O seam, the usage-error type and exit convention, the walk
// over argv with option values, and the parsing of choices and of counts written with k / M / G
// suffixes.

/** What a CLI's main() writes to; process.stdout / process.stderr by default. */
export interface CliIO {
  stdout: { write(text: string): unknown; isTTY?: boolean };
  stderr: { write(text: string): unknown; isTTY?: boolean };
  /** Milliseconds clock (the progress bar's throttle). */
  now?: () => number;
}

/** A bad command line: printed with a hint to --help, exit status 2. */
export class UsageError extends Error {}

/**
 * Calls onArg(flag, value, raw) for each argument in order. flag is the option name ('--out' for
 * both '--out x' and '--out=x'); value() reads the option's value (after '=' or the next
 * argument), refusing a missing one or one that looks like another option (negative numbers pass).
 */
export function walkArgs(argv: readonly string[], onArg: (flag: string, value: () => string, raw: string) => void): void {
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i];
    const eq = raw.startsWith('--') ? raw.indexOf('=') : -1;
    const flag = eq > 0 ? raw.slice(0, eq) : raw;
    const value = (): string => {
      const v = eq > 0 ? raw.slice(eq + 1) : argv[++i];
      if (v === undefined || (eq < 0 && v.startsWith('-') && v.length > 1 && !/^-\d/.test(v))) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    onArg(flag, value, raw);
  }
}

/** text when it is one of choices, else a UsageError: "<option> must be <described> (got '<text>')". */
export function parseChoice<T extends string>(option: string, text: string, choices: readonly T[], described: string): T {
  if (!(choices as readonly string[]).includes(text)) throw new UsageError(`${option} must be ${described} (got '${text}')`);
  return text as T;
}

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
