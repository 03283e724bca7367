export * from "./alert.js";
export * from "./alert-store.js";
export * from "./budget-alerts.js";
export * from "./channel-config.js";
export * from "./channels.js";
export * from "./dispatcher.js";
export * from "./http-post.js";
export * from "./slack-message.js";
