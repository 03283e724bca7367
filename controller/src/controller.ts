import { writeFileSync, mkdirSync, renameSync, chmodSync } from "node:fs";
import { dirname } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import { type Clock, type IdSource, DEFAULT_TEAM, parseUsdMicros, validateBudgetThresholds } from "@gpuorch/core";
import {
  type Database,
  costTotalsByTeamProject,
  countJobsByStatus,
  countNodesByState,
  createPricingStore,
  ensureTeam,
  findPrincipalByTokenHash,
  gpuUtilizationSamples,
  listPricingStatus,
  openDatabase,
  pingDatabase,
  seedCatalogIfEmpty,
  summarizePricingSources,
} from "@gpuorch/db";
import { AgentServiceService, CostServiceService, JobServiceService, NodeServiceService } from "@gpuorch/proto";
import {
  type PriceFetcher,
  availabilityFromOffers,
  createAwsPriceFetcher,
  createAzurePriceFetcher,
  createGcpPriceFetcher,
  createPricingRefresher,
  loadCatalogDir,
  loadShippedCatalog,
} from "@gpuorch/pricing";
import { createGrpcServer, listen, stopServer } from "@gpuorch/rpc";
import type { Logger } from "@gpuorch/runtime";
import { stringify as toYaml } from "yaml";
import type { ControllerConfig } from "./config.js";
import { acquireDataDirLock } from "./data-dir-lock.js";
import { createAgentServiceImpl, createNodeServiceImpl } from "./agent-service.js";
import { AgentSessions } from "./agent-sessions.js";
import { SchedulerLoop } from "./scheduler-loop.js";
import { SpecParserPool } from "./spec-parser-pool.js";
import { LogStore } from "./log-store.js";
import { LogsApi } from "./logs-api.js";
import { TaskSupervisor } from "./task-supervisor.js";
import { createJobServiceImpl } from "./grpc-service.js";
import { HeartbeatIngest } from "./heartbeat-ingest.js";
import { NodeHealthLoop } from "./node-health.js";
import { createHttpAdmin } from "./http-admin.js";
import { JobNotifier } from "./job-notifier.js";
import { JobsApi } from "./jobs-api.js";
import { createControllerMetrics } from "./metrics.js";
import { createTokenAuthenticator } from "./token-cache.js";
import { createToken } from "./tokens.js";
import { createAlertDispatcher } from "./alerts/index.js";
import { CostTracker } from "./cost-tracker.js";
import { createCostServiceImpl, createDbAlertStore, getCostsResponse, listPrices, toSnakeJson } from "./cost-service.js";
import { Planner } from "./planner.js";
import { UtilizationWatch } from "./utilization.js";

export interface RunningController {
  grpcPort: number;
  httpPort: number;
  adminToken: string | null;
  /** Embedded mode only: an agent token for the default team, so a local agent can join. */
  agentToken: string | null;
  /** Stops in reverse start order: stop accepting, drain, close the database. */
  stop(): Promise<void>;
}

interface Step {
  name: string;
  stop: () => Promise<void>;
}

/**
 * Starts the controller's components in order (database → gRPC → HTTP) and
 * returns a handle that stops them in reverse. `main.ts` wires signals.
 */
export async function startController(
  config: ControllerConfig,
  deps: { logger: Logger; clock: Clock; ids: IdSource },
): Promise<RunningController> {
  const { logger } = deps;
  const steps: Step[] = [];
  const stopAll = async (): Promise<void> => {
    for (const step of steps.reverse()) {
      const t0 = performance.now();
      try {
        await step.stop();
        logger.info({ component: step.name, ms: Math.round(performance.now() - t0) }, "stopped");
      } catch (err) {
        logger.error({ component: step.name, err }, "stop failed");
      }
    }
    steps.length = 0;
  };

  try {
    // 1. Database (migrations run inside openDatabase).
    let database: Database;
    if (config.databaseUrl) {
      database = await openDatabase({ url: config.databaseUrl, poolMax: config.dbPoolMax });
      logger.info({ db: "postgresql" }, "database ready");
    } else {
      const release = acquireDataDirLock(config.dataDir, "gpuorch-controller serve");
      steps.push({ name: "data-dir-lock", stop: async () => release() });
      database = await openDatabase({ dataDir: config.dataDir });
      logger.info({ db: "pglite", dataDir: config.dataDir }, "embedded database ready");
    }
    steps.push({ name: "database", stop: () => database.close() });
    const db = database.db;

    const authenticate = createTokenAuthenticator((hash) => findPrincipalByTokenHash(db, hash));

    // Prices: the shipped catalog (and a seed directory) go into gpu_pricing once per source; the
    // planner reads the effective catalog back, so live refreshes and seeds win over shipped rows.
    const shipped = await loadShippedCatalog();
    const seeded = await seedCatalogIfEmpty(db, shipped, { at: deps.clock.now() });
    const egress = [...shipped.egress];
    if (config.pricingSeedDir) {
      const seed = await loadCatalogDir(config.pricingSeedDir);
      const r = await seedCatalogIfEmpty(db, seed, { at: deps.clock.now() });
      seeded.inserted += r.inserted;
      seeded.sources.push(...r.sources);
      // A seed directory's egress.csv replaces the shipped tiers (they are not stored in the database).
      if (seed.egress.length > 0) egress.splice(0, egress.length, ...seed.egress);
    }
    if (seeded.inserted > 0) logger.info({ rows: seeded.inserted, sources: seeded.sources }, "price catalog seeded");
    const planner = new Planner({
      db,
      clock: deps.clock,
      logger: logger.child({ component: "planner" }),
      egress,
      onpremMicrosPerGpuHour: parseUsdMicros(config.onpremUsdPerGpuHour),
      admission: config.admission,
    });
    await planner.reload();

    // Alerts are recorded in the database, then delivered to the configured channels (durably, with retries).
    const dispatcher = createAlertDispatcher({
      channels: config.alertChannels,
      store: createDbAlertStore(db),
      logger: logger.child({ component: "alerts" }),
      now: () => deps.clock.now(),
      ids: deps.ids,
    });
    dispatcher.start();
    steps.push({ name: "alerts", stop: () => dispatcher.stop() });

    const notifier = new JobNotifier();
    // Created after the supervisor (it stops jobs through it); state changes before that are covered by its first refresh.
    let costTracker: CostTracker | null = null;
    const sessions = new AgentSessions();
    // The scheduler is created below; wakes before that are covered by its first pass.
    let scheduler: SchedulerLoop | null = null;
    const wakeScheduler = (): void => scheduler?.wake();
    const supervisor = new TaskSupervisor({
      db,
      ids: deps.ids,
      clock: deps.clock,
      logger: logger.child({ component: "tasks" }),
      sessions,
      stopGraceSeconds: config.taskStopGraceSeconds,
      launchTimeoutMs: config.taskLaunchTimeoutMs,
      checkpointTimeoutMs: config.checkpointTimeoutMs,
      adviseMigration: (job) => planner.adviseRequeue(job),
      onJobChanged: (id) => {
        notifier.notify(id);
        costTracker?.touch(id);
      },
      onCapacityFreed: wakeScheduler,
    });
    await supervisor.load();
    // Running costs and budgets; utilization is sampled on the same tick. Created after the supervisor it stops jobs through.
    const utilization = new UtilizationWatch({
      db,
      clock: deps.clock,
      ids: deps.ids,
      logger: logger.child({ component: "utilization" }),
      thresholdPercent: config.utilizationThresholdPercent,
      windowMs: config.utilizationWindowMs,
      dispatcher,
      offers: () => planner.offers,
    });
    let lastUtilizationSample = 0;
    const costs = new CostTracker({
      db,
      clock: deps.clock,
      ids: deps.ids,
      logger: logger.child({ component: "costs" }),
      intervalMs: config.costIntervalMs,
      thresholdsPct: validateBudgetThresholds(config.budgetThresholdsPct, "budgetThresholdsPct"),
      dispatcher,
      stopForBudget: async (jobId, reason) => {
        await supervisor.failJob(jobId, reason, { reason: "budget_exceeded" });
      },
      onRefreshed: () => {
        // Refreshes also follow state changes; utilization is sampled at most once per interval.
        const now = deps.clock.now().getTime();
        if (now - lastUtilizationSample < config.costIntervalMs) return;
        lastUtilizationSample = now;
        utilization.sample().catch((err: unknown) => logger.error({ err }, "utilization sample failed"));
      },
    });
    costTracker = costs;
    const specParser = new SpecParserPool({ workers: config.specWorkers, logger: logger.child({ component: "spec-parser" }) });
    // Pushed before the gRPC and HTTP servers, so it stops after they have drained.
    steps.push({ name: "spec-parser", stop: () => specParser.close() });
    const api = new JobsApi({
      parseSpec: (yaml) => specParser.parse(yaml),
      onSubmitted: () => scheduler?.wake("work"),
      onCancelled: (id) => {
        void supervisor.stopJob(id, "job cancelled");
        costs.touch(id);
      },
      admit: (spec, key) => planner.admit(spec, key),
      db,
      ids: deps.ids,
      logger: logger.child({ component: "jobs" }),
      notifier,
      submitBatch: {
        maxBatch: config.submitBatchMax,
        // PGlite has one connection: a second statement in flight would only queue behind the first.
        maxInFlight: database.kind === "pglite" ? 1 : Math.min(config.submitBatchInFlight, config.dbPoolMax),
      },
    });
    const metrics = createControllerMetrics(
      () => countJobsByStatus(db),
      () => countNodesByState(db),
      {
        costTotals: () => costTotalsByTeamProject(db),
        gpuUtilization: () => gpuUtilizationSamples(db),
        pricing: async () => {
          const [sources, status] = await Promise.all([summarizePricingSources(db), listPricingStatus(db)]);
          const providers = [...new Set(sources.map((x) => x.provider))].sort();
          return providers.map((p) => {
            const mine = sources.filter((x) => x.provider === p);
            const st = status.find((x) => x.provider === p);
            return {
              provider: p,
              oldestPriceDate: mine.map((x) => x.oldestPriceDate).sort()[0] ?? null,
              lastSuccessAt: st?.lastSuccessAt ?? null,
              consecutiveFailures: st?.consecutiveFailures ?? 0,
              rows: mine.reduce((a, x) => a + x.rows, 0),
            };
          });
        },
        now: () => deps.clock.now(),
      },
    );

    // Heartbeat ingest: started before gRPC so no stream ever records into a stopped buffer;
    // stopped after gRPC, so its last flush writes what the last streams sent.
    const ingest = new HeartbeatIngest({
      db,
      clock: deps.clock,
      logger: logger.child({ component: "heartbeats" }),
      flushIntervalMs: config.heartbeatFlushMs,
      sampleIntervalMs: config.heartbeatSampleMs,
      onFlush: (_nodes, seconds) => metrics.heartbeatFlushes.observe(seconds),
      onRevived: (changes) => {
        for (const c of changes) {
          metrics.nodeStateChanges.inc({ to: c.to });
          logger.info({ nodeId: c.nodeId, hostname: c.hostname, from: c.from, to: c.to }, "node ready again");
        }
      },
    });
    ingest.start();
    steps.push({ name: "heartbeat-ingest", stop: () => ingest.stop() });
    // Job output from agents: group-committed like heartbeats, stopped after gRPC so the last chunks are written.
    const logStore = new LogStore({ db, clock: deps.clock, logger: logger.child({ component: "logs" }) });
    logStore.start();
    steps.push({ name: "log-store", stop: () => logStore.stop() });
    const logsApi = new LogsApi({ db, logs: logStore, notifier, logger: logger.child({ component: "logs" }) });
    const grpcLifetime = new AbortController();

    let adminToken: string | null = null;
    let agentToken: string | null = null;
    if (config.embedded) {
      await ensureTeam(db, { id: deps.ids.newId(), name: DEFAULT_TEAM });
      const created = await createToken(db, deps.ids, { team: null, admin: true, kind: "user", name: "embedded-admin" });
      adminToken = created.token;
      // PGlite's data dir is locked while we run, so `token create` cannot mint one for a local agent then.
      agentToken = (await createToken(db, deps.ids, { team: DEFAULT_TEAM, admin: false, kind: "agent", name: "embedded-agent" })).token;
    }

    // 2. gRPC: JobService + standard health service.
    const grpcServer = createGrpcServer();
    grpcServer.addService(
      JobServiceService,
      createJobServiceImpl({ api, logsApi, plan: (principal, specYaml, limit) => planner.plan(principal, specYaml, limit), authenticate, logger: logger.child({ component: "grpc" }), onCall: metrics.observeGrpc }) as unknown as grpc.UntypedServiceImplementation,
    );
    grpcServer.addService(
      AgentServiceService,
      createAgentServiceImpl({
        db,
        ids: deps.ids,
        clock: deps.clock,
        authenticate,
        logger: logger.child({ component: "agents" }),
        ingest,
        heartbeatIntervalSeconds: config.heartbeatIntervalSeconds,
        onCall: metrics.observeGrpc,
        onHeartbeat: () => metrics.heartbeatsReceived.inc(),
        signal: grpcLifetime.signal,
        sessions,
        supervisor,
        logs: logStore,
        onNodeAvailable: wakeScheduler,
      }) as unknown as grpc.UntypedServiceImplementation,
    );
    grpcServer.addService(
      NodeServiceService,
      createNodeServiceImpl({
        db,
        ids: deps.ids,
        sessions,
        authenticate,
        logger: logger.child({ component: "grpc" }),
        onCall: metrics.observeGrpc,
        onNodeAvailable: wakeScheduler,
      }) as unknown as grpc.UntypedServiceImplementation,
    );
    grpcServer.addService(
      CostServiceService,
      createCostServiceImpl({
        db,
        clock: deps.clock,
        planner,
        authenticate,
        logger: logger.child({ component: "grpc" }),
        onCall: metrics.observeGrpc,
        recommendations: async (team) => utilization.recommendations(team),
      }) as unknown as grpc.UntypedServiceImplementation,
    );
    const health = new HealthImplementation({ "": "SERVING", "gpuorch.v1.JobService": "SERVING", "gpuorch.v1.AgentService": "SERVING" });
    health.addToServer(grpcServer);
    const grpcPort = await listen(grpcServer, config.grpcHost, config.grpcPort);
    steps.push({
      name: "grpc",
      stop: async () => {
        health.setStatus("", "NOT_SERVING");
        health.setStatus("gpuorch.v1.JobService", "NOT_SERVING");
        health.setStatus("gpuorch.v1.AgentService", "NOT_SERVING");
        // Agent streams never end on their own: end them (UNAVAILABLE shutting_down) so agents reconnect elsewhere or later.
        grpcLifetime.abort(new DOMException("controller shutting down", "AbortError"));
        await stopServer(grpcServer, config.shutdownGraceMs);
      },
    });
    logger.info({ port: grpcPort, host: config.grpcHost }, "gRPC listening");

    // 3. Node health loop (singleton behind an advisory lock).
    const healthLoop = new NodeHealthLoop({
      db,
      clock: deps.clock,
      logger: logger.child({ component: "node-health" }),
      intervalMs: config.nodeHealthIntervalMs,
      unreachableAfterMs: config.nodeUnreachableMs ?? config.heartbeatIntervalSeconds * 3_000,
      lostAfterMs: config.nodeLostMs,
      beforeSweep: () => ingest.flush(),
      afterSweep: () => supervisor.sweepCheckpointing().then(() => undefined),
      onChanges: (changes) => {
        for (const c of changes) metrics.nodeStateChanges.inc({ to: c.to });
        const lost = changes.filter((c) => c.to === "lost").map((c) => c.nodeId);
        supervisor.onNodesLost(lost).catch((err: unknown) => logger.error({ err, nodes: lost }, "handling lost nodes failed"));
      },
    });
    healthLoop.start();
    steps.push({ name: "node-health", stop: () => healthLoop.stop() });

    // 4. Scheduler loop (singleton behind an advisory lock).
    scheduler = new SchedulerLoop({
      db,
      ids: deps.ids,
      clock: deps.clock,
      logger: logger.child({ component: "scheduler" }),
      intervalMs: config.schedulerIntervalMs,
      batchLimit: config.schedulerBatch,
      onPlaced: (taskIds, launches) => supervisor.launch(taskIds, launches),
      onJobChanged: (id) => {
        notifier.notify(id);
        costs.touch(id);
      },
      priceTask: (node, gpus) => planner.nodePricer.price({ ...node, gpuCount: node.gpus.length }, gpus),
    });
    const started = scheduler;
    started.start();
    steps.push({ name: "scheduler", stop: () => started.stop() });

    // 5. Cost tracker (singleton behind an advisory lock); stopped before the database, after the scheduler.
    costs.start();
    steps.push({ name: "cost-tracker", stop: () => costs.stop() });

    // 6. Live price refresh, only for the providers asked for (needs credentials and network).
    if (config.pricingRefresh.length > 0) {
      const fetchers: PriceFetcher[] = config.pricingRefresh.map((p) => {
        switch (p) {
          case "aws":
            return createAwsPriceFetcher({ clock: deps.clock, ...(config.pricingAwsRegions.length > 0 ? { regions: config.pricingAwsRegions } : {}) });
          case "azure":
            return createAzurePriceFetcher({ clock: deps.clock });
          case "gcp": {
            const apiKey = process.env.GPUORCH_GCP_API_KEY ?? process.env.GOOGLE_API_KEY;
            return createGcpPriceFetcher({ clock: deps.clock, ...(apiKey ? { apiKey } : {}), availableIn: availabilityFromOffers(planner.offers) });
          }
        }
      });
      const refresher = createPricingRefresher({
        fetchers,
        store: createPricingStore(db),
        clock: deps.clock,
        logger: logger.child({ component: "pricing" }),
        ttlMs: config.pricingRefreshTtlMs,
        onRefreshed: () => {
          planner.reload().catch((err: unknown) => logger.error({ err }, "reloading the price catalog failed"));
        },
      });
      refresher.start();
      steps.push({ name: "pricing-refresh", stop: () => refresher.stop() });
    }

    // 7. HTTP admin.
    const http = createHttpAdmin({
      api,
      logsApi,
      authenticate,
      logger: logger.child({ component: "http" }),
      metrics,
      metricsAuth: config.metricsAuth,
      costs: {
        costs: async (principal, by, since) => toSnakeJson(await getCostsResponse(db, principal, by, since, deps.clock.now())),
        prices: async (_principal, q) => toSnakeJson(await listPrices(db, planner.offers, q, deps.clock.now())),
        plan: async (principal, specYaml, limit) => toSnakeJson(await planner.plan(principal, specYaml, limit)),
        recommendations: async (principal) => toSnakeJson(utilization.recommendations(principal.admin ? null : (principal.teamName ?? ""))),
      },
      ready: async () => {
        // A probe every few seconds must not scan the jobs table.
        await pingDatabase(db);
        return true;
      },
    });
    const httpPort = await new Promise<number>((resolve, reject) => {
      http.server.once("error", reject);
      http.server.listen(config.httpPort, config.httpHost, () => {
        const addr = http.server.address();
        resolve(typeof addr === "object" && addr ? addr.port : config.httpPort);
      });
    });
    steps.push({
      name: "http",
      stop: () =>
        new Promise<void>((resolve) => {
          http.setDraining();
          const force = setTimeout(() => http.server.closeAllConnections(), config.shutdownGraceMs);
          http.server.close(() => {
            clearTimeout(force);
            resolve();
          });
          http.server.closeIdleConnections();
        }),
    });
    logger.info({ port: httpPort, host: config.httpHost }, "HTTP admin listening");

    if (adminToken !== null) {
      writeCliConfig(config.cliConfigPath, `${config.grpcHost}:${grpcPort}`, adminToken, agentToken);
      logger.info({ path: config.cliConfigPath }, "wrote CLI config with an admin token");
    }
    if (config.readyFile) {
      writeAtomic(config.readyFile, JSON.stringify({ pid: process.pid, grpcPort, httpPort, adminToken }) + "\n");
    }
    return { grpcPort, httpPort, adminToken, agentToken, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

function writeAtomic(path: string, content: string, mode = 0o644): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, content, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}

function writeCliConfig(path: string, controller: string, token: string, agentToken: string | null): void {
  const doc = agentToken === null ? { controller, token } : { controller, token, agent_token: agentToken };
  writeAtomic(path, `# written by gpuorch-controller --embedded\n${toYaml(doc)}`, 0o600);
}

