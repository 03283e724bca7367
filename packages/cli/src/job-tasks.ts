import type { JobTaskView } from "@gpuorch/rpc";
import { formatTable } from "./table.js";

/** The tasks of a job's current attempt, as `gpuorch get` prints them. */
export function formatTasks(tasks: readonly JobTaskView[]): string {
  return formatTable(
    ["NODE", "RANK/UNIT", "GPUS", "STATE", "EXIT", "STEP", "REASON"],
    tasks.map((t) => [
      t.hostname || t.nodeId,
      t.unit >= 0 ? `unit ${t.unit}` : `${t.nodeRank}/${t.numNodes}`,
      t.gpuIndices.length > 0 ? t.gpuIndices.join(",") : "-",
      t.state,
      t.exitCode === null ? "-" : String(t.exitCode),
      t.step === null ? "-" : String(t.step),
      t.reason ?? "",
    ]),
  );
}
