export * from "./errors.js";
export * from "./auth.js";
export * from "./handlers.js";
export * from "./server.js";
export * from "./convert.js";
export * from "./client.js";
export * from "./node-convert.js";
export * from "./agent-client.js";
export * from "./task-convert.js";
export * from "./log-converters.js";
// Wire shapes the CLI renders as they come (plans, prices, costs): no domain twin needed.
export type { CostLine, PlanJobResponse, PlanOption, PlanPart, PriceRow, PricingSourceStatus, Recommendation } from "@gpuorch/proto";
