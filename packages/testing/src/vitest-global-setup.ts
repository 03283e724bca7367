// Placeholder replaced by the Postgres harness (see packages/testing/README.md).
export default function setup(): void {}
