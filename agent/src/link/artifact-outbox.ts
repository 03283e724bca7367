import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { AgentArtifactReport } from "@gpuorch/core";
import type { Logger } from "@gpuorch/runtime";

/**
 * Artifact reports the controller has not acknowledged yet. A report is
 * kept (in memory and in `<work dir>/artifact-outbox.json`, so an agent
 * restart does not lose it) until an ArtifactAck names its id; every
 * (re)connect resends them all. The controller's insert is idempotent on the
 * id, so a resend never records an artifact twice.
 */
export class ArtifactOutbox {
  private readonly pending = new Map<string, AgentArtifactReport>();

  constructor(
    private readonly deps: {
      file: string;
      /** Writes to the stream; false when not connected (the next connect resends). */
      send: (r: AgentArtifactReport) => boolean;
      logger: Logger;
      /** The controller refused a report (stale attempt, unknown task). */
      onRefused?: (r: AgentArtifactReport, reason: string) => void;
    },
  ) {
    try {
      const saved = JSON.parse(readFileSync(deps.file, "utf8")) as AgentArtifactReport[];
      for (const r of saved) this.pending.set(r.artifactId, r);
    } catch {
      // none saved (or unreadable: nothing to resend)
    }
  }

  get size(): number {
    return this.pending.size;
  }

  add(r: AgentArtifactReport): void {
    this.pending.set(r.artifactId, r);
    this.save();
    this.deps.send(r);
  }

  /** Resends everything not yet acknowledged (after a connect). */
  resendAll(): void {
    for (const r of this.pending.values()) if (!this.deps.send(r)) return;
  }

  ack(artifactId: string, accepted: boolean, reason: string): void {
    const r = this.pending.get(artifactId);
    if (!r) return;
    this.pending.delete(artifactId);
    this.save();
    if (!accepted) {
      this.deps.logger.warn({ artifactId, jobId: r.jobId, attempt: r.attempt, uri: r.uri, reason }, "the controller refused an artifact");
      this.deps.onRefused?.(r, reason);
    }
  }

  private save(): void {
    mkdirSync(dirname(this.deps.file), { recursive: true });
    const tmp = `${this.deps.file}.tmp`;
    writeFileSync(tmp, JSON.stringify([...this.pending.values()]));
    renameSync(tmp, this.deps.file);
  }
}
