import { AppError, type Clock, type IdSource } from "@gpuorch/core";
import { type Database, getNode, listNodes, upsertNodeRegistration } from "@gpuorch/db";
import type { AgentServiceServer, ConnectRequest, NodeServiceServer } from "@gpuorch/proto";
import {
  type Authenticate,
  bidiStreamHandler,
  gpuSampleFromProto,
  nodeRegistrationFromProto,
  nodeStateFromProto,
  nodeToProto,
  unaryHandler,
} from "@gpuorch/rpc";
import type { Logger } from "@gpuorch/runtime";
import type { HeartbeatIngest } from "./heartbeat-ingest.js";

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
      return { nodeId, heartbeatIntervalSeconds: deps.heartbeatIntervalSeconds };
    }),
    connect: bidiStreamHandler(opts("AgentService/Connect"), async (requests, ctx, send) => {
      let nodeId: string | null = null;
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
          ctx.logger.info({ nodeId }, "agent connected");
        } else if (req.nodeId && req.nodeId !== nodeId) {
          throw AppError.invalid(`this stream belongs to node ${nodeId}, not ${req.nodeId}`, [{ field: "node_id", message: "changed mid-stream" }]);
        }
        if (req.heartbeat) {
          deps.ingest.record(nodeId, req.heartbeat.gpus.map(gpuSampleFromProto));
          deps.onHeartbeat?.();
          await send({ heartbeatAck: { seq: req.heartbeat.seq } });
        }
      }
      if (nodeId) ctx.logger.info({ nodeId }, "agent stream ended");
    }),
  };
}

/** NodeService: user tokens read the node registry. */
export function createNodeServiceImpl(deps: Pick<AgentServiceDeps, "db" | "authenticate" | "logger" | "onCall">): NodeServiceServer {
  return {
    listNodes: unaryHandler(
      { authenticate: deps.authenticate, logger: deps.logger, method: "NodeService/ListNodes", kinds: ["user"], ...(deps.onCall ? { onCall: deps.onCall } : {}) },
      async (req) => {
        const states = req.states.map((s) => nodeStateFromProto(s, "states"));
        return { nodes: (await listNodes(deps.db, { states })).map(nodeToProto) };
      },
    ),
  };
}
