#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { AppError, ARTIFACT_TYPES, type ArtifactType, type JobEvent, type NodeInfo, type NodeState, NODE_STATES, isAppError, isNodeState, isJobStatus, isTerminal, type JobStatus, parseSince } from "@gpuorch/core";
import {
  CostClient,
  JobClient,
  NodeClient,
  nodeFromProto,
  nodeStateToProto,
  nodeToJson,
  artifactFromProto,
  artifactToJson,
  artifactTypeToProto,
  jobEventFromProto,
  jobEventToJson,
  jobFromProto,
  jobStatusFromProto,
  jobStatusToProto,
  jobTaskFromProto,
  jobTaskToJson,
  jobToJson,
  type WireJob,
} from "@gpuorch/rpc";
import { formatSpecIssues, parseJobSpec } from "@gpuorch/spec";
import { resolveCliConfig } from "./cli-config.js";
import { cents, runCosts, runPlan, runPricing, runRecommendations } from "./cost-commands.js";
import { formatTasks } from "./job-tasks.js";
import { parseLogsOptions, printLogs } from "./logs-command.js";
import { ago, formatTable } from "./table.js";

const USAGE = `gpuorch — submit and follow GPU jobs

Usage:
  gpuorch submit FILE|- [--name NAME] [--idempotency-key KEY] [--watch]
  gpuorch get JOB [--spec]
  gpuorch list [--status S[,S]] [--team T] [--project P] [--limit N] [--all] [--page-token T]
  gpuorch cancel JOB [--reason TEXT]
  gpuorch events JOB
  gpuorch watch JOB
  gpuorch logs JOB [-f|--follow] [--rank N] [--tail N] [--attempt N]
  gpuorch artifacts JOB [--type checkpoint|log|model|metrics]
  gpuorch nodes [--state S[,S]]   (ready, unreachable, lost, draining)
  gpuorch nodes drain NODE_ID | gpuorch nodes undrain NODE_ID   (admin)
  gpuorch plan FILE|- [--limit N]        price a spec without submitting it (exit 1 when infeasible)
  gpuorch pricing [--gpu A100[,H100]] [--provider aws] [--region R] [--spot] [--limit N]
  gpuorch costs [--by team|project|job] [--since 7d|2026-11-01]
  gpuorch recommendations                GPUs used under the threshold, and cheaper types that fit

logs prints the job's stored output (every attempt, oldest first; lines are
"[rank N] text", gpuorch's own notes "[gpuorch] …"); --tail N only the last N
lines, --rank N one rank, --attempt N one attempt; -f follows new lines until
the job is terminal. It exits 0 however the job ended: use watch for that.

Every command takes --json (machine-readable output; watch prints one JSON object per line),
--controller HOST:PORT and --token TOKEN (or GPUORCH_CONTROLLER / GPUORCH_TOKEN, or
~/.gpuorch/config.yaml). Exit codes: 0 ok, 1 error (or a watched job that failed/was cancelled),
2 invalid input, 3 controller unreachable.`;

const OPTIONS = {
  help: { type: "boolean", short: "h" },
  json: { type: "boolean" },
  controller: { type: "string" },
  token: { type: "string" },
  name: { type: "string" },
  "idempotency-key": { type: "string" },
  watch: { type: "boolean", short: "w" },
  follow: { type: "boolean", short: "f" },
  rank: { type: "string" },
  tail: { type: "string" },
  attempt: { type: "string" },
  spec: { type: "boolean" },
  status: { type: "string", multiple: true },
  state: { type: "string", multiple: true },
  team: { type: "string" },
  project: { type: "string" },
  limit: { type: "string" },
  all: { type: "boolean" },
  "page-token": { type: "string" },
  reason: { type: "string" },
  type: { type: "string" },
  timeout: { type: "string" },
  gpu: { type: "string", multiple: true },
  provider: { type: "string", multiple: true },
  region: { type: "string", multiple: true },
  spot: { type: "boolean" },
  by: { type: "string" },
  since: { type: "string" },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>["values"];

class Output {
  constructor(readonly json: boolean) {}
  data(obj: unknown): void {
    process.stdout.write(JSON.stringify(obj) + "\n");
  }
  text(s: string): void {
    process.stdout.write(s + "\n");
  }
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  const out = new Output(values.json ?? false);
  const [cmd, ...rest] = positionals;
  if (values.help || !cmd) {
    out.text(USAGE);
    return cmd || values.help ? 0 : 2;
  }
  if (cmd === "submit") {
    // Validate locally first: spec errors never need a round-trip.
    const file = need(rest[0], "FILE (or - for stdin)");
    const bytes = file === "-" ? readFileSync(0) : readFileOrFail(file);
    const parsed = parseJobSpec(bytes);
    if (!parsed.ok) {
      if (out.json) out.data({ error: { code: "invalid_spec", message: "invalid job spec", details: { fields: parsed.issues } } });
      else process.stderr.write(formatSpecIssues(parsed.issues, file === "-" ? "<stdin>" : file) + "\n");
      return 2;
    }
    return withClient(values, async (client) => {
      const res = await client.submitJob({
        specYaml: Buffer.from(bytes).toString("utf8"),
        name: values.name ?? "",
        idempotencyKey: values["idempotency-key"] ?? "",
      });
      if (!values.watch) {
        if (out.json) out.data({ id: res.id, name: res.name, status: jobStatusFromProto(res.status, "status"), created_at: res.createdAt?.toISOString() ?? null, deduplicated: res.deduplicated });
        else out.text(`job ${res.id} (${res.name}) ${res.deduplicated ? "already submitted" : "submitted"}: ${jobStatusFromProto(res.status, "status")}`);
        return 0;
      }
      if (!out.json) out.text(`job ${res.id} (${res.name}) submitted; watching (Ctrl-C stops watching, not the job)`);
      return watch(client, res.id, out);
    });
  }
  if (cmd === "nodes") {
    const cfg = resolveCliConfig({ controller: values.controller, token: values.token }, process.env);
    if (!cfg.token) throw AppError.unauthenticated(`no token: pass --token, set GPUORCH_TOKEN, or put 'token:' in ${cfg.configPath}`);
    const client = new NodeClient({ address: cfg.controller, token: cfg.token, timeoutMs: values.timeout ? intFlag(values.timeout, "timeout") : 15_000 });
    try {
      if (rest[0] === "drain" || rest[0] === "undrain") {
        const res = await client.drainNode({ nodeId: need(rest[1], "NODE_ID"), drain: rest[0] === "drain" });
        const node = nodeFromProto(need(res.node, "node"));
        if (out.json) out.data(nodeToJson(node));
        else out.text(`node ${node.hostname} (${node.id}) is ${node.state}\n\n${formatNodes([node], new Date())}`);
        return 0;
      }
      if (rest[0] !== undefined) throw AppError.invalid(`unknown nodes subcommand '${rest[0]}' (expected drain or undrain)`, [{ field: "nodes", message: "expected drain or undrain" }]);
      const states = (values.state ?? []).flatMap((x) => x.split(",")).filter(Boolean);
      for (const x of states) if (!isNodeState(x)) throw AppError.invalid(`unknown node state '${x}'`, [{ field: "state", message: `expected one of ${NODE_STATES.join(", ")}` }]);
      const nodes = (await client.listNodes({ states: (states as NodeState[]).map(nodeStateToProto) })).nodes.map(nodeFromProto);
      if (out.json) out.data({ nodes: nodes.map(nodeToJson) });
      else out.text(formatNodes(nodes, new Date()));
      return 0;
    } finally {
      client.close();
    }
  }
  if (cmd === "pricing" || cmd === "costs" || cmd === "recommendations") {
    // Flags first: a typo is exit 2 even with no controller around.
    const since = cmd === "costs" && values.since !== undefined ? parseSince(values.since, new Date(), "--since") : undefined;
    const limit = values.limit ? intFlag(values.limit, "limit") : undefined;
    const cfg = resolveCliConfig({ controller: values.controller, token: values.token }, process.env);
    if (!cfg.token) throw AppError.unauthenticated(`no token: pass --token, set GPUORCH_TOKEN, or put 'token:' in ${cfg.configPath}`);
    const client = new CostClient({ address: cfg.controller, token: cfg.token, timeoutMs: values.timeout ? intFlag(values.timeout, "timeout") : 15_000 });
    const print = (s: string): void => out.text(s);
    try {
      if (cmd === "pricing") return await runPricing(client, { gpu: values.gpu, provider: values.provider, region: values.region, spot: values.spot, limit }, out.json, print);
      if (cmd === "costs") return await runCosts(client, values.by ?? "team", since, out.json, print);
      return await runRecommendations(client, out.json, print);
    } finally {
      client.close();
    }
  }
  if (cmd === "plan") {
    const file = need(rest[0], "FILE (or - for stdin)");
    const bytes = file === "-" ? readFileSync(0) : readFileOrFail(file);
    const parsed = parseJobSpec(bytes);
    if (!parsed.ok) {
      if (out.json) out.data({ error: { code: "invalid_spec", message: "invalid job spec", details: { fields: parsed.issues } } });
      else process.stderr.write(formatSpecIssues(parsed.issues, file === "-" ? "<stdin>" : file) + "\n");
      return 2;
    }
    const limit = values.limit ? intFlag(values.limit, "limit") : 0;
    return withClient(values, (client) => runPlan(client, Buffer.from(bytes).toString("utf8"), limit, out.json, (s) => out.text(s)));
  }
  if (cmd === "logs") {
    // Flags are checked before connecting: a typo is exit 2 even with no controller around.
    const opts = parseLogsOptions(rest[0], { ...values, json: out.json });
    return withClient(values, async (client) => {
      const ac = new AbortController();
      const onSig = (): void => ac.abort();
      process.once("SIGINT", onSig);
      try {
        return await printLogs(client, opts, (s) => process.stdout.write(s), ac.signal);
      } finally {
        process.removeListener("SIGINT", onSig);
      }
    });
  }
  return withClient(values, async (client) => {
    switch (cmd) {
      case "get": {
        const res = await client.getJob({ id: need(rest[0], "JOB") });
        const job = jobFromProto(need(res.job, "job"));
        const tasks = res.tasks.map(jobTaskFromProto);
        if (out.json) out.data({ ...jobToJson(job, { includeSpec: values.spec ?? false }), tasks: tasks.map(jobTaskToJson) });
        else out.text(describeJob(job, values.spec ?? false) + (tasks.length > 0 ? `\n\nTasks (attempt ${job.attempt}):\n${formatTasks(tasks)}` : ""));
        return 0;
      }
      case "list": {
        const statuses = (values.status ?? []).flatMap((s) => s.split(",")).filter(Boolean);
        for (const s of statuses) if (!isJobStatus(s)) throw AppError.invalid(`unknown status '${s}'`, [{ field: "status", message: `unknown status '${s}'` }]);
        const limit = values.limit ? intFlag(values.limit, "limit") : 50;
        const jobs: WireJob[] = [];
        let token = values["page-token"] ?? "";
        let next: string;
        do {
          const res = await client.listJobs({
            statuses: (statuses as JobStatus[]).map(jobStatusToProto),
            team: values.team ?? "",
            project: values.project ?? "",
            pageSize: Math.min(limit, 1000),
            pageToken: token,
          });
          jobs.push(...res.jobs.map(jobFromProto));
          next = res.nextPageToken;
          token = next;
        } while (values.all && next);
        if (out.json) out.data({ jobs: jobs.map((j) => jobToJson(j)), next_cursor: next || null });
        else {
          const now = new Date();
          out.text(
            formatTable(
              ["ID", "NAME", "TEAM", "TYPE", "STATUS", "GPUS", "ATTEMPT", "AGE"],
              jobs.map((j) => [j.id, j.name, j.teamName, j.type, j.status, String(j.gpus), `${j.attempt}/${j.maxAttempts}`, ago(j.createdAt, now)]),
            ),
          );
          if (next) out.text(`(more: --page-token ${next}, or --all)`);
        }
        return 0;
      }
      case "cancel": {
        const res = await client.cancelJob({ id: need(rest[0], "JOB"), reason: values.reason ?? "" });
        const job = jobFromProto(need(res.job, "job"));
        if (out.json) out.data({ ...jobToJson(job), changed: res.changed });
        else out.text(res.changed ? `job ${job.id} cancelled` : `job ${job.id} was already cancelled`);
        return 0;
      }
      case "events": {
        const res = await client.getJobEvents({ id: need(rest[0], "JOB"), afterSeq: "0", limit: 0 });
        const events = res.events.map(jobEventFromProto);
        if (out.json) out.data({ events: events.map(jobEventToJson) });
        else out.text(formatTable(["SEQ", "TIME", "FROM", "TO", "ATTEMPT", "ACTOR", "REASON"], events.map(eventRow)));
        return 0;
      }
      case "watch":
        return watch(client, need(rest[0], "JOB"), out);
      case "artifacts": {
        const t = values.type;
        if (t !== undefined && !(ARTIFACT_TYPES as readonly string[]).includes(t)) {
          throw AppError.invalid(`--type must be one of ${ARTIFACT_TYPES.join(", ")}`, [{ field: "type", message: `unknown type '${t}'` }]);
        }
        const res = await client.listArtifacts({ jobId: need(rest[0], "JOB"), type: t ? artifactTypeToProto(t as ArtifactType) : 0 });
        const items = res.artifacts.map(artifactFromProto);
        if (out.json) out.data({ artifacts: items.map(artifactToJson) });
        else
          out.text(
            formatTable(
              ["TYPE", "ATTEMPT", "STEP", "BYTES", "URI", "CREATED"],
              items.map((a) => [a.type, String(a.attempt), a.step === null ? "-" : String(a.step), a.bytes === null ? "-" : String(a.bytes), a.uri, a.createdAt.toISOString()]),
            ),
          );
        return 0;
      }
      default:
        throw AppError.invalid(`unknown command '${cmd}'\n\n${USAGE}`);
    }
  });
}

/** Follows a job until it is terminal. Exit code: 0 completed, 1 failed or cancelled. */
async function watch(client: JobClient, id: string, out: Output): Promise<number> {
  const ac = new AbortController();
  const onSig = (): void => ac.abort();
  process.once("SIGINT", onSig);
  try {
    let last: WireJob | null = null;
    for await (const msg of client.watchJob({ id, afterSeq: "0" }, ac.signal)) {
      const job = jobFromProto(need(msg.job, "job"));
      last = job;
      const ev = msg.event ? jobEventFromProto(msg.event) : null;
      if (out.json) out.data({ job: jobToJson(job), event: ev ? jobEventToJson(ev) : null });
      else if (!ev) out.text(`job ${job.id} (${job.name}) is ${job.status}; attempt ${job.attempt}/${job.maxAttempts}`);
      else out.text(`${ev.createdAt.toISOString()}  ${ev.fromStatus ?? "∅"} → ${ev.toStatus}  ${ev.reason}`);
    }
    if (ac.signal.aborted) return 130;
    if (!last) return 1;
    return last.status === "completed" ? 0 : isTerminal(last.status) ? 1 : 0;
  } finally {
    process.removeListener("SIGINT", onSig);
  }
}

function describeJob(j: WireJob, withSpec: boolean): string {
  const lines = [
    `ID:          ${j.id}`,
    `Name:        ${j.name}`,
    `Team:        ${j.teamName}${j.project ? `  Project: ${j.project}` : ""}`,
    `Type:        ${j.type} (${j.framework}, ${j.executionMode})`,
    `Status:      ${j.status}${j.statusReason ? ` — ${j.statusReason}` : ""}`,
    `Attempt:     ${j.attempt}/${j.maxAttempts}   Priority: ${j.priority}   GPUs: ${j.gpus}`,
    `Target:      ${j.target ? `${j.target.provider} ${j.target.region}${j.target.zone ? `/${j.target.zone}` : ""} ${j.target.instanceType} ×${j.target.instanceCount}${j.target.spot ? " (spot)" : ""}` : "not placed yet"}`,
    `Cost:        running ${cents(j.runningCostUsd)}${j.estimatedCostUsd ? `, estimated ${cents(j.estimatedCostUsd)}` : ""}${j.budgetUsd ? `, budget ${cents(j.budgetUsd)}` : ""}`,
    `Deadline:    ${j.deadline ? j.deadline.toISOString() : "-"}`,
    `Created:     ${j.createdAt.toISOString()}`,
    `Started:     ${j.startedAt ? j.startedAt.toISOString() : "-"}`,
    `Finished:    ${j.finishedAt ? j.finishedAt.toISOString() : "-"}`,
  ];
  if (withSpec) lines.push("", "Spec:", j.specYaml);
  return lines.join("\n");
}

function formatNodes(nodes: NodeInfo[], now: Date): string {
  return formatTable(
    ["NAME", "ID", "PROVIDER/REGION", "GPUS", "FREE", "MIG", "UTIL %", "STATE", "LAST HEARTBEAT"],
    nodes.map((n) => {
      const models = new Map<string, number>();
      for (const g of n.gpus) models.set(g.name, (models.get(g.name) ?? 0) + 1);
      const gpus = [...models].map(([name, count]) => `${name} × ${count}`).join(", ") || "-";
      const utils = n.gpus.map((g) => g.sample?.utilizationGpuPercent).filter((u): u is number => typeof u === "number");
      const util = utils.length > 0 ? String(Math.round(utils.reduce((a, b) => a + b, 0) / utils.length)) : "-";
      const where = [n.labels.provider, n.labels.region].filter(Boolean).join("/") || "-";
      const free = `${n.gpus.filter((g) => !g.allocatedJobId).length}/${n.gpus.length}`;
      const mig = n.gpus.flatMap((g) => g.migDevices.map((m) => m.profile)).join(",") || "-";
      return [n.hostname, n.id, where, gpus, free, mig, util, n.state + (n.degradedReason ? ` (degraded: ${n.degradedReason})` : ""), ago(n.lastHeartbeatAt, now)];
    }),
  );
}

function eventRow(e: JobEvent): string[] {
  return [String(e.seq), e.createdAt.toISOString(), e.fromStatus ?? "-", e.toStatus, String(e.attempt), e.actor, e.reason];
}

async function withClient(values: Values, fn: (c: JobClient) => Promise<number>): Promise<number> {
  const cfg = resolveCliConfig({ controller: values.controller, token: values.token }, process.env);
  if (!cfg.token) {
    throw AppError.unauthenticated(
      `no token: pass --token, set GPUORCH_TOKEN, or put 'token:' in ${cfg.configPath} (gpuorch-controller token create --team NAME prints one)`,
    );
  }
  const client = await JobClient.connect({ address: cfg.controller, token: cfg.token, timeoutMs: values.timeout ? intFlag(values.timeout, "timeout") : 15_000 });
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

function need<T>(v: T | undefined | null, what: string): T {
  if (v === undefined || v === null || v === "") throw AppError.invalid(`missing ${what}\n\n${USAGE}`, [{ field: what, message: "required" }]);
  return v;
}

function intFlag(v: string, name: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw AppError.invalid(`--${name} must be a positive integer, got '${v}'`, [{ field: name, message: "expected a positive integer" }]);
  return Number(v);
}

function readFileOrFail(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw AppError.invalid(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, [{ field: "FILE", message: "not readable" }]);
  }
}

// `gpuorch logs JOB | head`: a closed pipe ends the output, it is not an error.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0);
  throw e;
});

const json = process.argv.includes("--json");
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const e = isAppError(err)
      ? err
      : err instanceof TypeError && String((err as { code?: unknown }).code ?? "").startsWith("ERR_PARSE_ARGS")
        ? AppError.invalid(`${err.message}\n\n${USAGE}`)
        : AppError.internal(String(err instanceof Error ? err.message : err), err);
    if (json) {
      process.stderr.write(JSON.stringify({ error: { code: e.reason, grpc_code: e.code, message: e.message, details: { fields: e.fields, ...e.meta } } }) + "\n");
    } else {
      process.stderr.write(`gpuorch: ${e.message}\n`);
      for (const f of e.fields) {
        const pos = f.line !== undefined ? `:${f.line}${f.column !== undefined ? `:${f.column}` : ""}` : "";
        if (f.field !== "FILE" && !e.message.includes(f.message)) process.stderr.write(`  ${f.field}${pos}: ${f.message}\n`);
      }
    }
    process.exitCode = e.code === "INVALID_ARGUMENT" ? 2 : e.code === "UNAVAILABLE" ? 3 : 1;
  },
);
