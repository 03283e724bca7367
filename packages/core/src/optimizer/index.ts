export * from "./types.js";
export { optimize, planScore } from "./optimizer.js";
export { bindingConstraintMessage, requireFeasiblePlan, type BindingFacts } from "./binding.js";
export { usd, usdExact, hoursText, targetText, splitText } from "./format.js";
