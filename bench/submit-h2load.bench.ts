/**
 * Server-side submit capacity: the same SubmitJob calls as
 * submit-throughput, but driven by h2load (nghttp2's C load generator, Debian
 * package nghttp2-client) sending real gRPC frames, so the load generator's
 * own CPU (grpc-js clients cost ~0.7 ms per call on this machine) does not
 * compete with the controller and PostgreSQL for the two cores. Every call
 * submits the same spec; the controller gives each its own job id. Afterwards
 * the benchmark pages through ListJobs and fails unless exactly N jobs exist
 * (h2load counts HTTP 200, and a gRPC error would also be HTTP 200).
 *
 * A warm-up of W calls (default 300, as in submit-throughput) runs first and
 * is not timed. stderr gets the CPU per job of the controller, PostgreSQL and
 * h2load.
 *
 * Usage: node bench/dist/submit-h2load.bench.js [--jobs N] [--clients C] [--warmup W] [--backend postgresql|both]
 */
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs, promisify } from "node:util";
import { SubmitJobRequest } from "@gpuorch/proto";
import { JobClient } from "@gpuorch/rpc";
import { startPostgres } from "@gpuorch/testing";
import { ControllerProcess, REPO_ROOT, cpuPerJob, createAdminToken, postgresCpuMs, reapedChildrenCpuMs } from "./controller-process.js";
import { figure, percentile } from "./latency.js";

const run = promisify(execFile);

async function main(): Promise<void> {
  // Shares its command line with submit-throughput when run as `bench submit`, so it knows --backend too.
  const { values } = parseArgs({
    options: {
      jobs: { type: "string", default: "10000" },
      clients: { type: "string", default: "16" },
      warmup: { type: "string" },
      backend: { type: "string", default: "both" },
    },
  });
  if (values.backend === "pglite") {
    process.stderr.write("submit-h2load: PostgreSQL only (PGlite is single-process and embedded); skipped for --backend pglite\n");
    return;
  }
  const jobs = Number(values.jobs);
  const clients = Number(values.clients);
  const warmup = values.warmup === undefined ? 300 : Number(values.warmup);
  for (const [flag, v, min] of [["jobs", jobs, 1], ["clients", clients, 1], ["warmup", warmup, 0]] as const) {
    if (!Number.isSafeInteger(v) || v < min) throw new Error(`--${flag} must be an integer ≥ ${min}`);
  }
  try {
    await run("h2load", ["--version"]);
  } catch {
    process.stderr.write("submit-h2load: h2load not found (apt-get install nghttp2-client); skipped\n");
    return;
  }
  const work = await mkdtemp(join(tmpdir(), "gpuorch-bench-h2load-"));
  const pg = await startPostgres({ fast: false });
  let ctl: ControllerProcess | null = null;
  try {
    await pg.createDatabase("bench");
    const target = { databaseUrl: pg.url("bench") };
    const token = await createAdminToken(target);
    ctl = await ControllerProcess.start({ target, workDir: work });

    const spec = readFileSync(join(REPO_ROOT, "examples/ddp-resnet.yaml"), "utf8");
    const msg = SubmitJobRequest.encode({ specYaml: spec, name: "", idempotencyKey: "" }).finish();
    const frame = Buffer.alloc(5 + msg.length); // gRPC length-prefixed message: flag byte + u32 length
    frame.writeUInt32BE(msg.length, 1);
    Buffer.from(msg).copy(frame, 5);
    const bodyFile = join(work, "submit.bin");
    writeFileSync(bodyFile, frame);
    const logFile = join(work, "requests.tsv");
    const address = ctl.grpcAddress;
    const h2load = (n: number, log: string) =>
      run(
        "h2load",
        ["-n", String(n), "-c", String(Math.min(clients, n)), "-m", "1", "-d", bodyFile, "--log-file", log,
          "-H", "content-type: application/grpc", "-H", "te: trailers", "-H", `authorization: Bearer ${token}`,
          `http://${address}/gpuorch.v1.JobService/SubmitJob`],
        { maxBuffer: 16 * 1024 * 1024 },
      );
    if (warmup > 0) {
      // The same warm-up as submit-throughput: JIT, pools and the prepared statement, not counted.
      process.stderr.write(`[h2load] warm-up: ${warmup} calls\n`);
      await h2load(warmup, join(work, "warmup.tsv"));
    }
    process.stderr.write(`[h2load] ${jobs} SubmitJob calls, ${clients} connections, PostgreSQL with default durability\n`);
    const ctlCpu0 = ctl.cpuMs();
    const pgCpu0 = postgresCpuMs(pg.dir);
    const childCpu0 = reapedChildrenCpuMs();
    const started = performance.now();
    const { stdout } = await h2load(jobs, logFile);
    const wallMs = performance.now() - started;
    const seconds = wallMs / 1000;
    const [ctlCpu1, pgCpu1, childCpu1] = [ctl.cpuMs(), postgresCpuMs(pg.dir), reapedChildrenCpuMs()];
    const line = stdout.split("\n").find((l) => l.startsWith("requests:")) ?? "";
    process.stderr.write(`[h2load] ${line}\n`);
    const perJob = (a: number | null, b: number | null): string => cpuPerJob(a, b, jobs, wallMs);
    process.stderr.write(
      `[h2load] CPU: controller ${perJob(ctlCpu0, ctlCpu1)}, PostgreSQL ${perJob(pgCpu0, pgCpu1)}, h2load ${perJob(childCpu0, childCpu1)}\n`,
    );
    // Each log line: start time (µs since epoch) \t HTTP status \t µs until the response ended.
    const lat = readFileSync(logFile, "utf8").trim().split("\n").map((l) => Number(l.split("\t")[2]) / 1000).sort((a, b) => a - b);
    if (lat.length !== jobs) throw new Error(`h2load logged ${lat.length} requests, expected ${jobs}`);

    // Verify: exactly `jobs` jobs exist (a gRPC error would still be HTTP 200 to h2load).
    const client = await JobClient.connect({ address: ctl.grpcAddress, token });
    let count = 0;
    let pageToken = "";
    do {
      const page = await client.listJobs({ pageSize: 1000, pageToken });
      count += page.jobs.length;
      pageToken = page.nextPageToken;
    } while (pageToken);
    client.close();
    if (count !== warmup + jobs) throw new Error(`expected ${warmup + jobs} jobs after the run (warm-up ${warmup} + ${jobs}), found ${count}`);
    process.stderr.write(`[h2load] verified: ${count} jobs stored\n`);

    console.log(figure("submit_throughput_postgresql_h2load", jobs / seconds, "jobs/s"));
    console.log(figure("submit_latency_p50_postgresql_h2load", percentile(lat, 50), "ms"));
    console.log(figure("submit_latency_p99_postgresql_h2load", percentile(lat, 99), "ms"));
  } finally {
    await ctl?.stop().catch((e: unknown) => process.stderr.write(`${String(e)}\n`));
    await pg.stop();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
