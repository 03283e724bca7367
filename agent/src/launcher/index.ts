export * from "./launch-builder.js";
export * from "./output-parser.js";
export * from "./task-runner.js";
