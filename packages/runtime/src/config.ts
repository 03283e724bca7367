import { readFileSync } from "node:fs";
import { AppError, type FieldViolation } from "@gpuorch/core";
import { parseDocument } from "yaml";
import type { z } from "zod";

export interface ConfigSources {
  /** Parsed command-line flags, keys already camelCased; `undefined` values mean "not given". */
  flags?: Record<string, unknown>;
  /** Environment to read `<prefix><SCREAMING_SNAKE_KEY>` variables from. Default: `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Default: "GPUORCH_". */
  envPrefix?: string;
  /** A YAML or JSON file (JSON is YAML); null or undefined: none. */
  file?: string | null;
}

/** Where a value came from, for error messages. */
interface Origin {
  label: string;
}

/**
 * Builds one config object from, in increasing precedence: the schema's
 * defaults, a YAML/JSON file, `GPUORCH_*` environment variables (only for
 * the schema's top-level keys, coerced to the key's type) and flags; then
 * validates it with the schema. Throws AppError INVALID_ARGUMENT (reason
 * `invalid_config`) naming every bad key and where its value came from.
 */
export function loadConfig<T>(schema: z.ZodType<T>, sources: ConfigSources = {}): T {
  const prefix = sources.envPrefix ?? "GPUORCH_";
  const env = sources.env ?? process.env;
  const shape = objectShape(schema);
  const keys = shape ? Object.keys(shape) : [];
  const problems: FieldViolation[] = [];
  const origins = new Map<string, Origin>();
  let merged: Record<string, unknown> = {};

  if (sources.file !== undefined && sources.file !== null) {
    const file = sources.file;
    const data = readConfigFile(file);
    const normalized: Record<string, unknown> = {};
    for (const [rawKey, value] of Object.entries(data)) {
      const key = shape && !(rawKey in shape) && toCamel(rawKey) in shape ? toCamel(rawKey) : rawKey;
      if (shape && !(key in shape)) {
        problems.push({ field: rawKey, message: `${rawKey} (from ${file}): unknown key` });
        continue;
      }
      normalized[key] = value;
    }
    merged = mergeLayer(merged, normalized, [], { label: file }, origins);
  }

  if (shape) {
    const fromEnv: Record<string, unknown> = {};
    for (const key of keys) {
      const name = envVarName(key, prefix);
      const raw = env[name];
      // An empty variable counts as unset: `FOO= cmd` is how shells unset for one command.
      if (raw === undefined || raw === "") continue;
      const field = shape[key];
      fromEnv[key] = field ? coerceString(raw, field) : raw;
    }
    merged = mergeLayer(merged, fromEnv, [], null, origins, (path) => ({ label: envVarName(path[0] ?? "", prefix) }));
  }

  if (sources.flags) {
    const given: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(sources.flags)) {
      if (value === undefined) continue;
      // Flags the schema does not know belong to the command, not to config.
      if (shape && !(key in shape)) continue;
      given[key] = value;
    }
    merged = mergeLayer(merged, given, [], null, origins, (path) => ({ label: `--${toKebab(path[0] ?? "")}` }));
  }

  const result = schema.safeParse(merged);
  if (result.success && problems.length === 0) return result.data;
  if (!result.success) {
    for (const issue of result.error.issues) {
      problems.push(describeIssue(issue, merged, origins, prefix));
    }
  }
  const list = problems.map((p) => `  - ${p.message}`).join("\n");
  throw new AppError("INVALID_ARGUMENT", `invalid configuration:\n${list}`, {
    reason: "invalid_config",
    fields: problems,
  });
}

/** `grpcPort` → `GPUORCH_GRPC_PORT`. */
export function envVarName(key: string, prefix = "GPUORCH_"): string {
  return prefix + toSnake(key).toUpperCase();
}

function toSnake(key: string): string {
  return key
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .replace(/([A-Z])([A-Z][a-z])/g, "$1_$2")
    .replace(/-/g, "_")
    .toLowerCase();
}

function toKebab(key: string): string {
  return toSnake(key).replace(/_/g, "-");
}

function toCamel(key: string): string {
  return key.toLowerCase().replace(/[-_]+([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "not found" : `cannot be read (${code ?? String(e)})`;
    throw new AppError("INVALID_ARGUMENT", `config file ${file} ${why}`, { reason: "invalid_config", cause: e });
  }
  const doc = parseDocument(text);
  const first = doc.errors[0];
  if (first) {
    const pos = first.linePos?.[0];
    throw new AppError("INVALID_ARGUMENT", `config file ${file} is not valid YAML or JSON: ${first.message}`, {
      reason: "invalid_config",
      fields: [{ field: file, message: first.message, ...(pos ? { line: pos.line, column: pos.col } : {}) }],
    });
  }
  const data: unknown = doc.toJS();
  if (data === null || data === undefined) return {};
  if (!isPlainObject(data)) {
    throw new AppError("INVALID_ARGUMENT", `config file ${file} must hold a mapping of keys to values`, {
      reason: "invalid_config",
    });
  }
  return data;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** Deep-merges `layer` over `base`, recording the origin of every leaf it sets. */
function mergeLayer(
  base: Record<string, unknown>,
  layer: Record<string, unknown>,
  path: string[],
  origin: Origin | null,
  origins: Map<string, Origin>,
  originFor?: (path: string[]) => Origin,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(layer)) {
    const p = [...path, key];
    const prev = out[key];
    if (isPlainObject(value) && isPlainObject(prev)) {
      out[key] = mergeLayer(prev, value, p, origin, origins, originFor);
    } else {
      out[key] = value;
      const o = origin ?? originFor?.(p);
      if (o) origins.set(p.join("."), o);
    }
  }
  return out;
}

// ---- schema introspection (zod 4 keeps the definition under `_zod.def`) ----

interface LooseDef {
  type: string;
  innerType?: z.core.$ZodType;
  in?: z.core.$ZodType;
  shape?: Record<string, z.core.$ZodType>;
  element?: z.core.$ZodType;
}

function defOf(s: z.core.$ZodType): LooseDef {
  return s._zod.def as unknown as LooseDef;
}

/** The value type under wrappers like default/optional/nullable/pipe. */
function baseDef(s: z.core.$ZodType): LooseDef {
  let def = defOf(s);
  for (let i = 0; i < 32; i++) {
    const next = def.innerType ?? (def.type === "pipe" ? def.in : undefined);
    if (!next) break;
    def = defOf(next);
  }
  return def;
}

function objectShape(schema: z.core.$ZodType): Record<string, z.core.$ZodType> | null {
  const def = baseDef(schema);
  return def.type === "object" && def.shape ? def.shape : null;
}

const TRUE_WORDS = new Set(["true", "1", "yes", "on"]);
const FALSE_WORDS = new Set(["false", "0", "no", "off"]);

/**
 * Turns an environment string into the key's type where that is unambiguous;
 * anything that does not convert is left as the string so the schema's error
 * names what was expected and what was given.
 */
function coerceString(raw: string, field: z.core.$ZodType): unknown {
  const def = baseDef(field);
  const s = raw.trim();
  switch (def.type) {
    case "number": {
      const n = Number(s);
      return s !== "" && Number.isFinite(n) ? n : raw;
    }
    case "bigint":
      try {
        return BigInt(s);
      } catch {
        return raw;
      }
    case "boolean": {
      const lower = s.toLowerCase();
      if (TRUE_WORDS.has(lower)) return true;
      if (FALSE_WORDS.has(lower)) return false;
      return raw;
    }
    case "array": {
      if (s.startsWith("[")) return parseJsonOr(s, raw);
      const element = def.element;
      const parts = s === "" ? [] : s.split(",").map((x) => x.trim());
      return element ? parts.map((x) => coerceString(x, element)) : parts;
    }
    case "object":
    case "record":
      return parseJsonOr(s, raw);
    default:
      return raw;
  }
}

function parseJsonOr(s: string, fallback: string): unknown {
  try {
    return JSON.parse(s) as unknown;
  } catch {
    return fallback;
  }
}

// ---- error messages ----

function describeIssue(
  issue: z.core.$ZodIssue,
  merged: Record<string, unknown>,
  origins: Map<string, Origin>,
  prefix: string,
): FieldViolation {
  const path = issue.path.map(String);
  const field = path.length > 0 ? path.join(".") : "(config)";
  const value = valueAt(merged, path);
  const origin = originOf(origins, path);
  let detail: string;
  if (issue.code === "invalid_type" && value === undefined) {
    detail = "required";
  } else if (issue.code === "invalid_type") {
    detail = `expected ${withArticle(issue.expected)}, got ${describeValue(value)}`;
  } else {
    detail = lowerFirst(issue.message) + (isPrimitive(value) ? `, got ${describeValue(value)}` : "");
  }
  let message: string;
  if (origin) {
    message = `${field} (from ${origin.label}): ${detail}`;
  } else if (detail === "required" && path.length === 1 && path[0] !== undefined) {
    const key = path[0];
    message = `${field}: required (set ${envVarName(key, prefix)}, --${toKebab(key)} or ${key} in the config file)`;
  } else {
    message = `${field}: ${detail}`;
  }
  return { field, message };
}

function valueAt(obj: unknown, path: string[]): unknown {
  let cur: unknown = obj;
  for (const p of path) {
    if (typeof cur !== "object" || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[p];
  }
  return cur;
}

function originOf(origins: Map<string, Origin>, path: string[]): Origin | undefined {
  for (let n = path.length; n > 0; n--) {
    const o = origins.get(path.slice(0, n).join("."));
    if (o) return o;
  }
  return undefined;
}

function isPrimitive(v: unknown): boolean {
  return v === null || ["string", "number", "boolean", "bigint"].includes(typeof v);
}

function describeValue(v: unknown): string {
  if (typeof v === "string") return `'${v}'`;
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  return String(v);
}

function withArticle(expected: string): string {
  return /^[aeiou]/i.test(expected) ? `an ${expected}` : `a ${expected}`;
}

function lowerFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}
