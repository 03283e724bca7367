/**
 * Worker-thread entry of SpecParserPool: parses job specs off the event
 * loop. Each message is a batch of `{ id, yaml }`; the answer is the batch of
 * `{ id, parsed }` in the same order: exactly what parseJobSpec returns, and
 * the spec's admission key (plain data, so structured clone keeps it whole).
 */
import { parentPort } from "node:worker_threads";
import { parsedSpec, type SpecParseRequest, type SpecParseResponse } from "./spec-parser-pool.js";

if (parentPort === null) throw new Error("spec-worker.js runs as a worker thread of the controller");
const port = parentPort;
port.on("message", (batch: SpecParseRequest[]) => {
  port.postMessage(batch.map(({ id, yaml }): SpecParseResponse => ({ id, parsed: parsedSpec(yaml) })));
});
