// The one error type of the distributed layer: a bad launch environment, a rendezvous that did
// not complete, a configuration that differs between ranks, a failed or timed-out collective.
// Messages name the rank(s) and what was expected, so a CLI can print them as one line.

export class DistError extends Error {
  override name = 'DistError';
}
