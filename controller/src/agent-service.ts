import { AppError, type Clock, type IdSource } from "@gpuorch/core";
import { type Database, getNode, listNodes, markNodeDisconnected, setNodeDraining, upsertNodeRegistration } from "@gpuorch/db";
import type { AgentServiceServer, ConnectRequest, NodeServiceServer } from "@gpuorch/proto";
import {
  type Authenticate,
  artifactReportFromProto,
  bidiStreamHandler,
  interruptionFromProto,
  gpuSampleFromProto,
  logChunkFromProto,
  nodeRegistrationFromProto,
  taskReportFromProto,
  nodeStateFromProto,
  nodeToProto,
  unaryHandler,
} from "@gpuorch/rpc";
import type { Logger } from "@gpuorch/runtime";
import type { AgentSessions } from "./agent-sessions.js";
import type { HeartbeatIngest } from "./heartbeat-ingest.js";
import type { TaskSupervisor } from "./task-supervisor.js";

/** Where agents' log chunks go (the controller's LogStore). */
export interface LogSink {
  append(chunk: ReturnType<typeof logChunkFromProto>): void;
}

export interface AgentServiceDeps {
  db: Database["db"];
  ids: IdSource;
  clock: Clock;
  authenticate: Authenticate;
  logger: Logger;
  ingest: HeartbeatIngest;
  heartbeatIntervalSeconds: number;
  onCall?: (method: string, code: string, seconds: number) => void;
  onHeartbeat?: () => void;
  signal?: AbortSignal;
  sessions: AgentSessions;
  supervisor: TaskSupervisor;
  logs?: LogSink;
  /** A node registered or connected (capacity may have appeared). */
  onNodeAvailable?: () => void;
}

/**
 * AgentService: agent tokens only. Register upserts the node; Connect binds
 * one stream to one registered node and acks every heartbeat at once (the
 * sample is buffered by the ingest and written in the next batch).
 */
export function createAgentServiceImpl(deps: AgentServiceDeps): AgentServiceServer {
  const opts = (method: string) => ({
    authenticate: deps.authenticate,
    logger: deps.logger,
    method,
    kinds: ["agent"] as const,
    ...(deps.onCall ? { onCall: deps.onCall } : {}),
    ...(deps.signal ? { signal: deps.signal } : {}),
  });
  // Nodes this replica has seen registered or looked up: a reconnecting agent costs no query.
  const known = new Set<string>();
  return {
    register: unaryHandler(opts("AgentService/Register"), async (req, ctx) => {
      const reg = nodeRegistrationFromProto(req);
      const { nodeId, created } = await upsertNodeRegistration(deps.db, reg, { newId: deps.ids.newId(), now: deps.clock.now() });
      known.add(nodeId);
      ctx.logger.info({ nodeId, hostname: reg.hostname, gpus: reg.gpus.length, created }, created ? "node registered" : "node re-registered");
      deps.onNodeAvailable?.();
      return { nodeId, heartbeatIntervalSeconds: deps.heartbeatIntervalSeconds };
    }),
    connect: bidiStreamHandler(opts("AgentService/Connect"), async (requests, ctx, send) => {
      let nodeId: string | null = null;
      let detach: (() => void) | null = null;
      // Reports of one node are handled in order, off the read loop, so a slow database never stalls heartbeat acks.
      let reports: Promise<void> = Promise.resolve();
      const report = (id: string, fn: () => Promise<void>): void => {
        reports = reports.then(fn).catch((err: unknown) => ctx.logger.error({ err, nodeId: id }, "handling the agent's task report failed"));
      };
      try {
        for await (const req of requests as AsyncIterable<ConnectRequest>) {
          if (nodeId === null) {
            if (!req.nodeId) throw AppError.invalid("the first message must name node_id", [{ field: "node_id", message: "required" }]);
            if (!known.has(req.nodeId)) {
              if (!(await getNode(deps.db, req.nodeId))) {
                throw new AppError("NOT_FOUND", `node ${req.nodeId} is not registered; register again`, { reason: "node_unknown" });
              }
              known.add(req.nodeId);
            }
            nodeId = req.nodeId;
            detach = deps.sessions.attach({ nodeId, send });
            ctx.logger.info({ nodeId }, "agent connected");
            deps.onNodeAvailable?.();
          } else if (req.nodeId && req.nodeId !== nodeId) {
            throw AppError.invalid(`this stream belongs to node ${nodeId}, not ${req.nodeId}`, [{ field: "node_id", message: "changed mid-stream" }]);
          }
          const id = nodeId;
          if (req.heartbeat) {
            const hb = req.heartbeat;
            const raw = hb.gpus;
            deps.ingest.record(id, () => raw.map(gpuSampleFromProto));
            deps.onHeartbeat?.();
            await send({ heartbeatAck: { seq: hb.seq } });
            if (deps.supervisor.needsReports(id, hb.tasks.length)) {
              const tasks = hb.tasks.map((t, i) => taskReportFromProto(t, `heartbeat.tasks[${i}]`));
              report(id, () => deps.supervisor.onReports(id, tasks, true, { awaitJudgements: false }));
            }
          } else if (req.taskStatus) {
            const r = taskReportFromProto(req.taskStatus);
            report(id, () => deps.supervisor.onReports(id, [r], false, { awaitJudgements: false }));
          } else if (req.logChunk) {
            deps.logs?.append(logChunkFromProto(req.logChunk));
          } else if (req.artifact) {
            // Same queue as the task reports: an artifact is recorded before a later report from this node is judged.
            const a = artifactReportFromProto(req.artifact);
            report(id, async () => {
              const answer = await deps.supervisor.onArtifact(id, a);
              await send({ artifactAck: { artifactId: a.artifactId, accepted: answer.accepted, reason: answer.reason } });
              if (answer.prune.length > 0) await send({ deleteArtifacts: { commandId: `prune:${a.artifactId}`, jobId: a.jobId, uris: answer.prune } });
            });
          } else if (req.interruption) {
            const n = interruptionFromProto(req.interruption);
            report(id, () => deps.supervisor.onInterruption(id, n));
          }
        }
      } finally {
        detach?.();
        await reports;
        // The stream is gone (agent killed, node down, network cut) and no newer one replaced it:
        // no new placements there until it heartbeats again.
        if (nodeId && !deps.sessions.has(nodeId) && !deps.signal?.aborted) {
          await markNodeDisconnected(deps.db, nodeId).catch((err: unknown) => ctx.logger.warn({ err, nodeId }, "marking the node unreachable failed"));
        }
      }
      if (nodeId) ctx.logger.info({ nodeId }, "agent stream ended");
    }),
  };
}

/** NodeService: user tokens read the node registry. */
export function createNodeServiceImpl(
  deps: Pick<AgentServiceDeps, "db" | "authenticate" | "logger" | "onCall" | "sessions"> & { ids: IdSource; onNodeAvailable?: () => void },
): NodeServiceServer {
  return {
    drainNode: unaryHandler(
      { authenticate: deps.authenticate, logger: deps.logger, method: "NodeService/DrainNode", kinds: ["user"], ...(deps.onCall ? { onCall: deps.onCall } : {}) },
      async (req, ctx) => {
        if (!ctx.principal.admin) throw new AppError("PERMISSION_DENIED", "draining a node needs an admin token", { reason: "admin_only" });
        if (!(await setNodeDraining(deps.db, req.nodeId, req.drain))) throw AppError.notFound("Node", req.nodeId);
        deps.sessions.send(req.nodeId, { drain: { commandId: `drain:${deps.ids.newId()}`, drain: req.drain } });
        if (!req.drain) deps.onNodeAvailable?.();
        ctx.logger.info({ nodeId: req.nodeId, drain: req.drain }, req.drain ? "node draining" : "node undrained");
        const node = await getNode(deps.db, req.nodeId);
        if (!node) throw AppError.notFound("Node", req.nodeId);
        return { node: nodeToProto(node) };
      },
    ),
    listNodes: unaryHandler(
      { authenticate: deps.authenticate, logger: deps.logger, method: "NodeService/ListNodes", kinds: ["user"], ...(deps.onCall ? { onCall: deps.onCall } : {}) },
      async (req) => {
        const states = req.states.map((s) => nodeStateFromProto(s, "states"));
        return { nodes: (await listNodes(deps.db, { states })).map(nodeToProto) };
      },
    ),
  };
}
