import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { chown, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { freePort } from "./ports.js";

export interface StartPostgresOptions {
  /**
   * Trade durability for speed: fsync, synchronous_commit and
   * full_page_writes off (and initdb --no-sync). Default true; benchmarks
   * that report commit throughput pass false.
   */
  fast?: boolean;
  /** Directory holding initdb and postgres (default: newest /usr/lib/postgresql/*\/bin, then PATH). */
  binDir?: string;
  /** max_connections (default 300: many test files each with a pool). */
  maxConnections?: number;
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string | number>;
  /** How long to wait for the server to accept connections (default 30 s). */
  startTimeoutMs?: number;
}

export interface PostgresServer {
  readonly host: string;
  readonly port: number;
  /** Temp directory holding the cluster and its unix socket; removed by stop(). */
  readonly dir: string;
  /** Connection URL for a database (default `postgres`), as superuser `postgres`, no password. */
  url(dbName?: string): string;
  /** CREATE DATABASE, optionally cloned from a template; returns its URL. */
  createDatabase(name: string, template?: string): Promise<string>;
  /** Fast shutdown, then removes the cluster directory. Safe to call twice. */
  stop(): Promise<void>;
}

const SUPERUSER = "postgres";

/** `"a""b"`: a safely quoted SQL identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function versionOf(dir: string): number {
  const n = Number.parseFloat(dir);
  return Number.isFinite(n) ? n : -1;
}

/** Where initdb and postgres live: explicit, newest Debian cluster version, or PATH. */
export function findPostgresBinDir(explicit?: string): string {
  const has = (dir: string) => existsSync(join(dir, "initdb")) && existsSync(join(dir, "postgres"));
  if (explicit !== undefined) {
    if (!has(explicit)) throw new Error(`no initdb/postgres in ${explicit}`);
    return explicit;
  }
  const debianRoot = "/usr/lib/postgresql";
  if (existsSync(debianRoot)) {
    const versions = readdirSync(debianRoot).sort((a, b) => versionOf(b) - versionOf(a));
    for (const v of versions) {
      const dir = join(debianRoot, v, "bin");
      if (has(dir)) return dir;
    }
  }
  for (const dir of (process.env["PATH"] ?? "").split(delimiter)) {
    if (dir && has(dir)) return dir;
  }
  throw new Error(
    "PostgreSQL server binaries (initdb, postgres) not found in /usr/lib/postgresql/*/bin or on PATH: " +
      "install the Debian postgresql package (apt-get install postgresql)",
  );
}

interface RunAs {
  uid: number;
  gid: number;
}

/** initdb and postgres refuse to run as root: as root, run them as the `postgres` user. */
function postgresUser(): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith(`${SUPERUSER}:`));
  const [, , uid, gid] = line?.split(":") ?? [];
  if (uid === undefined || gid === undefined) {
    throw new Error("running as root but there is no `postgres` user to run PostgreSQL as: install the Debian postgresql package");
  }
  return { uid: Number(uid), gid: Number(gid) };
}

function run(cmd: string, args: string[], cwd: string, as: RunAs | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env: childEnv(cwd), stdio: ["ignore", "pipe", "pipe"], ...as });
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (out += c.toString()));
    child.once("error", reject);
    child.once("exit", (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${cmd} ${args.join(" ")} failed (${code ?? signal}):\n${out}`));
    });
  });
}

function childEnv(home: string): NodeJS.ProcessEnv {
  // A minimal environment: no PG* variables of the caller leak into the cluster.
  return { PATH: process.env["PATH"] ?? "/usr/bin:/bin", HOME: home, LC_ALL: "C", LANG: "C", TZ: "UTC" };
}

async function canConnect(host: string, port: number): Promise<boolean> {
  const client = new pg.Client({ host, port, user: SUPERUSER, database: "postgres", connectionTimeoutMillis: 1_000 });
  client.on("error", () => {
    // Errors of a client that failed to connect are reported by connect() itself.
  });
  try {
    await client.connect();
  } catch {
    return false;
  }
  try {
    await client.query("SELECT 1");
    return true;
  } catch {
    return false;
  } finally {
    await client.end();
  }
}

function exitedPromise(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
}

/**
 * Starts a throw-away PostgreSQL cluster: initdb into a fresh temp directory,
 * listening on 127.0.0.1 at a free port (unix socket inside the directory),
 * trust authentication for the `postgres` superuser. For tests and
 * benchmarks only.
 */
export async function startPostgres(opts: StartPostgresOptions = {}): Promise<PostgresServer> {
  const { fast = true, maxConnections = 300, startTimeoutMs = 30_000 } = opts;
  const binDir = findPostgresBinDir(opts.binDir);
  const as = postgresUser();
  const dir = await mkdtemp(join(tmpdir(), "gpuorch-pg-"));
  try {
    const dataDir = join(dir, "data");
    const socketDir = join(dir, "sock");
    await mkdir(socketDir);
    if (as) {
      await chown(dir, as.uid, as.gid);
      await chown(socketDir, as.uid, as.gid);
    }
    await run(
      join(binDir, "initdb"),
      ["-D", dataDir, "-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C", ...(fast ? ["--no-sync"] : [])],
      dir,
      as,
    );

    const settings: Record<string, string | number> = {
      listen_addresses: "127.0.0.1",
      unix_socket_directories: socketDir,
      max_connections: maxConnections,
      ...(fast ? { fsync: "off", synchronous_commit: "off", full_page_writes: "off" } : {}),
      ...opts.settings,
    };
    // A port can be taken between freePort() and bind: retry with another.
    for (let tries = 1; ; tries++) {
      const port = await freePort();
      const server = await launch(join(binDir, "postgres"), dataDir, dir, port, settings, as, startTimeoutMs);
      if (server !== "port_in_use") return server;
      if (tries >= 5) throw new Error("PostgreSQL could not bind a free port after 5 tries");
    }
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

async function launch(
  postgresBin: string,
  dataDir: string,
  dir: string,
  port: number,
  settings: Record<string, string | number>,
  as: RunAs | undefined,
  startTimeoutMs: number,
): Promise<PostgresServer | "port_in_use"> {
  const host = "127.0.0.1";
  const args = ["-D", dataDir, "-p", String(port), ...Object.entries(settings).flatMap(([k, v]) => ["-c", `${k}=${v}`])];
  const child = spawn(postgresBin, args, { cwd: dir, env: childEnv(dir), stdio: ["ignore", "pipe", "pipe"], ...as });
  let log = "";
  const keep = (c: Buffer) => {
    log += c.toString();
    if (log.length > 64_000) log = log.slice(-64_000);
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  let spawnError: Error | undefined;
  child.once("error", (e) => (spawnError = e));
  const exited = exitedPromise(child);
  const isRunning = () => child.exitCode === null && child.signalCode === null && spawnError === undefined;

  // If the test process exits without stop(), leave no postmaster (SIGQUIT:
  // immediate shutdown, which also ends its backends) and, best effort, no files.
  const onExit = () => {
    child.kill("SIGQUIT");
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // The dying server may still hold files; the OS temp cleaner gets the rest.
    }
  };
  process.once("exit", onExit);

  const deadline = Date.now() + startTimeoutMs;
  for (;;) {
    if (!isRunning()) {
      process.removeListener("exit", onExit);
      if (/could not bind|Address already in use/i.test(log)) return "port_in_use";
      throw new Error(`PostgreSQL exited during start-up${spawnError ? ` (${spawnError.message})` : ""}:\n${log}`);
    }
    if (await canConnect(host, port)) break;
    if (Date.now() > deadline) {
      child.kill("SIGQUIT");
      await exited;
      process.removeListener("exit", onExit);
      throw new Error(`PostgreSQL did not accept connections within ${startTimeoutMs} ms:\n${log}`);
    }
    await sleep(25);
  }

  const url = (dbName = "postgres") => `postgres://${SUPERUSER}@${host}:${port}/${encodeURIComponent(dbName)}`;
  let stopping: Promise<void> | undefined;
  return {
    host,
    port,
    dir,
    url,
    async createDatabase(name, template) {
      const client = new pg.Client({ connectionString: url() });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${quoteIdent(name)}${template === undefined ? "" : ` TEMPLATE ${quoteIdent(template)}`}`);
      } finally {
        await client.end();
      }
      return url(name);
    },
    stop() {
      stopping ??= (async () => {
        // SIGINT is PostgreSQL's "fast" shutdown: it disconnects clients
        // instead of waiting for them (SIGTERM's "smart" mode would hang on a
        // leaked connection). Escalate to immediate, then kill.
        if (isRunning()) {
          child.kill("SIGINT");
          const escalate = setTimeout(() => child.kill("SIGQUIT"), 10_000);
          const kill = setTimeout(() => child.kill("SIGKILL"), 15_000);
          await exited;
          clearTimeout(escalate);
          clearTimeout(kill);
        }
        process.removeListener("exit", onExit);
        await rm(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}
