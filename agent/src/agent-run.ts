import { parseArgs } from "node:util";
import { isAppError, toAppError } from "@gpuorch/core";
import { AgentClient } from "@gpuorch/rpc";
import { type Logger, ShutdownManager, type SignalSource, createLogger, loadConfig } from "@gpuorch/runtime";
import { agentConfigSchema } from "./agent-config.js";
import { discoverGpus, discoverGpusFromFiles } from "./gpu/discovery.js";
import { collectHostInfo, type HostInfo } from "./host-info.js";
import { AgentLink } from "./link/agent-link.js";
import { GpuSampler } from "./link/gpu-sampler.js";
import { createFileNodeIdStore } from "./link/node-id-store.js";
import { registrationFromInventory, samplesFromGpus } from "./link/registration.js";
import { collectNodeInventory } from "./node-inventory.js";
import { resolveNodeLabels } from "./imds/node-labels.js";
import { TaskManager } from "./tasks/task-manager.js";
import { launchFromProto, stopFromProto } from "@gpuorch/rpc";

export const RUN_USAGE = `run options:
  --controller HOST:PORT  controller gRPC address (env GPUORCH_CONTROLLER)
  --token TOKEN           agent token, gpo_a_… (env GPUORCH_TOKEN)
  --work-dir DIR          agent state, e.g. the persisted node id (default ~/.gpuorch/agent)
  --node-name NAME        register under this name instead of the host name
  --provider P --region R --zone Z --network N --instance-type T --private-ip IP --spot
                          node labels (env GPUORCH_PROVIDER, …)
  --simulate-gpus FILE    replay a captured \`nvidia-smi -q -x\` as this node's GPUs
  --nvidia-smi PATH       nvidia-smi to run
  --heartbeat-seconds N   heartbeat period (default: the controller's)
  --reconnect-max-ms MS   cap of the reconnect backoff (default 30000)
  --imds off|auto|aws|gcp|azure
                          fill empty labels from the cloud metadata service (env GPUORCH_IMDS; default off)
  --imds-endpoint URL     metadata service base URL (env GPUORCH_IMDS_ENDPOINT)
  --torchrun PATH         torchrun to launch pytorch_ddp jobs with (default torchrun)
  --python PATH           python for .py entrypoints (default python3)
  --code-dir DIR          relative entrypoint paths start here (default the current directory)
  --stop-grace-ms MS      SIGTERM → SIGKILL grace when stopping tasks (default 10000)
  --log-level LEVEL       default warn
  --config FILE           YAML/JSON config file
`;

export interface RunIo {
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
  /** Where SIGINT/SIGTERM come from; default: process. */
  signals?: SignalSource;
  collectHost?: () => Promise<HostInfo>;
  logger?: Logger;
}

/** `gpuorch-agent run`: discover, register, keep the link until SIGTERM. Resolves with the exit code. */
export async function runDaemon(argv: readonly string[], io: RunIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        controller: { type: "string" },
        token: { type: "string" },
        "work-dir": { type: "string" },
        "node-name": { type: "string" },
        provider: { type: "string" },
        region: { type: "string" },
        zone: { type: "string" },
        network: { type: "string" },
        "instance-type": { type: "string" },
        "private-ip": { type: "string" },
        spot: { type: "boolean" },
        "simulate-gpus": { type: "string" },
        "nvidia-smi": { type: "string" },
        "heartbeat-seconds": { type: "string" },
        "reconnect-max-ms": { type: "string" },
        imds: { type: "string" },
        "imds-endpoint": { type: "string" },
        "imds-timeout-ms": { type: "string" },
        torchrun: { type: "string" },
        python: { type: "string" },
        "code-dir": { type: "string" },
        "stop-grace-ms": { type: "string" },
        "log-level": { type: "string" },
        config: { type: "string" },
      },
      allowPositionals: false,
      strict: true,
    }));
  } catch (e) {
    io.stderr(`gpuorch-agent run: ${e instanceof Error ? e.message : String(e)}\n\n${RUN_USAGE}`);
    return 2;
  }
  const num = (v: string | undefined): number | undefined => (v === undefined ? undefined : Number(v));
  let config;
  try {
    config = loadConfig(agentConfigSchema, {
      flags: {
        controller: values.controller,
        token: values.token,
        workDir: values["work-dir"],
        nodeName: values["node-name"],
        provider: values.provider,
        region: values.region,
        zone: values.zone,
        network: values.network,
        instanceType: values["instance-type"],
        privateIp: values["private-ip"],
        spot: values.spot,
        nvidiaSmiPath: values["nvidia-smi"],
        heartbeatSeconds: num(values["heartbeat-seconds"]),
        reconnectMaxMs: num(values["reconnect-max-ms"]),
        imds: values.imds,
        imdsEndpoint: values["imds-endpoint"],
        imdsTimeoutMs: num(values["imds-timeout-ms"]),
        torchrunPath: values.torchrun,
        pythonPath: values.python,
        codeDir: values["code-dir"],
        stopGraceMs: num(values["stop-grace-ms"]),
        logLevel: values["log-level"],
      },
      env: io.env,
      file: values.config ?? null,
    });
  } catch (e) {
    io.stderr(`gpuorch-agent run: ${toAppError(e).message}\n`);
    return 2;
  }
  if (!config.controller || !config.token) {
    io.stderr(`gpuorch-agent run: --controller and --token are required (or GPUORCH_CONTROLLER / GPUORCH_TOKEN)\n\n${RUN_USAGE}`);
    return 2;
  }
  const logger = io.logger ?? createLogger({ name: "gpuorch-agent", level: config.logLevel });
  const simulate = values["simulate-gpus"];
  try {
    const [inv, resolved] = await Promise.all([
      collectNodeInventory(
        { nvidiaSmiPath: config.nvidiaSmiPath, nvidiaSmiTimeoutMs: config.nvidiaSmiTimeoutMs, ...(simulate !== undefined ? { simulateGpus: simulate } : {}) },
        { logger, collectHost: io.collectHost ?? collectHostInfo },
      ),
      resolveNodeLabels(config, { logger }),
    ]);
    if (inv.degraded) logger.warn({ reason: inv.degraded.reason, message: inv.degraded.message }, "node is degraded");
    const registration = registrationFromInventory(inv, { hostname: config.nodeName, labels: resolved.labels });
    // The sampler reads once per heartbeat interval, whatever the link settled on.
    let link: AgentLink | null = null;
    const sampler = new GpuSampler({
      initial: samplesFromGpus(inv.gpus),
      intervalMs: () => link?.heartbeatIntervalMs ?? (config.heartbeatSeconds ?? 5) * 1000,
      logger: logger.child({ component: "gpu-sampler" }),
      read: async (signal) => {
        const d =
          simulate !== undefined
            ? await discoverGpusFromFiles({ xmlFile: simulate, source: "simulated" })
            : await discoverGpus({ logger, path: config.nvidiaSmiPath, timeoutMs: config.nvidiaSmiTimeoutMs, signal });
        return samplesFromGpus(d.inventory.gpus);
      },
    });
    const client = new AgentClient({ address: config.controller, token: config.token });
    const tasks = new TaskManager({
      workDir: config.workDir,
      logger: logger.child({ component: "tasks" }),
      paths: { torchrun: config.torchrunPath, python: config.pythonPath },
      codeDir: config.codeDir ?? process.cwd(),
      stopGraceMs: config.stopGraceMs,
      onStatus: (report) => link?.sendTaskStatus(report),
      onLogs: (chunk) => link?.sendLogs(chunk),
    });
    const recovered = await tasks.recover();
    if (recovered > 0) logger.warn({ tasks: recovered }, "stopped tasks an earlier agent process left running; reporting them lost");
    link = new AgentLink({
      tasks: () => tasks.reports(),
      draining: () => tasks.isDraining,
      onCommand: (res) => {
        try {
          if (res.launch) tasks.launch(launchFromProto(res.launch));
          else if (res.stop) tasks.stop(stopFromProto(res.stop));
          else if (res.drain) tasks.setDraining(res.drain.drain);
          else if (res.forget) tasks.forget(res.forget.taskIds);
        } catch (err) {
          logger.error({ err: toAppError(err).message }, "bad command from the controller; ignored");
        }
      },
      client,
      registration: () => registration,
      samples: () => sampler.samples(),
      nodeIds: createFileNodeIdStore(config.workDir),
      logger: logger.child({ component: "link" }),
      heartbeatSeconds: config.heartbeatSeconds,
      backoff: { baseMs: Math.min(config.reconnectBaseMs, config.reconnectMaxMs), maxMs: config.reconnectMaxMs, jitter: "full" },
      onStateChange: (state) => logger.debug({ state }, "link state"),
    });
    return await new Promise<number>((resolve) => {
      const shutdown = new ShutdownManager({ logger, timeoutMs: 10_000, onDone: resolve });
      shutdown.add("grpc-client", async () => client.close());
      sampler.start();
      shutdown.add("gpu-sampler", () => sampler.stop());
      const started = link!;
      started.start();
      shutdown.add("link", () => started.stop());
      // Stopped first (shutdown runs in reverse), while the link can still report the ends.
      shutdown.add("tasks", () => tasks.stopAll());
      shutdown.install(io.signals ?? process);
      logger.info({ controller: config.controller, hostname: registration.hostname, gpus: registration.gpus.length }, "agent running");
    });
  } catch (e) {
    const err = toAppError(e);
    io.stderr(`gpuorch-agent run: ${err.message}${isAppError(e) ? "" : " (unexpected)"}\n`);
    return 1;
  }
}
