import { execFileSync, spawn } from "node:child_process";
import { writeFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { createTestDatabase } from "@gpuorch/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI_BIN, type ControllerProcess, assertNoControllersLeft, createTokenCli, runNode, startControllerProcess, tempDir } from "./helpers.js";

const SPEC = `job:
  name: e2e-train
  type: training
  framework: pytorch_ddp
entrypoint:
  command: python train.py
resources:
  gpus: 2
`;

const BAD_SPEC = `job:
  name: e2e-bad
  type: training
  framework: pytorch_ddp
entrypoint:
  command: python train.py
resources:
  gpus: eight
`;

interface Backend {
  name: string;
  db: () => Promise<{ dataDir?: string; databaseUrl?: string }>;
}

const backends: Backend[] = [
  { name: "pglite", db: async () => ({ dataDir: join(tempDir("gpuorch-e2e-"), "data") }) },
  { name: "postgresql", db: async () => ({ databaseUrl: (await createTestDatabase()).url }) },
];

describe.each(backends)("controller + CLI over real gRPC and HTTP ($name)", (backend) => {
  let db: { dataDir?: string; databaseUrl?: string };
  let ctl: ControllerProcess;
  let alpha: string;
  let beta: string;
  let admin: string;
  const work = tempDir("gpuorch-e2e-files-");
  const specFile = join(work, "job.yaml");
  const badFile = join(work, "bad.yaml");

  const cli = (token: string | null, args: string[], extra: NodeJS.ProcessEnv = {}) =>
    runNode(CLI_BIN, args, {
      env: { GPUORCH_CONTROLLER: ctl.address, GPUORCH_TOKEN: token ?? "", GPUORCH_CONFIG: join(work, "none.yaml"), ...extra },
    });
  const http = (path: string, init: RequestInit & { token?: string | null } = {}) =>
    fetch(`${ctl.baseUrl}${path}`, {
      ...init,
      headers: { ...(init.token ? { authorization: `Bearer ${init.token}` } : {}), ...(init.headers as Record<string, string> | undefined) },
    });

  beforeAll(async () => {
    writeFileSync(specFile, SPEC);
    writeFileSync(badFile, BAD_SPEC);
    db = await backend.db();
    // PGlite is single-process: mint tokens before the controller takes the data dir.
    alpha = await createTokenCli(db, ["--team", "alpha"]);
    beta = await createTokenCli(db, ["--team", "beta"]);
    admin = await createTokenCli(db, ["--admin"]);
    ctl = await startControllerProcess(db);
  });

  afterAll(async () => {
    await ctl?.stop("SIGKILL");
    rmSync(work, { recursive: true, force: true });
    if (db?.dataDir) rmSync(join(db.dataDir, ".."), { recursive: true, force: true });
    assertNoControllersLeft();
  });

  it("submits a spec from the CLI and reads it back verbatim with its creating event", async () => {
    const sub = await cli(alpha, ["submit", specFile, "--json"]);
    expect(sub.stderr).toBe("");
    expect(sub.code).toBe(0);
    const { id, status } = JSON.parse(sub.stdout) as { id: string; status: string };
    expect(status).toBe("pending");

    const got = await cli(alpha, ["get", id, "--json", "--spec"]);
    expect(got.code).toBe(0);
    const job = JSON.parse(got.stdout) as Record<string, unknown>;
    expect(job).toMatchObject({ id, name: "e2e-train", team: "alpha", type: "training", framework: "pytorch_ddp", execution_mode: "single_cluster", status: "pending", gpus: 2, attempt: 1 });
    expect(job.spec_yaml).toBe(SPEC);

    const ev = await cli(alpha, ["events", id, "--json"]);
    const { events } = JSON.parse(ev.stdout) as { events: { seq: number; from_status: string | null; to_status: string }[] };
    expect(events).toEqual([expect.objectContaining({ seq: 1, from_status: null, to_status: "pending" })]);
  });

  it("rejects an invalid spec locally with file:line:column and exit 2, and remotely with the field", async () => {
    const local = await cli(alpha, ["submit", badFile]);
    expect(local.code).toBe(2);
    expect(local.stderr).toMatch(new RegExp(`${badFile.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:8:\\d+: resources\\.gpus: `));

    const res = await http("/v1/jobs", { method: "POST", token: alpha, body: BAD_SPEC, headers: { "content-type": "application/yaml" } });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; details: { field: string; fields: { line?: number }[] } } };
    expect(body.error.code).toBe("invalid_spec");
    expect(body.error.details.field).toBe("resources.gpus");
    expect(body.error.details.fields[0]?.line).toBe(8);
  });

  it("keeps teams apart: another team's job is NOT_FOUND, admin sees all", async () => {
    const sub = JSON.parse((await cli(alpha, ["submit", specFile, "--json", "--name", "alpha-private"])).stdout) as { id: string };
    const other = await cli(beta, ["get", sub.id]);
    expect(other.code).toBe(1);
    expect(other.stderr).toContain("not found");
    const otherHttp = await http(`/v1/jobs/${sub.id}`, { token: beta });
    expect(otherHttp.status).toBe(404);
    const cancelOther = await cli(beta, ["cancel", sub.id]);
    expect(cancelOther.code).toBe(1);

    const betaList = JSON.parse((await cli(beta, ["list", "--json"])).stdout) as { jobs: unknown[] };
    expect(betaList.jobs).toHaveLength(0);
    const adminList = JSON.parse((await cli(admin, ["list", "--json", "--team", "alpha"])).stdout) as { jobs: { id: string; team: string }[] };
    expect(adminList.jobs.map((j) => j.id)).toContain(sub.id);
    expect(new Set(adminList.jobs.map((j) => j.team))).toEqual(new Set(["alpha"]));
  });

  it("refuses missing and invalid tokens on gRPC and HTTP", async () => {
    const none = await cli(null, ["list"]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain("no token");
    const bad = await cli("gpo_u_not-a-real-token", ["list"]);
    expect(bad.code).toBe(1);
    expect(bad.stderr.toLowerCase()).toContain("token");
    expect((await http("/v1/jobs")).status).toBe(401);
    expect((await http("/v1/jobs", { token: "nope" })).status).toBe(401);
  });

  it("cancels idempotently and refuses cancelling a terminal job twice over HTTP with the same state", async () => {
    const { id } = JSON.parse((await cli(alpha, ["submit", specFile, "--json"])).stdout) as { id: string };
    const first = await cli(alpha, ["cancel", id, "--json", "--reason", "no longer needed"]);
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ status: "cancelled", changed: true, status_reason: "no longer needed" });
    const again = await http(`/v1/jobs/${id}/cancel`, { method: "POST", token: alpha });
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ status: "cancelled", changed: false });
    const events = (await (await http(`/v1/jobs/${id}/events`, { token: alpha })).json()) as { events: { to_status: string }[] };
    expect(events.events.map((e) => e.to_status)).toEqual(["pending", "cancelled"]);
  });

  it("streams a job's history with watch and exits 1 when it ends cancelled", async () => {
    const { id } = JSON.parse((await cli(alpha, ["submit", specFile, "--json"])).stdout) as { id: string };
    const watcher = spawn(process.execPath, [CLI_BIN, "watch", id, "--json"], {
      env: { ...process.env, GPUORCH_CONTROLLER: ctl.address, GPUORCH_TOKEN: alpha, GPUORCH_CONFIG: join(work, "none.yaml") },
    });
    let out = "";
    watcher.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const exit = new Promise<number | null>((r) => watcher.on("close", (c) => r(c)));
    // Wait for the snapshot line before cancelling, so the event arrives live.
    for (let i = 0; i < 200 && !out.includes("\n"); i++) await new Promise((r) => setTimeout(r, 25));
    const res = await http(`/v1/jobs/${id}/cancel`, { method: "POST", token: alpha, body: JSON.stringify({ reason: "watch test" }), headers: { "content-type": "application/json" } });
    expect(res.status).toBe(200);
    expect(await exit).toBe(1);
    const lines = out.trim().split("\n").map((l) => JSON.parse(l) as { job: { status: string }; event: { to_status: string } | null });
    expect(lines[0]?.event).toBeNull();
    expect(lines.at(-1)?.event?.to_status).toBe("cancelled");
    expect(lines.at(-1)?.job.status).toBe("cancelled");
  });

  it("pages through list with a cursor while new jobs arrive, without duplicates", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      const r = await http("/v1/jobs", { method: "POST", token: admin, body: JSON.stringify({ spec_yaml: SPEC.replace("e2e-train", `page-${i}`) }), headers: { "content-type": "application/json" } });
      expect(r.status).toBe(201);
      ids.push(((await r.json()) as { id: string }).id);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let inserted = false;
    do {
      const q: string = `/v1/jobs?team=default&limit=3${cursor ? `&cursor=${cursor}` : ""}`;
      const page = (await (await http(q, { token: admin })).json()) as { jobs: { id: string }[]; next_cursor: string | null };
      seen.push(...page.jobs.map((j) => j.id));
      cursor = page.next_cursor;
      if (!inserted) {
        inserted = true;
        await http("/v1/jobs", { method: "POST", token: admin, body: SPEC, headers: { "content-type": "application/yaml" } });
      }
    } while (cursor);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual([...ids].reverse());
  });

  it("serves health, readiness and Prometheus metrics that promtool accepts", async () => {
    expect((await http("/healthz")).status).toBe(200);
    expect((await http("/readyz")).status).toBe(200);
    const res = await http("/metrics");
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toMatch(/gpuorch_jobs\{status="pending"\} \d+/);
    expect(text).toMatch(/gpuorch_grpc_requests_total\{method="SubmitJob",code="OK"\} \d+/);
    const out = execFileSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
    expect(out).not.toMatch(/error/i);
  });

  it("tells the user clearly when the controller is unreachable (exit 3)", async () => {
    const res = await runNode(CLI_BIN, ["list", "--timeout", "2000"], {
      env: { GPUORCH_CONTROLLER: "127.0.0.1:1", GPUORCH_TOKEN: alpha, GPUORCH_CONFIG: join(work, "none.yaml") },
    });
    expect(res.code).toBe(3);
    expect(res.stderr).toContain("cannot reach the controller at 127.0.0.1:1");
  });

  it("exits 0 on SIGTERM and keeps every acknowledged job across a restart, even after kill -9", async () => {
    const { id } = JSON.parse((await cli(alpha, ["submit", specFile, "--json", "--name", "survivor"])).stdout) as { id: string };
    expect(await ctl.stop("SIGTERM")).toBe(0);
    ctl = await startControllerProcess(db);
    expect(JSON.parse((await cli(alpha, ["get", id, "--json"])).stdout)).toMatchObject({ id, status: "pending" });

    const { id: id2 } = JSON.parse((await cli(alpha, ["submit", specFile, "--json", "--name", "after-crash"])).stdout) as { id: string };
    await ctl.stop("SIGKILL");
    ctl = await startControllerProcess(db);
    const got = await cli(alpha, ["get", id2, "--json"]);
    expect(got.code).toBe(0);
    expect(JSON.parse(got.stdout)).toMatchObject({ id: id2, name: "after-crash", status: "pending" });
  });
});
