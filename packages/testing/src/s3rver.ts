import { fileURLToPath } from "node:url";
import { spawnProcess, type SpawnedProcess } from "./processes.js";

/**
 * Test support: a real S3 API (npm `s3rver` 3.7) in a child process on
 * 127.0.0.1, port 0 (tests of packages/storage and the checkpoint end-to-end tests).
 *
 * Why a child process: s3rver signs ListObjectsV2 continuation tokens with
 * DES, which OpenSSL 3 (Node >= 17) only offers through its legacy provider,
 * so any truncated listing answers HTTP 500 in a plain Node process. The
 * child runs with `--openssl-legacy-provider`. It also records every request
 * line, served at `GET /__requests` (and cleared by `DELETE /__requests`),
 * so a test can check which S3 calls a store made; the record is written
 * when a request arrives, so it is complete once the client has its answer.
 */
export interface S3rverProcess {
  /** `http://127.0.0.1:PORT` */
  readonly endpoint: string;
  readonly port: number;
  /** Request lines since the start or the last `clearRequests()`, as "METHOD /path?query". */
  requests(): Promise<string[]>;
  clearRequests(): Promise<void>;
  stop(): Promise<void>;
}

/** s3rver's built-in access key and secret, the only credentials it accepts. */
export const S3RVER_CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" } as const;

const CHILD = `
import S3rver from "s3rver";
import { createServer } from "node:http";
const [directory, buckets] = process.argv.slice(1);
const s3 = new S3rver({ directory, silent: true, configureBuckets: JSON.parse(buckets).map((name) => ({ name, configs: [] })) });
await s3.configureBuckets();
const handle = s3.callback();
let log = [];
const server = createServer((req, res) => {
  if (req.url === "/__requests") {
    if (req.method === "DELETE") log = [];
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify(log));
    return;
  }
  log.push(req.method + " " + req.url);
  handle(req, res);
});
server.listen(0, "127.0.0.1", () => console.log("s3rver listening on port " + server.address().port));
process.on("SIGTERM", () => process.exit(0));
`;

export async function startS3rver(opts: { directory: string; buckets: readonly string[] }): Promise<S3rverProcess> {
  // Bare imports in --eval code resolve from the working directory: this package, where s3rver is installed.
  const cwd = fileURLToPath(new URL("..", import.meta.url));
  const proc: SpawnedProcess = spawnProcess(process.execPath, ["--openssl-legacy-provider", "--no-warnings", "--input-type=module", "-e", CHILD, opts.directory, JSON.stringify(opts.buckets)], {
    cwd,
    name: "s3rver",
  });
  let port: number;
  try {
    const m = await proc.waitForOutput(/s3rver listening on port (\d+)/, 30_000);
    port = Number(m[1]);
  } catch (e) {
    await proc.stop({ graceMs: 1_000 });
    throw e;
  }
  const endpoint = `http://127.0.0.1:${port}`;
  const log = async (method: "GET" | "DELETE"): Promise<string[]> => {
    const res = await fetch(`${endpoint}/__requests`, { method });
    return (await res.json()) as string[];
  };
  return {
    endpoint,
    port,
    requests: () => log("GET"),
    clearRequests: async () => {
      await log("DELETE");
    },
    stop: async () => {
      await proc.stop({ graceMs: 2_000 });
    },
  };
}
