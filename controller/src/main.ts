#!/usr/bin/env node
import { basename, dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { AppError, isAppError, type TokenKind } from "@gpuorch/core";
import { openDatabase } from "@gpuorch/db";
import { ShutdownManager, createIdSource, createLogger, loadConfig, systemClock } from "@gpuorch/runtime";
import { controllerConfigSchema, type ControllerConfig } from "./config.js";
import { startController } from "./controller.js";
import { acquireDataDirLock } from "./data-dir-lock.js";
import { createToken } from "./tokens.js";
import { type LocalAgent, localAgentAvailable, startLocalAgent } from "./local-agent.js";

const USAGE = `gpuorch-controller — the gpuorch control plane

Usage:
  gpuorch-controller serve [--embedded [--with-agent [--simulate-gpus FILE]]] [--grpc-port N] [--http-port N] [--data-dir DIR]
                           [--database-url URL] [--config FILE] [--log-level LEVEL]
                           [--heartbeat-interval-seconds N] [--heartbeat-flush-ms MS] [--heartbeat-sample-ms MS]
                           [--node-unreachable-ms MS] [--node-lost-ms MS] [--node-health-interval-ms MS]
                           [--scheduler-interval-ms MS] [--task-stop-grace-seconds N] [--task-launch-timeout-ms MS]
                           [--pricing-seed-dir DIR] [--pricing-refresh aws,gcp,azure] [--onprem-usd-per-gpu-hour USD]
                           [--no-admission] [--cost-interval-ms MS] [--budget-thresholds 50,80,100] [--checkpoint-timeout-ms MS]
                           [--utilization-threshold PCT] [--utilization-window-ms MS]
  gpuorch-controller token create --team NAME [--admin] [--kind user|agent] [--name NAME] [--json]
  gpuorch-controller token create --admin [--json]
  gpuorch-controller migrate [--data-dir DIR | --database-url URL]

--with-agent (embedded only) also runs one local gpuorch-agent; without a GPU it simulates one
from a real nvidia-smi capture so jobs run on the CPU. \`pnpm start\` uses it.

Prices: the shipped catalog (GCP rows and egress tiers) loads on first start; --pricing-seed-dir adds
aws.csv/gcp.csv/azure.csv/egress.csv from a directory; --pricing-refresh polls the providers' live price
APIs (credentials and network needed; default off). Alert channels (log, webhook, slack) are set in
--config FILE under alert_channels, or GPUORCH_ALERT_CHANNELS as JSON.

Configuration: flags > GPUORCH_* environment (e.g. GPUORCH_GRPC_PORT, DATABASE_URL) > --config FILE > defaults.
Without DATABASE_URL the controller embeds PostgreSQL (PGlite) in --data-dir (default ~/.gpuorch/data).`;

const FLAG_OPTIONS = {
  help: { type: "boolean", short: "h" },
  embedded: { type: "boolean" },
  "with-agent": { type: "boolean" },
  "simulate-gpus": { type: "string" },
  "grpc-host": { type: "string" },
  "grpc-port": { type: "string" },
  "http-host": { type: "string" },
  "http-port": { type: "string" },
  "data-dir": { type: "string" },
  "database-url": { type: "string" },
  "log-level": { type: "string" },
  "ready-file": { type: "string" },
  "cli-config": { type: "string" },
  "heartbeat-interval-seconds": { type: "string" },
  "heartbeat-flush-ms": { type: "string" },
  "heartbeat-sample-ms": { type: "string" },
  "node-unreachable-ms": { type: "string" },
  "node-lost-ms": { type: "string" },
  "node-health-interval-ms": { type: "string" },
  "scheduler-interval-ms": { type: "string" },
  "db-pool-max": { type: "string" },
  "submit-batch-max": { type: "string" },
  "submit-batch-in-flight": { type: "string" },
  "spec-workers": { type: "string" },
  "task-stop-grace-seconds": { type: "string" },
  "task-launch-timeout-ms": { type: "string" },
  "pricing-seed-dir": { type: "string" },
  "pricing-refresh": { type: "string" },
  "onprem-usd-per-gpu-hour": { type: "string" },
  "no-admission": { type: "boolean" },
  "cost-interval-ms": { type: "string" },
  "checkpoint-timeout-ms": { type: "string" },
  "budget-thresholds": { type: "string" },
  "utilization-threshold": { type: "string" },
  "utilization-window-ms": { type: "string" },
  config: { type: "string" },
  team: { type: "string" },
  admin: { type: "boolean" },
  kind: { type: "string" },
  name: { type: "string" },
  json: { type: "boolean" },
} as const;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: FLAG_OPTIONS, allowPositionals: true, strict: true });
  if (values.help || positionals.length === 0) {
    console.log(USAGE);
    return positionals.length === 0 && !values.help ? 2 : 0;
  }
  const flags: Record<string, unknown> = {};
  const map: Record<string, string> = {
    "grpc-host": "grpcHost",
    "grpc-port": "grpcPort",
    "http-host": "httpHost",
    "http-port": "httpPort",
    "data-dir": "dataDir",
    "database-url": "databaseUrl",
    "log-level": "logLevel",
    "ready-file": "readyFile",
    "cli-config": "cliConfigPath",
    "heartbeat-interval-seconds": "heartbeatIntervalSeconds",
    "heartbeat-flush-ms": "heartbeatFlushMs",
    "heartbeat-sample-ms": "heartbeatSampleMs",
    "node-unreachable-ms": "nodeUnreachableMs",
    "node-lost-ms": "nodeLostMs",
    "node-health-interval-ms": "nodeHealthIntervalMs",
    "scheduler-interval-ms": "schedulerIntervalMs",
    "db-pool-max": "dbPoolMax",
    "submit-batch-max": "submitBatchMax",
    "submit-batch-in-flight": "submitBatchInFlight",
    "spec-workers": "specWorkers",
    "task-stop-grace-seconds": "taskStopGraceSeconds",
    "task-launch-timeout-ms": "taskLaunchTimeoutMs",
    "pricing-seed-dir": "pricingSeedDir",
    "onprem-usd-per-gpu-hour": "onpremUsdPerGpuHour",
    "cost-interval-ms": "costIntervalMs",
    "checkpoint-timeout-ms": "checkpointTimeoutMs",
    "utilization-threshold": "utilizationThresholdPercent",
    "utilization-window-ms": "utilizationWindowMs",
  };
  const lists: Record<string, string> = { "pricing-refresh": "pricingRefresh", "budget-thresholds": "budgetThresholdsPct" };
  for (const [flag, key] of Object.entries(lists)) {
    const v = (values as Record<string, unknown>)[flag];
    if (typeof v === "string") flags[key] = v.split(",").map((x) => x.trim()).filter(Boolean);
  }
  if (values["no-admission"]) flags.admission = false;
  for (const [flag, key] of Object.entries(map)) {
    const v = (values as Record<string, unknown>)[flag];
    if (v !== undefined) flags[key] = v;
  }
  if (values.embedded) flags.embedded = true;
  if (values["with-agent"]) flags.withAgent = true;
  if (values["simulate-gpus"] !== undefined) flags.simulateGpus = values["simulate-gpus"];
  const env = { ...process.env };
  if (env.DATABASE_URL && !env.GPUORCH_DATABASE_URL) env.GPUORCH_DATABASE_URL = env.DATABASE_URL;
  const config: ControllerConfig = loadConfig(controllerConfigSchema, { flags, env, envPrefix: "GPUORCH_", file: values.config ?? null });

  const [cmd, sub] = positionals;
  switch (cmd) {
    case "serve":
      return serve(config);
    case "migrate":
      return withDatabase(config, "gpuorch-controller migrate", async () => {
        console.log("migrations applied");
        return 0;
      });
    case "token":
      if (sub !== "create") throw AppError.invalid(`unknown token command '${sub ?? ""}' (expected: token create)`);
      return tokenCreate(config, values);
    case undefined:
    default:
      throw AppError.invalid(`unknown command '${cmd ?? ""}'\n\n${USAGE}`);
  }
}

async function serve(config: ControllerConfig): Promise<number> {
  const logger = createLogger({ name: "gpuorch-controller", level: config.logLevel });
  if (config.withAgent && !config.embedded) {
    throw AppError.invalid("--with-agent needs --embedded (elsewhere run gpuorch-agent on each node)", [{ field: "with-agent", message: "only with --embedded" }]);
  }
  const running = await startController(config, { logger, clock: systemClock, ids: createIdSource() });
  let agent: LocalAgent | null = null;
  if (config.withAgent && running.agentToken && localAgentAvailable()) {
    agent = startLocalAgent({
      controller: `127.0.0.1:${running.grpcPort}`,
      token: running.agentToken,
      workDir: join(dirname(config.dataDir), "agent"),
      logger: logger.child({ component: "local-agent" }),
      codeDir: process.cwd(),
      ...(config.simulateGpus ? { simulateGpus: config.simulateGpus } : {}),
    });
  }
  if (running.adminToken) {
    // Human banner on stdout; structured logs stay on stderr.
    console.log(
      [
        "",
        "gpuorch controller is running (embedded database)",
        `  gRPC   127.0.0.1:${running.grpcPort}    HTTP  http://127.0.0.1:${running.httpPort}`,
        `  admin token: ${running.adminToken}`,
        ...(running.agentToken ? [`  agent token: ${running.agentToken}  (for gpuorch-agent run --token)`] : []),
        `  (written to ${config.cliConfigPath} for the gpuorch CLI)`,
        ...(agent
          ? [
              agent.simulated
                ? `  local agent: no GPU found, simulating ${basename(agent.simulated)} (jobs run on the CPU)`
                : "  local agent: using this machine's GPUs",
            ]
          : []),
        "",
        "Try: node packages/cli/dist/main.js submit examples/hello.yaml && node packages/cli/dist/main.js watch <JOB_ID>",
        "     node packages/cli/dist/main.js submit examples/local-ddp.yaml   (2-rank PyTorch DDP on this node)",
        "     node packages/cli/dist/main.js nodes",
        "",
      ].join("\n"),
    );
  }
  return new Promise<number>((resolve) => {
    const shutdown = new ShutdownManager({ logger, timeoutMs: config.shutdownGraceMs + 5_000, onDone: (code) => resolve(code) });
    shutdown.add("controller", () => running.stop());
    // Stopped first (reverse order): its tasks end and report while the controller still listens.
    const local = agent;
    if (local) shutdown.add("local-agent", () => local.stop());
    shutdown.install(process);
  });
}

async function withDatabase(config: ControllerConfig, purpose: string, fn: (db: Awaited<ReturnType<typeof openDatabase>>) => Promise<number>): Promise<number> {
  const release = config.databaseUrl ? () => {} : acquireDataDirLock(config.dataDir, purpose);
  try {
    const database = config.databaseUrl ? await openDatabase({ url: config.databaseUrl, poolMax: 2 }) : await openDatabase({ dataDir: config.dataDir });
    try {
      return await fn(database);
    } finally {
      await database.close();
    }
  } finally {
    release();
  }
}

async function tokenCreate(config: ControllerConfig, values: { team?: string; admin?: boolean; kind?: string; name?: string; json?: boolean }): Promise<number> {
  const kind = (values.kind ?? "user") as TokenKind;
  if (kind !== "user" && kind !== "agent") {
    throw AppError.invalid(`--kind must be user or agent, got '${values.kind}'`, [{ field: "kind", message: "expected user or agent" }]);
  }
  if (!values.admin && !values.team) {
    throw AppError.invalid("--team NAME is required (or --admin for a token that sees every team)", [{ field: "team", message: "required" }]);
  }
  if (values.admin && kind === "agent") throw AppError.invalid("agent tokens cannot be admin", [{ field: "admin", message: "not with --kind agent" }]);
  return withDatabase(config, "gpuorch-controller token create", async (database) => {
    const t = await createToken(database.db, createIdSource(), {
      team: values.team ?? null,
      admin: values.admin ?? false,
      kind,
      name: values.name ?? `${kind}${values.team ? `-${values.team}` : ""}${values.admin ? "-admin" : ""}`,
    });
    if (values.json) console.log(JSON.stringify({ id: t.id, token: t.token, team: t.team, kind: t.kind, admin: t.admin, name: t.name }));
    else {
      console.log(t.token);
      console.error(`created ${t.admin ? "admin " : ""}${t.kind} token ${t.id}${t.team ? ` for team ${t.team}` : ""}; it is shown only once`);
    }
    return 0;
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (isAppError(err)) {
      console.error(`gpuorch-controller: ${err.message}`);
      for (const f of err.fields) console.error(`  ${f.field}: ${f.message}`);
      process.exitCode = err.code === "INVALID_ARGUMENT" ? 2 : 1;
    } else if (err instanceof TypeError && "code" in err && String((err as { code: unknown }).code).startsWith("ERR_PARSE_ARGS")) {
      console.error(`gpuorch-controller: ${err.message}\n\n${USAGE}`);
      process.exitCode = 2;
    } else {
      console.error("gpuorch-controller: fatal:", err);
      process.exitCode = 1;
    }
  },
);
