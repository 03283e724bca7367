import { readFileSync } from "node:fs";
import { type IncomingHttpHeaders, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";

/**
 * Test helper (not exported from the package): an HTTP server on
 * 127.0.0.1:0 that records every request and answers from a handler, so a
 * fetcher's test can assert the exact requests it made and serve the
 * providers' recorded responses from testdata/.
 */
export interface RecordedRequest {
  method: string;
  /** Path and query as sent. */
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface Reply {
  status?: number;
  headers?: Record<string, string>;
  body: string;
}

export interface RecordingServer {
  url: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

export async function startRecordingServer(handler: (req: RecordedRequest, index: number) => Reply | Promise<Reply>): Promise<RecordingServer> {
  const requests: RecordedRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const rec: RecordedRequest = { method: req.method ?? "", url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8") };
      requests.push(rec);
      Promise.resolve()
        .then(() => handler(rec, requests.length - 1))
        .then(
          (reply) => {
            res.writeHead(reply.status ?? 200, reply.headers ?? {});
            res.end(reply.body);
          },
          (err: unknown) => {
            res.writeHead(599, { "content-type": "text/plain" });
            res.end(`test handler failed: ${String(err)}`);
          },
        );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}

/** A file under packages/pricing/testdata/. */
export function testdata(path: string): string {
  return readFileSync(fileURLToPath(new URL(`../testdata/${path}`, import.meta.url)), "utf8");
}
