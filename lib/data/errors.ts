// The one error type of the data layer. Everything a user can get wrong (a missing file, a file
// that is not a shard, a glob that matches nothing, a bad batch size) is a DataError whose message
// names the thing and what was expected, so a CLI can print it as one line without a stack trace.

export class DataError extends Error {
  override name = 'DataError';
}

/** The short reason of a Node fs error ("ENOENT: no such file or directory"), without the path. */
export function fsReason(error: unknown): string {
  const e = error as NodeJS.ErrnoException;
  switch (e?.code) {
    case 'ENOENT': return 'no such file or directory';
    case 'EACCES':
    case 'EPERM': return 'permission denied';
    case 'EISDIR': return 'is a directory';
    case 'ENOTDIR': return 'a path component is not a directory';
    case 'ENOSPC': return 'no space left on the device';
    case 'EROFS': return 'read-only file system';
    case 'EEXIST': return 'already exists';
    default: return e?.code ? `${e.code}` : String((e as Error)?.message ?? e);
  }
}
