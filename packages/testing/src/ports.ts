import { createServer } from "node:net";

/**
 * A TCP port that was free a moment ago on `host`. Prefer letting a server
 * bind port 0 itself; use this only for programs that need the port up front.
 */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      srv.close((err) => {
        if (err) reject(err);
        else if (addr === null || typeof addr === "string") reject(new Error("listening socket has no port"));
        else resolve(addr.port);
      });
    });
  });
}
