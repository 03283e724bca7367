import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { AppError } from "@gpuorch/core";
import { parse as parseYaml } from "yaml";

export interface CliConfig {
  controller: string;
  token: string | null;
  configPath: string;
}

export const DEFAULT_CONTROLLER = "127.0.0.1:7070";

/**
 * Where the CLI finds its controller and token: flags > GPUORCH_CONTROLLER /
 * GPUORCH_TOKEN > the config file (GPUORCH_CONFIG or ~/.gpuorch/config.yaml,
 * written by `gpuorch-controller serve --embedded`) > defaults.
 */
export function resolveCliConfig(flags: { controller?: string; token?: string }, env: NodeJS.ProcessEnv): CliConfig {
  const configPath = env.GPUORCH_CONFIG ?? join(homedir(), ".gpuorch", "config.yaml");
  let file: { controller?: unknown; token?: unknown } = {};
  let raw: string | null = null;
  try {
    raw = readFileSync(configPath, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  if (raw !== null) {
    try {
      const v: unknown = parseYaml(raw);
      if (v !== null && typeof v === "object") file = v as typeof file;
    } catch (e) {
      throw AppError.invalid(`cannot parse ${configPath}: ${(e as Error).message}`, [{ field: configPath, message: "invalid YAML" }]);
    }
  }
  const str = (v: unknown): string | undefined => (typeof v === "string" && v.length > 0 ? v : undefined);
  return {
    controller: flags.controller ?? str(env.GPUORCH_CONTROLLER) ?? str(file.controller) ?? DEFAULT_CONTROLLER,
    token: flags.token ?? str(env.GPUORCH_TOKEN) ?? str(file.token) ?? null,
    configPath,
  };
}
