// A spec worker that dies on its first batch (exit code 3): spec-parser-pool.test.ts
// checks that nothing is lost when a real worker dies mid-flight.
import { parentPort } from "node:worker_threads";

parentPort.on("message", () => process.exit(3));
