import { type IncomingMessage, type Server, createServer } from "node:http";
import { AppError, type Principal, parseSince, isAppError, isJobStatus, ARTIFACT_TYPES, type ArtifactType, type JobStatus } from "@gpuorch/core";
import { type Authenticate, artifactToJson, bearerTokenFromHeader, httpErrorBody, httpStatusFor, jobEventToJson, jobLogLineToJson, jobToJson } from "@gpuorch/rpc";
import type { Logger } from "@gpuorch/runtime";
import { SPEC_MAX_BYTES } from "@gpuorch/spec";
import type { JobsApi } from "./jobs-api.js";
import type { LogsApi } from "./logs-api.js";
import type { ControllerMetrics } from "./metrics.js";

export interface HttpAdminDeps {
  api: JobsApi;
  /** GET /v1/jobs/{id}/logs. */
  logsApi: LogsApi;
  authenticate: Authenticate;
  logger: Logger;
  metrics: ControllerMetrics;
  metricsAuth: boolean;
  /** Readiness: resolves when the database answers. */
  ready: () => Promise<boolean>;
  /** GET /v1/costs, GET /v1/pricing, POST /v1/plan, GET /v1/recommendations (the CostService and PlanJob in JSON). */
  costs?: HttpCostRoutes;
}

/** The cost operations the HTTP API serves; each answers a JSON-ready object (snake_case keys). */
export interface HttpCostRoutes {
  costs(principal: Principal, by: string, since: Date | null): Promise<unknown>;
  prices(principal: Principal, q: { gpuTypes: string[]; providers: string[]; regions: string[]; spot: boolean; limit: number }): Promise<unknown>;
  plan(principal: Principal, specYaml: string, limit: number): Promise<unknown>;
  recommendations(principal: Principal): Promise<unknown>;
}

type Handler = (req: IncomingMessage, principal: Principal, params: string[], url: URL) => Promise<[number, unknown]>;

interface Route {
  method: string;
  pattern: RegExp;
  name: string;
  handler: Handler;
}

const MAX_BODY = SPEC_MAX_BYTES + 64 * 1024;

/**
 * The HTTP admin API: the same operations as gRPC JobService in JSON, plus
 * /healthz, /readyz and /metrics. Errors use one body shape:
 * {"error": {"code", "message", "details": {"field", "fields"}}}.
 */
export function createHttpAdmin(deps: HttpAdminDeps): { server: Server; setDraining(): void } {
  const { api } = deps;
  let draining = false;
  const routes: Route[] = [
    {
      method: "POST",
      pattern: /^\/v1\/jobs$/,
      name: "/v1/jobs",
      handler: async (req, principal) => {
        const input = await readSubmitBody(req);
        const { job, deduplicated } = await api.submit(principal, input);
        return [deduplicated ? 200 : 201, { id: job.id, name: job.name, status: job.status, created_at: job.createdAt.toISOString(), deduplicated }];
      },
    },
    {
      method: "GET",
      pattern: /^\/v1\/jobs$/,
      name: "/v1/jobs",
      handler: async (_req, principal, _p, url) => {
        const statuses = url.searchParams.getAll("status").flatMap((s) => s.split(",")).filter(Boolean);
        for (const s of statuses) {
          if (!isJobStatus(s)) throw AppError.invalid(`unknown status '${s}'`, [{ field: "status", message: `unknown status '${s}'` }]);
        }
        const limit = url.searchParams.get("limit");
        const page = await api.list(principal, {
          statuses: statuses as JobStatus[],
          team: url.searchParams.get("team") ?? undefined,
          project: url.searchParams.get("project") ?? undefined,
          pageSize: limit === null ? undefined : intParam(limit, "limit"),
          cursor: url.searchParams.get("cursor") ?? undefined,
        });
        return [200, { jobs: page.items.map((j) => jobToJson(j)), next_cursor: page.nextCursor }];
      },
    },
    {
      method: "GET",
      pattern: /^\/v1\/jobs\/([^/]+)$/,
      name: "/v1/jobs/{id}",
      handler: async (_req, principal, [id]) => [200, jobToJson(await api.get(principal, id!), { includeSpec: true })],
    },
    {
      method: "POST",
      pattern: /^\/v1\/jobs\/([^/]+)\/cancel$/,
      name: "/v1/jobs/{id}/cancel",
      handler: async (req, principal, [id]) => {
        const body = await readJsonBody(req, true);
        const reason = typeof body.reason === "string" ? body.reason : undefined;
        const { job, changed } = await api.cancel(principal, id!, reason);
        return [200, { ...jobToJson(job), changed }];
      },
    },
    {
      method: "GET",
      pattern: /^\/v1\/jobs\/([^/]+)\/events$/,
      name: "/v1/jobs/{id}/events",
      handler: async (_req, principal, [id], url) => {
        const after = url.searchParams.get("after_seq");
        const limit = url.searchParams.get("limit");
        const events = await api.events(principal, id!, after === null ? 0 : intParam(after, "after_seq"), limit === null ? undefined : intParam(limit, "limit"));
        return [200, { events: events.map(jobEventToJson) }];
      },
    },
    {
      method: "GET",
      pattern: /^\/v1\/jobs\/([^/]+)\/artifacts$/,
      name: "/v1/jobs/{id}/artifacts",
      handler: async (_req, principal, [id], url) => {
        const t = url.searchParams.get("type");
        if (t !== null && !(ARTIFACT_TYPES as readonly string[]).includes(t)) {
          throw AppError.invalid(`unknown artifact type '${t}'`, [{ field: "type", message: `expected one of ${ARTIFACT_TYPES.join(", ")}` }]);
        }
        const artifacts = await api.artifacts(principal, id!, (t ?? undefined) as ArtifactType | undefined);
        return [200, { artifacts: artifacts.map(artifactToJson) }];
      },
    },
    {
      method: "GET",
      pattern: /^\/v1\/jobs\/([^/]+)\/logs$/,
      name: "/v1/jobs/{id}/logs",
      // Not a follow: one page of stored lines; page on with after_seq = next_after_seq.
      handler: async (_req, principal, [id], url) => {
        const num = (field: string): number | undefined => {
          const v = url.searchParams.get(field);
          return v === null || v === "" ? undefined : intParam(v, field);
        };
        const { lines, nextAfterSeq } = await deps.logsApi.page(
          principal,
          { jobId: id!, tail: num("tail"), rank: num("rank"), afterSeq: num("after_seq"), attempt: num("attempt") },
          num("limit") ?? 1000,
        );
        return [200, { lines: lines.map(jobLogLineToJson), next_after_seq: nextAfterSeq }];
      },
    },
  ];
  const costs = deps.costs;
  if (costs) {
    const list = (url: URL, name: string): string[] => url.searchParams.getAll(name).flatMap((v) => v.split(",")).map((v) => v.trim()).filter(Boolean);
    routes.push(
      {
        method: "GET",
        pattern: /^\/v1\/costs$/,
        name: "/v1/costs",
        handler: async (_req, principal, _p, url) => {
          const since = url.searchParams.get("since");
          return [200, await costs.costs(principal, url.searchParams.get("by") ?? "", since === null || since === "" ? null : parseSince(since, new Date()))];
        },
      },
      {
        method: "GET",
        pattern: /^\/v1\/pricing$/,
        name: "/v1/pricing",
        handler: async (_req, principal, _p, url) => {
          const spot = url.searchParams.get("spot");
          if (spot !== null && !["", "true", "false", "1", "0"].includes(spot)) {
            throw AppError.invalid(`spot must be true or false, got '${spot}'`, [{ field: "spot", message: "expected true or false" }]);
          }
          const limit = url.searchParams.get("limit");
          return [
            200,
            await costs.prices(principal, {
              gpuTypes: list(url, "gpu"),
              providers: list(url, "provider"),
              regions: list(url, "region"),
              spot: spot === "" || spot === "true" || spot === "1",
              limit: limit === null ? 0 : intParam(limit, "limit"),
            }),
          ];
        },
      },
      {
        method: "POST",
        pattern: /^\/v1\/plan$/,
        name: "/v1/plan",
        handler: async (req, principal, _p, url) => {
          const { specYaml } = await readSubmitBody(req);
          const limit = url.searchParams.get("limit");
          return [200, await costs.plan(principal, specYaml, limit === null ? 0 : intParam(limit, "limit"))];
        },
      },
      {
        method: "GET",
        pattern: /^\/v1\/recommendations$/,
        name: "/v1/recommendations",
        handler: async (_req, principal) => [200, await costs.recommendations(principal)],
      },
    );
  }

  const server = createServer((req, res) => {
    const started = performance.now();
    let routeName = "unmatched";
    const finish = (status: number, body: unknown, contentType = "application/json"): void => {
      const payload = contentType === "application/json" ? JSON.stringify(body) + "\n" : String(body);
      res.writeHead(status, { "content-type": contentType, "content-length": Buffer.byteLength(payload) });
      res.end(payload);
      deps.metrics.httpRequests.inc({ route: routeName, method: req.method ?? "?", status: String(status) });
      deps.metrics.httpDuration.observe({ route: routeName }, (performance.now() - started) / 1000);
    };
    const fail = (e: unknown): void => {
      if (!isAppError(e) || e.code === "INTERNAL") {
        deps.logger.error({ err: e, route: routeName, method: req.method }, "http request failed");
      }
      const err = isAppError(e) ? e : AppError.internal("internal error", e);
      finish(httpStatusFor(err.code), httpErrorBody(err));
    };
    const url = new URL(req.url ?? "/", "http://localhost");
    void (async () => {
      try {
        if (url.pathname === "/healthz" && req.method === "GET") {
          routeName = "/healthz";
          return finish(200, { status: "ok" });
        }
        if (url.pathname === "/readyz" && req.method === "GET") {
          routeName = "/readyz";
          const ok = !draining && (await deps.ready().catch(() => false));
          return finish(ok ? 200 : 503, { status: ok ? "ready" : draining ? "draining" : "database unavailable" });
        }
        if (url.pathname === "/metrics" && req.method === "GET") {
          routeName = "/metrics";
          if (deps.metricsAuth) await authenticate(req);
          return finish(200, await deps.metrics.registry.metrics(), deps.metrics.registry.contentType);
        }
        let matchedPath = false;
        for (const r of routes) {
          const m = r.pattern.exec(url.pathname);
          if (!m) continue;
          matchedPath = true;
          if (r.method !== req.method) continue;
          routeName = r.name;
          const principal = await authenticate(req);
          const [status, body] = await r.handler(req, principal, m.slice(1).map(decodeURIComponent), url);
          return finish(status, body);
        }
        if (matchedPath) {
          throw new AppError("FAILED_PRECONDITION", `method ${req.method} not allowed on ${url.pathname}`, { reason: "method_not_allowed" });
        }
        throw new AppError("NOT_FOUND", `no route ${req.method} ${url.pathname}`, { reason: "no_route" });
      } catch (e) {
        fail(e);
      }
    })();
  });

  async function authenticate(req: IncomingMessage): Promise<Principal> {
    const token = bearerTokenFromHeader(req.headers.authorization);
    if (!token) throw AppError.unauthenticated("missing bearer token (Authorization: Bearer <token>)");
    const p = await deps.authenticate(token);
    if (!p) throw AppError.unauthenticated("invalid or revoked token");
    return p;
  }

  return {
    server,
    setDraining() {
      draining = true;
    },
  };
}


function intParam(v: string, field: string): number {
  if (!/^\d+$/.test(v)) throw AppError.invalid(`${field} must be a non-negative integer, got '${v}'`, [{ field, message: "expected an integer" }]);
  return Number(v);
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > MAX_BODY) {
      throw new AppError("INVALID_ARGUMENT", `request body exceeds ${MAX_BODY} bytes`, {
        reason: "invalid_spec",
        fields: [{ field: "spec_yaml", message: `spec larger than ${SPEC_MAX_BYTES} bytes` }],
      });
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

async function readJsonBody(req: IncomingMessage, optional = false): Promise<Record<string, unknown>> {
  const raw = await readBody(req);
  if (raw.length === 0 && optional) return {};
  try {
    const v: unknown = JSON.parse(raw.toString("utf8"));
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not an object");
    return v as Record<string, unknown>;
  } catch (e) {
    throw new AppError("INVALID_ARGUMENT", `request body is not a JSON object: ${(e as Error).message}`, {
      reason: "invalid_json",
      fields: [{ field: "body", message: "expected a JSON object" }],
    });
  }
}

/**
 * POST /v1/jobs accepts either the YAML itself (Content-Type application/yaml,
 * text/yaml or text/plain) or JSON {"spec_yaml", "name", "idempotency_key"};
 * an Idempotency-Key header works with both.
 */
async function readSubmitBody(req: IncomingMessage): Promise<{ specYaml: string; name?: string; idempotencyKey?: string }> {
  const ct = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  const headerKey = req.headers["idempotency-key"];
  const idempotencyKey = typeof headerKey === "string" ? headerKey : undefined;
  if (ct === "application/json") {
    const body = await readJsonBody(req);
    if (typeof body.spec_yaml !== "string") {
      throw new AppError("INVALID_ARGUMENT", "spec_yaml is required and must be a string", {
        reason: "invalid_spec",
        fields: [{ field: "spec_yaml", message: "expected a string holding the job spec YAML" }],
      });
    }
    const name = typeof body.name === "string" ? body.name : undefined;
    const key = typeof body.idempotency_key === "string" ? body.idempotency_key : idempotencyKey;
    return { specYaml: body.spec_yaml, ...(name ? { name } : {}), ...(key ? { idempotencyKey: key } : {}) };
  }
  const raw = await readBody(req);
  // Decode strictly: the spec parser reports non-UTF-8 bytes with their position.
  let specYaml: string;
  try {
    specYaml = new TextDecoder("utf-8", { fatal: true }).decode(raw);
  } catch {
    throw new AppError("INVALID_ARGUMENT", "spec is not valid UTF-8", {
      reason: "invalid_spec",
      fields: [{ field: "", message: "the document must be UTF-8" }],
    });
  }
  return { specYaml, ...(idempotencyKey ? { idempotencyKey } : {}) };
}
