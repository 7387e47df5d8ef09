// The learning-rate schedule of the speedrun: optional linear warmup, constant, then a linear
// warmdown to 0 over the last `warmdownSteps` steps. A multiplier of the base learning rate.

export interface ScheduleOptions {
  steps: number;
  warmupSteps: number;
  warmdownSteps: number;
}

/**
 * The multiplier for optimizer step `step` (0-based: the update that completes step + 1).
 * Warmup: (step + 1) / warmupSteps. Warmdown: (steps - step) / warmdownSteps, so the last step
 * uses 1 / warmdownSteps and the step after the run would use 0 (as modded-nanogpt's get_lr).
 */
export function lrMultiplier(step: number, { steps, warmupSteps, warmdownSteps }: ScheduleOptions): number {
  if (step < warmupSteps) return (step + 1) / warmupSteps;
  if (step < steps - warmdownSteps) return 1;
  return Math.max(0, (steps - step) / warmdownSteps);
}
