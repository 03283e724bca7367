export * from "./logger.js";
export * from "./config.js";
export * from "./shutdown-manager.js";
export * from "./backoff.js";
export * from "./system-clock.js";
export * from "./uuid-v7.js";
export * from "./batcher.js";
export * from "./process-group.js";
