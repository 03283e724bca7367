import { readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { CLI_BIN, type ControllerProcess, ROOT, assertNoControllersLeft, runNode, startControllerProcess, tempDir } from "./helpers.js";

describe("embedded mode (what `pnpm start` runs)", () => {
  const dir = tempDir("gpuorch-embedded-");
  const cliConfig = join(dir, "config.yaml");
  let ctl: ControllerProcess;

  beforeAll(async () => {
    ctl = await startControllerProcess({ dataDir: join(dir, "data"), extraArgs: ["--embedded", "--cli-config", cliConfig] });
  });

  afterAll(async () => {
    await ctl?.stop("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
    assertNoControllersLeft();
  });

  it("prints an admin token and writes a private CLI config the CLI uses without flags", async () => {
    const cfg = parseYaml(readFileSync(cliConfig, "utf8")) as { controller: string; token: string; agent_token: string };
    expect(cfg.controller).toBe(ctl.address);
    expect(cfg.token).toMatch(/^gpo_u_[A-Za-z0-9_-]{43}$/);
    expect(cfg.agent_token).toMatch(/^gpo_a_[A-Za-z0-9_-]{43}$/);
    expect(ctl.logs()).toContain(`agent token: ${cfg.agent_token}`);
    expect(statSync(cliConfig).mode & 0o777).toBe(0o600);
    expect(ctl.logs()).toContain(`admin token: ${cfg.token}`);

    const sub = await runNode(CLI_BIN, ["submit", join(ROOT, "examples/ddp-resnet.yaml")], { env: { GPUORCH_CONFIG: cliConfig, GPUORCH_TOKEN: "", GPUORCH_CONTROLLER: "" } });
    expect(sub.stderr).toBe("");
    expect(sub.code).toBe(0);
    expect(sub.stdout).toMatch(/^job [0-9a-f-]{36} \(resnet50-imagenet\) submitted: pending/);
  });

  it("refuses a second process on the same embedded data directory", async () => {
    const res = await runNode(join(ROOT, "controller/dist/main.js"), ["token", "create", "--team", "x", "--data-dir", join(dir, "data")]);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain("is in use by pid");
  });

  it("answers the standard gRPC health check", async () => {
    const Health = grpc.makeGenericClientConstructor(healthService, "Health");
    const client = new Health(ctl.address, grpc.credentials.createInsecure());
    try {
      for (const name of ["", "gpuorch.v1.JobService"]) {
        const res = await new Promise<{ status: string }>((resolve, reject) =>
          (client as unknown as { check(req: object, cb: (e: Error | null, r: { status: string }) => void): void }).check({ service: name }, (e, r) => (e ? reject(e) : resolve(r))),
        );
        expect(res.status).toBe("SERVING");
      }
    } finally {
      client.close();
    }
  });
});
