import {
  AppError,
  type ArtifactType,
  type IdSource,
  type Job,
  type JobArtifact,
  type JobEvent,
  type JobStatus,
  type Page,
  type Principal,
  clampPageSize,
  isTerminal,
  readScope,
  resolveSubmitTeam,
} from "@gpuorch/core";
import {
  type Database,
  type InsertJobOutcome,
  type NewJobInput,
  type TaskRecord,
  findTasks,
  cancelJob,
  ensureTeam,
  getJob,
  getJobEvents,
  insertJobs,
  listArtifacts,
  listJobs,
} from "@gpuorch/db";
import { type Batcher, type Logger, createBatcher } from "@gpuorch/runtime";
import { type JobSpec, type ParseResult, parseJobSpec } from "@gpuorch/spec";
import { admissionKey } from "./admission-key.js";
import { type ParsedSpec, parsedSpec } from "./spec-parser-pool.js";
import type { JobNotifier } from "./job-notifier.js";

export interface SubmitInput {
  specYaml: string;
  name?: string;
  idempotencyKey?: string;
}

export interface ListInput {
  statuses?: JobStatus[];
  team?: string;
  project?: string;
  pageSize?: number;
  cursor?: string;
}

export interface WatchItem {
  job: Job;
  event: JobEvent | null;
}

const NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const MAX_IDEMPOTENCY_KEY = 200;

/**
 * The job API independent of transport: gRPC and the HTTP admin server are
 * thin adapters over this, so validation, team scoping and errors are the
 * same whichever way a request arrives.
 */
export class JobsApi {
  private readonly inserts: Batcher<NewJobInput, InsertJobOutcome>;
  /** Team name → id. Teams are never renamed or deleted, so entries never go stale. */
  private readonly teamIds = new Map<string, string>();

  constructor(
    private readonly deps: {
      db: Database["db"];
      ids: IdSource;
      logger: Logger;
      notifier: JobNotifier;
      /** How often a watcher re-reads the database when nothing notified it. */
      watchPollMs?: number;
      /**
       * Group commit for submissions: concurrent submits share one INSERT
       * statement (at most maxBatch rows, at most maxInFlight statements at once).
       */
      submitBatch?: { maxBatch: number; maxInFlight: number };
      /** Parses a submitted spec with its admission key (SpecParserPool: off the event loop); default inline. */
      parseSpec?: (specYaml: string) => Promise<ParsedSpec>;
      /** A new job was stored (wakes the scheduler). */
      onSubmitted?: (jobId: string) => void;
      /** A job was cancelled (its running tasks must be stopped). */
      onCancelled?: (jobId: string) => void;
      /**
       * Admission: throws (RESOURCE_EXHAUSTED infeasible_job) when no plan
       * meets the spec, else the estimate stored with the job.
       */
      admit?: (spec: JobSpec, admissionKey: string) => Promise<{ estimatedCostUsd: string | null }>;
    },
  ) {
    const batch = deps.submitBatch ?? { maxBatch: 64, maxInFlight: 2 };
    this.inserts = createBatcher((items) => insertJobs(deps.db, items), batch);
  }

  /** Resolves once no submission is waiting for or inside an insert. */
  drain(): Promise<void> {
    return this.inserts.drain();
  }

  private async teamId(name: string): Promise<string> {
    const cached = this.teamIds.get(name);
    if (cached !== undefined) return cached;
    const team = await ensureTeam(this.deps.db, { id: this.deps.ids.newId(), name });
    this.teamIds.set(name, team.id);
    return team.id;
  }

  async submit(principal: Principal, input: SubmitInput): Promise<{ job: Job; deduplicated: boolean }> {
    const parsed = this.deps.parseSpec ? await this.deps.parseSpec(input.specYaml) : parsedSpec(input.specYaml);
    const spec = specOrThrow(parsed.result);
    const name = input.name ? input.name : spec.job.name;
    if (input.name && (!NAME_RE.test(input.name) || input.name.length > 63)) {
      throw AppError.invalid(`name '${input.name}' must be a DNS label (lowercase letters, digits, '-', ≤ 63 chars)`, [
        { field: "name", message: "expected a DNS label" },
      ]);
    }
    const key = input.idempotencyKey ? input.idempotencyKey : null;
    if (key !== null && key.length > MAX_IDEMPOTENCY_KEY) {
      throw AppError.invalid(`idempotency_key is longer than ${MAX_IDEMPOTENCY_KEY} characters`, [
        { field: "idempotency_key", message: `at most ${MAX_IDEMPOTENCY_KEY} characters` },
      ]);
    }
    const teamName = resolveSubmitTeam(principal, spec.job.team);
    const admission = this.deps.admit ? await this.deps.admit(spec, parsed.admissionKey ?? admissionKey(spec)) : { estimatedCostUsd: null };
    const teamId = !principal.admin && principal.teamId !== null ? principal.teamId : await this.teamId(teamName);
    const outcome = await this.inserts.submit(
      jobInputFromSpec(spec, input.specYaml, {
        id: this.deps.ids.newId(),
        teamId,
        name,
        estimatedCostUsd: admission.estimatedCostUsd,
        idempotencyKey: key,
        actor: actorOf(principal),
      }),
    );
    if (!outcome.ok) throw outcome.error;
    const result = { job: outcome.job, deduplicated: outcome.deduplicated };
    if (!result.deduplicated) {
      this.deps.logger.info({ jobId: result.job.id, team: teamName, type: spec.job.type }, "job submitted");
      this.deps.onSubmitted?.(result.job.id);
    }
    return result;
  }

  async get(principal: Principal, id: string): Promise<Job> {
    const job = await getJob(this.deps.db, id, readScope(principal));
    if (!job) throw AppError.notFound("Job", id);
    return job;
  }

  /** The job and the tasks of its current attempt. */
  async getWithTasks(principal: Principal, id: string): Promise<{ job: Job; tasks: TaskRecord[] }> {
    const job = await this.get(principal, id);
    return { job, tasks: await findTasks(this.deps.db, { jobId: id, attempt: job.attempt }) };
  }

  async list(principal: Principal, input: ListInput): Promise<Page<Job>> {
    const limit = clampPageSize(input.pageSize, "page_size");
    if (input.team && !principal.admin && input.team !== principal.teamName) {
      // A team token only ever sees its own team; asking for another is answered as empty.
      return { items: [], nextCursor: null };
    }
    return listJobs(this.deps.db, {
      teamId: readScope(principal).teamId,
      ...(input.team && principal.admin ? { team: input.team } : {}),
      ...(input.statuses && input.statuses.length > 0 ? { statuses: input.statuses } : {}),
      ...(input.project ? { project: input.project } : {}),
      limit,
      cursor: input.cursor ? input.cursor : null,
    });
  }

  async cancel(principal: Principal, id: string, reason: string | undefined): Promise<{ job: Job; changed: boolean }> {
    const res = await cancelJob(this.deps.db, {
      jobId: id,
      scope: readScope(principal),
      reason: reason ? reason : "cancelled by user",
      actor: actorOf(principal),
    });
    if (res.changed) {
      this.deps.notifier.notify(id);
      this.deps.logger.info({ jobId: id, actor: actorOf(principal) }, "job cancelled");
      this.deps.onCancelled?.(id);
    }
    return res;
  }

  async events(principal: Principal, id: string, afterSeq: number, limit: number | undefined): Promise<JobEvent[]> {
    await this.get(principal, id);
    return getJobEvents(this.deps.db, id, { afterSeq, limit: clampPageSize(limit, "limit", 1000, 1000) });
  }

  async artifacts(principal: Principal, id: string, type: ArtifactType | undefined): Promise<JobArtifact[]> {
    await this.get(principal, id);
    return listArtifacts(this.deps.db, id, type);
  }

  /**
   * The current state first, then every event after `afterSeq` in order, each
   * with the job as it is after that event; ends once the job is terminal and
   * all its events were sent, or when `signal` aborts.
   */
  async *watch(principal: Principal, id: string, afterSeq: number, signal: AbortSignal): AsyncGenerator<WatchItem> {
    let job = await this.get(principal, id);
    yield { job, event: null };
    let last = afterSeq;
    const poll = this.deps.watchPollMs ?? 1000;
    while (!signal.aborted) {
      const events = await getJobEvents(this.deps.db, id, { afterSeq: last, limit: 1000 });
      if (events.length > 0) job = await this.get(principal, id);
      for (const ev of events) {
        last = ev.seq;
        yield { job, event: ev };
      }
      if (isTerminal(job.status) && events.length === 0) return;
      if (events.length === 0) await this.deps.notifier.wait(id, poll, signal);
    }
  }
}

/** The row a spec becomes, as SubmitJob stores it: columns from the normalized spec, the YAML verbatim. */
export function jobInputFromSpec(
  spec: JobSpec,
  specYaml: string,
  o: { id: string; teamId: string; name?: string; estimatedCostUsd?: string | null; idempotencyKey?: string | null; actor: string },
): NewJobInput {
  return {
    id: o.id,
    teamId: o.teamId,
    name: o.name ?? spec.job.name,
    project: spec.job.project ?? null,
    type: spec.job.type,
    framework: spec.job.framework,
    executionMode: spec.execution.mode,
    priority: spec.constraints.priority,
    maxAttempts: spec.retry.max_attempts,
    gpus: spec.resources.gpus,
    specYaml,
    spec,
    budgetUsd: spec.constraints.budget_usd ?? null,
    estimatedCostUsd: o.estimatedCostUsd ?? null,
    deadline: spec.constraints.deadline ? new Date(spec.constraints.deadline) : null,
    idempotencyKey: o.idempotencyKey ?? null,
    actor: o.actor,
  };
}

/** The spec, or INVALID_ARGUMENT `invalid_spec` with every issue as a field (path, line, column): submit and plan alike. */
export function parseSpecOrThrow(specYaml: string): JobSpec {
  return specOrThrow(parseJobSpec(specYaml));
}

function specOrThrow(parsed: ParseResult): JobSpec {
  if (parsed.ok) return parsed.spec;
  const first = parsed.issues[0];
  const summary = first ? `${first.path || "spec"}: ${first.message}` : "invalid spec";
  throw new AppError("INVALID_ARGUMENT", `invalid job spec: ${summary}${parsed.issues.length > 1 ? ` (+${parsed.issues.length - 1} more)` : ""}`, {
    reason: "invalid_spec",
    fields: parsed.issues.map((i) => ({
      field: i.path,
      message: i.message,
      ...(i.line !== null ? { line: i.line } : {}),
      ...(i.column !== null ? { column: i.column } : {}),
    })),
  });
}

function actorOf(p: Principal): string {
  if (p.admin) return `admin:${p.tokenId.slice(-8)}`;
  return `${p.kind}:${p.teamName ?? "?"}:${p.tokenId.slice(-8)}`;
}
