import { join } from "node:path";
import { parseArgs } from "node:util";
import { type AgentArtifactReport, type AgentInterruptionReport, isAppError, toAppError } from "@gpuorch/core";
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
import { checkpointNowFromProto, launchFromProto, stopFromProto } from "@gpuorch/rpc";
import { type OpenStoreOptions, openObjectStore } from "@gpuorch/storage";
import { deleteCheckpoint, MANIFEST_NAME } from "./checkpoints/checkpoints.js";
import { ArtifactOutbox } from "./link/artifact-outbox.js";
import { CLOUD_PROVIDERS, type CloudProvider } from "./imds/index.js";
import { InterruptionWatcher, type InterruptionNotice } from "./imds/interruption.js";

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
  --interruption off|auto|aws|gcp|azure
                          poll spot interruption notices (env GPUORCH_INTERRUPTION; default auto:
                          on spot nodes of aws/gcp/azure)
  --interruption-endpoint URL  metadata service the notices are read from (default --imds-endpoint)
  --interruption-interval-ms MS  poll period (default AWS 5000, GCP 1000, Azure 5000)
  --checkpoint-now-timeout-ms MS  how long an emergency checkpoint may take (default 120000)
  --checkpoint-poll-ms MS how often checkpoint directories are scanned (default 1000)
  --max-fetch-bytes N     largest entrypoint or dataset fetched from an object store (default 10 GiB)
  --s3-endpoint URL --azure-endpoint URL --gcs-endpoint URL
                          object-store endpoints (S3-compatible gateways, Azurite, emulators)
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
        interruption: { type: "string" },
        "interruption-endpoint": { type: "string" },
        "interruption-interval-ms": { type: "string" },
        "checkpoint-now-timeout-ms": { type: "string" },
        "checkpoint-poll-ms": { type: "string" },
        "max-fetch-bytes": { type: "string" },
        "s3-endpoint": { type: "string" },
        "azure-endpoint": { type: "string" },
        "gcs-endpoint": { type: "string" },
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
        interruption: values.interruption,
        interruptionEndpoint: values["interruption-endpoint"],
        interruptionIntervalMs: num(values["interruption-interval-ms"]),
        checkpointNowTimeoutMs: num(values["checkpoint-now-timeout-ms"]),
        checkpointPollMs: num(values["checkpoint-poll-ms"]),
        maxFetchBytes: num(values["max-fetch-bytes"]),
        s3Endpoint: values["s3-endpoint"],
        azureEndpoint: values["azure-endpoint"],
        gcsEndpoint: values["gcs-endpoint"],
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
    const storeOptions: OpenStoreOptions = {
      ...(config.s3Endpoint ? { s3Endpoint: config.s3Endpoint } : {}),
      ...(config.azureEndpoint ? { azureEndpoint: config.azureEndpoint } : {}),
      ...(config.gcsEndpoint ? { gcsEndpoint: config.gcsEndpoint } : {}),
    };
    // Interruption reports wait here while the controller is unreachable (they are few).
    const unsentInterruptions: AgentInterruptionReport[] = [];
    const sendInterruption = (r: AgentInterruptionReport): void => {
      if (!link?.sendInterruption(r)) unsentInterruptions.push(r);
    };
    /** Deletes checkpoints (manifest URIs) or plain objects: retention, and uploads the controller refused. */
    const deleteObjects = async (uris: readonly string[]): Promise<void> => {
      for (const uri of uris) {
        try {
          const { store, location } = openObjectStore(uri, storeOptions);
          if (location.key.endsWith(`/${MANIFEST_NAME}`)) await deleteCheckpoint(store, location.key);
          else await store.delete([location.key]);
        } catch (err) {
          logger.warn({ uri, err: toAppError(err).message }, "deleting an artifact's objects failed");
        }
      }
    };
    const outbox = new ArtifactOutbox({
      file: join(config.workDir, "artifact-outbox.json"),
      send: (r: AgentArtifactReport) => link?.sendArtifact(r) ?? false,
      logger: logger.child({ component: "artifacts" }),
      // A refused upload belongs to an attempt that is over (fencing): its objects are garbage.
      onRefused: (r) => void deleteObjects([r.uri]),
    });
    const tasks = new TaskManager({
      workDir: config.workDir,
      logger: logger.child({ component: "tasks" }),
      paths: { torchrun: config.torchrunPath, python: config.pythonPath },
      codeDir: config.codeDir ?? process.cwd(),
      stopGraceMs: config.stopGraceMs,
      onStatus: (report) => link?.sendTaskStatus(report),
      onLogs: (chunk) => link?.sendLogs(chunk),
      onArtifact: (r) => outbox.add(r),
      onCheckpointNow: (cmd, result) => {
        if (result.ok) return;
        sendInterruption({
          provider: "",
          kind: "checkpoint-now",
          at: null,
          detail: cmd.reason,
          stage: "checkpoint_failed",
          message: result.message,
          tasks: [{ taskId: cmd.taskId, jobId: cmd.jobId, attempt: cmd.attempt }],
        });
      },
      storeOptions,
      checkpointPollMs: config.checkpointPollMs,
      checkpointNowTimeoutMs: config.checkpointNowTimeoutMs,
      maxFetchBytes: config.maxFetchBytes,
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
          else if (res.checkpointNow) tasks.checkpointNow(checkpointNowFromProto(res.checkpointNow));
          else if (res.artifactAck) outbox.ack(res.artifactAck.artifactId, res.artifactAck.accepted, res.artifactAck.reason);
          else if (res.deleteArtifacts) void deleteObjects(res.deleteArtifacts.uris);
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
      onStateChange: (state) => {
        logger.debug({ state }, "link state");
        if (state !== "connected") return;
        outbox.resendAll();
        for (const r of unsentInterruptions.splice(0)) sendInterruption(r);
      },
    });
    const interruptionProvider = pickInterruptionProvider(config.interruption, resolved.labels);
    const watcher = interruptionProvider
      ? new InterruptionWatcher({
          provider: interruptionProvider,
          logger: logger.child({ component: "interruption" }),
          ...(config.interruptionIntervalMs !== undefined ? { intervalMs: config.interruptionIntervalMs } : {}),
          ...((config.interruptionEndpoint ?? config.imdsEndpoint) ? { endpoint: config.interruptionEndpoint ?? config.imdsEndpoint } : {}),
          onNotice: (notice) => onInterruptionNotice(notice, tasks, sendInterruption),
        })
      : null;
    return await new Promise<number>((resolve) => {
      const shutdown = new ShutdownManager({ logger, timeoutMs: 10_000, onDone: resolve });
      shutdown.add("grpc-client", async () => client.close());
      sampler.start();
      shutdown.add("gpu-sampler", () => sampler.stop());
      if (watcher) {
        watcher.start();
        shutdown.add("interruption-watcher", () => watcher.stop());
      }
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

/** Which provider's notices to poll: auto polls spot nodes of aws/gcp/azure only (on-demand and on-prem nodes are not preempted). */
export function pickInterruptionProvider(mode: string, labels: { provider: string; spot: boolean }): CloudProvider | null {
  if (mode === "off") return null;
  if (mode !== "auto") return mode as CloudProvider;
  return labels.spot && (CLOUD_PROVIDERS as readonly string[]).includes(labels.provider) ? (labels.provider as CloudProvider) : null;
}

/**
 * A spot interruption notice: the controller hears of it at once (the node
 * turns preempting and its jobs checkpointing), every running task with a
 * checkpoint URI takes an emergency checkpoint, and the outcome follows.
 */
async function onInterruptionNotice(notice: InterruptionNotice, tasks: TaskManager, send: (r: AgentInterruptionReport) => void): Promise<void> {
  const base = { provider: notice.provider, kind: notice.kind, at: notice.at, detail: notice.detail };
  const live = tasks.reports().filter((r) => r.state === "running" || r.state === "starting");
  send({ ...base, stage: "notice", message: "", tasks: live.map((r) => ({ taskId: r.taskId, jobId: r.jobId, attempt: r.attempt })) });
  const results = await tasks.checkpointAllNow(`spot interruption notice (${notice.provider} ${notice.kind})`);
  const ok = results.filter((r) => r.result.ok);
  const failed = results.filter((r) => !r.result.ok);
  const ref = (r: (typeof results)[number]) => ({ taskId: r.taskId, jobId: r.jobId, attempt: r.attempt });
  if (ok.length > 0) send({ ...base, stage: "checkpointed", message: "", tasks: ok.map(ref) });
  if (failed.length > 0) {
    const message = failed.map((f) => (f.result.ok ? "" : f.result.message)).join("; ");
    send({ ...base, stage: "checkpoint_failed", message, tasks: failed.map(ref) });
  }
}
