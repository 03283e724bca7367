import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));
export const CONTROLLER_BIN = join(ROOT, "controller/dist/main.js");
export const CLI_BIN = join(ROOT, "packages/cli/dist/main.js");

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a node script to completion (bounded), capturing output. */
export function runNode(script: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], {
      env: { ...process.env, ...opts.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${script} ${args.join(" ")} timed out\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, opts.timeoutMs ?? 30_000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.end(opts.input ?? "");
  });
}

export interface ControllerProcess {
  child: ChildProcess;
  grpcPort: number;
  httpPort: number;
  address: string;
  baseUrl: string;
  logs(): string;
  /** Sends a signal and waits for the exit; resolves with the exit code. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
}

const live = new Set<ChildProcess>();

/** Starts `gpuorch-controller serve` on free ports and waits until it listens. */
export async function startControllerProcess(opts: { dataDir?: string; databaseUrl?: string; extraArgs?: string[]; env?: NodeJS.ProcessEnv }): Promise<ControllerProcess> {
  const dir = mkdtempSync(join(tmpdir(), "gpuorch-ctl-"));
  const readyFile = join(dir, "ready.json");
  const args = [CONTROLLER_BIN, "serve", "--grpc-port", "0", "--http-port", "0", "--ready-file", readyFile, "--log-level", "info", ...(opts.extraArgs ?? [])];
  if (opts.databaseUrl) args.push("--database-url", opts.databaseUrl);
  if (opts.dataDir) args.push("--data-dir", opts.dataDir);
  const child = spawn(process.execPath, args, { env: { ...process.env, ...opts.env }, stdio: ["ignore", "pipe", "pipe"] });
  live.add(child);
  let output = "";
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.on("exit", (code) => {
      live.delete(child);
      rmSync(dir, { recursive: true, force: true });
      resolve(code);
    }),
  );
  const deadline = Date.now() + 30_000;
  while (!existsSync(readyFile)) {
    if (child.exitCode !== null) throw new Error(`controller exited with ${child.exitCode}:\n${output}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`controller did not become ready:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const ready = JSON.parse(readFileSync(readyFile, "utf8")) as { grpcPort: number; httpPort: number };
  return {
    child,
    grpcPort: ready.grpcPort,
    httpPort: ready.httpPort,
    address: `127.0.0.1:${ready.grpcPort}`,
    baseUrl: `http://127.0.0.1:${ready.httpPort}`,
    logs: () => output,
    async stop(signal = "SIGTERM", timeoutMs = 20_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Fails when a controller started by these helpers is still running. */
export function assertNoControllersLeft(): void {
  const left = [...live].filter((c) => c.exitCode === null && c.signalCode === null);
  for (const c of left) c.kill("SIGKILL");
  if (left.length > 0) throw new Error(`${left.length} controller process(es) left running`);
}

export async function createTokenCli(db: { dataDir?: string; databaseUrl?: string }, args: string[]): Promise<string> {
  const dbArgs = db.databaseUrl ? ["--database-url", db.databaseUrl] : ["--data-dir", db.dataDir!];
  const res = await runNode(CONTROLLER_BIN, ["token", "create", ...args, ...dbArgs, "--json"]);
  if (res.code !== 0) throw new Error(`token create failed (${res.code}): ${res.stderr}`);
  return (JSON.parse(res.stdout) as { token: string }).token;
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}
