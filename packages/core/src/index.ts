export * from "./app-error.js";
export * from "./job-status.js";
export * from "./state-machine.js";
export * from "./models.js";
export * from "./micros.js";
export * from "./submission.js";
export * from "./scheduler/index.js";
export * from "./nodes.js";
