import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Where the agent keeps the node id the controller gave it, so a restart registers as the same node. */
export interface NodeIdStore {
  load(): string | null;
  save(id: string): void;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `<workDir>/node-id`, one line; written atomically (rename). A missing or malformed file reads as null. */
export function createFileNodeIdStore(workDir: string): NodeIdStore {
  const path = join(workDir, "node-id");
  return {
    load() {
      let text: string;
      try {
        text = readFileSync(path, "utf8").trim();
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
        throw e;
      }
      return UUID.test(text) ? text : null;
    },
    save(id) {
      mkdirSync(workDir, { recursive: true });
      const tmp = `${path}.${process.pid}.tmp`;
      writeFileSync(tmp, id + "\n");
      renameSync(tmp, path);
    },
  };
}
