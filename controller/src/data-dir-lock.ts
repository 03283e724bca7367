import { mkdirSync, openSync, readFileSync, rmSync, writeSync, closeSync } from "node:fs";
import { dirname } from "node:path";
import { AppError } from "@gpuorch/core";

/**
 * PGlite is single-process: two processes opening one data directory would
 * corrupt it. The controller holds `<dataDir>.lock` (its pid) while it runs;
 * a lock whose pid is gone is stale and taken over.
 */
export function acquireDataDirLock(dataDir: string, purpose: string): () => void {
  const path = `${dataDir}.lock`;
  mkdirSync(dirname(path), { recursive: true });
  for (let tries = 0; tries < 2; tries++) {
    try {
      const fd = openSync(path, "wx");
      writeSync(fd, `${process.pid}\n${purpose}\n`);
      closeSync(fd);
      return () => rmSync(path, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const [pidLine, holder] = readFileSync(path, "utf8").split("\n");
      const pid = Number(pidLine);
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
        throw new AppError(
          "FAILED_PRECONDITION",
          `the embedded database ${dataDir} is in use by pid ${pid} (${holder ?? "controller"}); stop it first, or run against PostgreSQL with DATABASE_URL`,
          { reason: "data_dir_locked" },
        );
      }
      rmSync(path, { force: true });
    }
  }
  throw new AppError("FAILED_PRECONDITION", `could not lock ${path}`, { reason: "data_dir_locked" });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
