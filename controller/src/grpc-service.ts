import { AppError, type Principal } from "@gpuorch/core";
import type { JobServiceServer, PlanJobResponse } from "@gpuorch/proto";
import { ArtifactType } from "@gpuorch/proto";
import {
  type Authenticate,
  artifactToProto,
  artifactTypeFromProto,
  jobEventToProto,
  jobLogLineToProto,
  jobStatusFromProto,
  jobStatusToProto,
  jobTaskToProto,
  jobToProto,
  serverStreamHandler,
  unaryHandler,
} from "@gpuorch/rpc";
import type { Logger } from "@gpuorch/runtime";
import type { JobsApi } from "./jobs-api.js";
import type { LogsApi } from "./logs-api.js";

export interface GrpcServiceDeps {
  api: JobsApi;
  /** PlanJob (`gpuorch plan`). */
  plan: (principal: Principal, specYaml: string, limit: number) => Promise<PlanJobResponse>;
  /** GetJobLogs (`gpuorch logs`). */
  logsApi: LogsApi;
  authenticate: Authenticate;
  logger: Logger;
  onCall?: (method: string, code: string, seconds: number) => void;
}

/** JobService over gRPC: converts wire ↔ domain and delegates to JobsApi. */
export function createJobServiceImpl(deps: GrpcServiceDeps): JobServiceServer {
  const { api } = deps;
  const opts = (method: string) => ({
    authenticate: deps.authenticate,
    logger: deps.logger,
    method,
    ...(deps.onCall ? { onCall: deps.onCall } : {}),
  });
  return {
    submitJob: unaryHandler(opts("SubmitJob"), async (req, ctx) => {
      const { job, deduplicated } = await api.submit(ctx.principal, {
        specYaml: req.specYaml,
        name: req.name,
        idempotencyKey: req.idempotencyKey,
      });
      return { id: job.id, status: jobStatusToProto(job.status), createdAt: job.createdAt, deduplicated, name: job.name };
    }),
    getJob: unaryHandler(opts("GetJob"), async (req, ctx) => {
      const { job, tasks } = await api.getWithTasks(ctx.principal, req.id);
      return { job: jobToProto(job), tasks: tasks.map(jobTaskToProto) };
    }),
    listJobs: unaryHandler(opts("ListJobs"), async (req, ctx) => {
      const page = await api.list(ctx.principal, {
        statuses: req.statuses.map((s) => jobStatusFromProto(s, "statuses")),
        team: req.team,
        project: req.project,
        pageSize: req.pageSize,
        cursor: req.pageToken,
      });
      return { jobs: page.items.map((j) => jobToProto(j)), nextPageToken: page.nextCursor ?? "" };
    }),
    cancelJob: unaryHandler(opts("CancelJob"), async (req, ctx) => {
      const { job, changed } = await api.cancel(ctx.principal, req.id, req.reason);
      return { job: jobToProto(job), changed };
    }),
    getJobEvents: unaryHandler(opts("GetJobEvents"), async (req, ctx) => {
      const events = await api.events(ctx.principal, req.id, seqOf(req.afterSeq, "after_seq"), req.limit);
      return { events: events.map(jobEventToProto) };
    }),
    listArtifacts: unaryHandler(opts("ListArtifacts"), async (req, ctx) => {
      const type = req.type === ArtifactType.ARTIFACT_TYPE_UNSPECIFIED ? undefined : artifactTypeFromProto(req.type);
      const artifacts = await api.artifacts(ctx.principal, req.jobId, type);
      return { artifacts: artifacts.map(artifactToProto) };
    }),
    watchJob: serverStreamHandler(opts("WatchJob"), async (req, ctx, send) => {
      for await (const item of api.watch(ctx.principal, req.id, seqOf(req.afterSeq, "after_seq"), ctx.signal)) {
        await send(item.event ? { job: jobToProto(item.job), event: jobEventToProto(item.event) } : { job: jobToProto(item.job), event: undefined });
      }
    }),
    planJob: unaryHandler(opts("PlanJob"), (req, ctx) => deps.plan(ctx.principal, req.specYaml, req.limit)),
    getJobLogs: serverStreamHandler(opts("GetJobLogs"), async (req, ctx, send) => {
      const query = {
        jobId: req.jobId,
        rank: req.rank,
        attempt: req.attempt,
        tail: req.tail,
        afterSeq: seqOf(req.afterSeq, "after_seq"),
        follow: req.follow,
      };
      for await (const batch of deps.logsApi.read(ctx.principal, query, ctx.signal)) {
        // Lines may be 16 KiB each: keep every message well under the clients' 4 MiB default limit.
        let lines: ReturnType<typeof jobLogLineToProto>[] = [];
        let bytes = 0;
        for (const l of batch) {
          if (lines.length > 0 && bytes + l.text.length * 3 > LOG_MESSAGE_BYTES) {
            await send({ lines });
            lines = [];
            bytes = 0;
          }
          lines.push(jobLogLineToProto(l));
          bytes += l.text.length * 3 + 64;
        }
        if (lines.length > 0) await send({ lines });
      }
    }),
  };
}

/** Upper bound of one GetJobLogs message's text (UTF-8 worst case), far below the 4 MiB default receive limit. */
const LOG_MESSAGE_BYTES = 1024 * 1024;

function seqOf(v: string, field: string): number {
  const n = Number(v || "0");
  if (!Number.isSafeInteger(n) || n < 0) {
    throw AppError.invalid(`${field} must be a non-negative integer`, [{ field, message: "expected an integer ≥ 0" }]);
  }
  return n;
}
