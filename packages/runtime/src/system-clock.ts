import type { Clock } from "@gpuorch/core";

/** The real clock; everything else receives a Clock by injection. */
export const systemClock: Clock = {
  now: () => new Date(),
};
