export * from "./errors.js";
export * from "./auth.js";
export * from "./handlers.js";
export * from "./server.js";
export * from "./convert.js";
export * from "./client.js";
export * from "./node-convert.js";
export * from "./agent-client.js";
