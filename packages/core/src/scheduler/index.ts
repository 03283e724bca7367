export * from "./types.js";
export { placeJobs, compareJobsForPlacement, gangShapes } from "./placement.js";
