/**
 * The zod schema of each top-level section of a job spec. Every field carries
 * its own message so an error reads `expected an integer ≥ 1 and ≤ 4096, got
 * "eight"` instead of zod's generic text. Sections are validated one by one
 * (see validate.ts) so a broken `data:` does not hide a cross-field problem in
 * `resources:`. Rules that involve two fields live in validate.ts.
 */
import * as z from "zod";
import { closestMatches, didYouMean, joinOr } from "./did-you-mean.js";
import { canonicalGpuType, GPU_TYPES, suggestGpuTypes } from "./gpu-types.js";
import { ALL_MIG_PROFILES, normalizeMigProfile } from "./mig-profiles.js";
import {
  CHECKPOINT_TRIGGER_KINDS,
  DATA_LOCALITIES,
  EXECUTION_MODES,
  FRAMEWORKS,
  HPO_PARAMETER_TYPES,
  JOB_TYPES,
  OBJECTIVE_DIRECTIONS,
  PROVIDERS,
  REPLICATION_POLICIES,
  type HpoParameter,
} from "./types.js";
import { parseDeadline, parseDuration, parseSize, quote } from "./units.js";
import { classifyUri } from "./uri.js";

/** How a value reads in a message: `"eight"`, `8.5`, `a list`, `a mapping`. */
export function show(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (typeof v === "string") return quote(v);
  if (typeof v === "number") {
    if (Number.isNaN(v)) return ".nan";
    if (!Number.isFinite(v)) return v > 0 ? ".inf" : "-.inf";
    return String(v);
  }
  if (typeof v === "boolean") return String(v);
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  return typeof v;
}

type IssueLike = { input?: unknown };
type ErrorFn = (iss: IssueLike) => string;

/** The one message shape: `expected <what>, got <value>`, or `required; expected <what>`. */
export function expecting(what: string): ErrorFn {
  return (iss) => (iss.input === undefined ? `required; expected ${what}` : `expected ${what}, got ${show(iss.input)}`);
}

function rangeText(min: number, max: number, minExclusive = false): string {
  return `${minExclusive ? ">" : "≥"} ${min} and ≤ ${max}`;
}

/** An integer in [min, max]. */
export function int(min: number, max: number) {
  const error = expecting(`an integer ${rangeText(min, max)}`);
  return z.number({ error }).int({ error }).min(min, { error }).max(max, { error });
}

/** A finite number in [min, max], or (min, max] with `minExclusive`. */
export function num(min: number, max: number, minExclusive = false) {
  const error = expecting(`a number ${rangeText(min, max, minExclusive)}`);
  const base = z.number({ error }).max(max, { error });
  return minExclusive ? base.gt(min, { error }) : base.min(min, { error });
}

export function bool() {
  return z.boolean({ error: expecting("true or false") });
}

/** A string, quoting hint for numbers and booleans the user forgot to quote. */
export function str(maxLength = 4096, what = "a string") {
  const base = expecting(what);
  const error: ErrorFn = (iss) =>
    typeof iss.input === "number" || typeof iss.input === "boolean"
      ? `expected ${what}, got ${show(iss.input)}; quote it: "${String(iss.input)}"`
      : base(iss);
  return z
    .string({ error })
    .min(1, { error: () => `expected ${what}, got an empty string` })
    .max(maxLength, { error: (iss) => `expected at most ${maxLength} characters, got ${String((iss.input as string).length)}` });
}

/** One of a fixed set of words, suggesting the closest on a typo. */
export function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  const list = values.join(", ");
  return z.enum(values, {
    error: (iss) => {
      if (iss.input === undefined) return `required; expected one of ${list}`;
      const hint = typeof iss.input === "string" ? didYouMean(iss.input, values) : "";
      return `expected one of ${list}, got ${show(iss.input)}${hint}`;
    },
  });
}

/** A mapping with exactly these keys (unknown keys are reported by validate.ts with did-you-mean). */
export function section<S extends z.ZodRawShape>(shape: S, what: string) {
  return z.strictObject(shape, {
    error: (iss) => (iss.code === "invalid_type" ? expecting(what)(iss) : undefined),
  });
}

/** A value that may be written as one item or a list; always a list after parsing. */
function oneOrMany<T extends z.ZodType>(item: T, what: string, max: number) {
  const list = z.array(item, { error: expecting(what) }).max(max, { error: () => `expected at most ${max} entries` });
  return z.preprocess((v) => (typeof v === "string" ? [v] : v), list);
}

/** A DNS label, as Kubernetes names objects: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, ≤ 63. */
export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
function dnsLabel() {
  const what = "a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)";
  const error = expecting(what);
  return z.string({ error }).max(63, { error }).regex(DNS_LABEL, { error });
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const MAX_ARGS = 1000;
const MAX_ENV = 1000;
const MAX_ARG_LENGTH = 32 * 1024;
/**
 * One argv word or env value; built once, not per item, and compiled (see
 * validate.ts on z.compile): the transforms below run it for every item.
 */
const argString = z.compile(str(MAX_ARG_LENGTH));

/** A URI or path; `allowGit` for code. Adds `kind` so consumers need not re-parse. */
function uri(allowGit: boolean) {
  return str(4096, "a URI or path").transform((value, ctx) => {
    const r = classifyUri(value, allowGit);
    if (!r.ok) {
      ctx.addIssue({ code: "custom", message: r.message, input: value });
      return z.NEVER;
    }
    return { value, kind: r.value };
  });
}

/** Size with a unit → decimal GB. */
function size() {
  return z.unknown().transform((v, ctx) => {
    if (typeof v !== "string") {
      ctx.addIssue({
        code: "custom",
        message: `expected a size with a unit, like 80GB or 80GiB, got ${show(v)}${typeof v === "number" ? `; write "${v}GB" or "${v}GiB"` : ""}`,
        input: v,
      });
      return z.NEVER;
    }
    const r = parseSize(v);
    if (!r.ok) {
      ctx.addIssue({ code: "custom", message: r.message, input: v });
      return z.NEVER;
    }
    return r.value;
  });
}

function duration() {
  return z.unknown().transform((v, ctx) => {
    if (typeof v !== "string") {
      ctx.addIssue({
        code: "custom",
        message: `expected a duration like 90s, 30m, 2h or 1h30m, got ${show(v)}${typeof v === "number" ? `; write "${v}s" or "${v}m"` : ""}`,
        input: v,
      });
      return z.NEVER;
    }
    const r = parseDuration(v);
    if (!r.ok) {
      ctx.addIssue({ code: "custom", message: r.message, input: v });
      return z.NEVER;
    }
    return r.value;
  });
}

/** A list of plain strings; numbers and booleans get a "quote it" hint at their own index. */
function stringList(what: string, max: number, maxLength: number) {
  return z.array(str(maxLength), { error: expecting(what) }).max(max, { error: () => `expected at most ${max} entries` });
}

export const VersionSchema = z.literal(1, { error: (iss) => `expected 1 (the only spec version), got ${show(iss.input)}` });

export const JobSchema = section(
  {
    name: dnsLabel(),
    type: oneOf(JOB_TYPES),
    framework: oneOf(FRAMEWORKS),
    team: dnsLabel().optional(),
    project: str(128).optional(),
    estimated_hours: num(0, 8760, true).optional(),
  },
  "a mapping with name, type and framework",
);

const commandSchema = z.unknown().transform((v, ctx): { argv: string[]; shell: boolean } => {
  if (typeof v === "string") {
    if (v.trim().length === 0) ctx.addIssue({ code: "custom", message: "expected a command, got an empty string", input: v });
    else if (v.length > MAX_ARG_LENGTH) ctx.addIssue({ code: "custom", message: `expected at most ${MAX_ARG_LENGTH} characters`, input: v });
    return { argv: [v], shell: true };
  }
  if (Array.isArray(v)) {
    if (v.length === 0) ctx.addIssue({ code: "custom", message: "expected a non-empty list of strings, got an empty list", input: v });
    if (v.length > MAX_ARGS) ctx.addIssue({ code: "custom", message: `expected at most ${MAX_ARGS} entries`, input: v });
    v.slice(0, MAX_ARGS).forEach((item, i) => {
      const r = argString.safeParse(item);
      if (!r.success) ctx.addIssue({ code: "custom", message: r.error.issues[0]?.message ?? "expected a string", input: item, path: [i] });
    });
    return { argv: v.filter((x): x is string => typeof x === "string"), shell: false };
  }
  ctx.addIssue({
    code: "custom",
    message: `expected a command string or a list of strings, got ${show(v)}`,
    input: v,
  });
  return z.NEVER;
});

const envSchema = z.unknown().transform((v, ctx): Record<string, string> => {
  const out: Record<string, string> = {};
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    ctx.addIssue({ code: "custom", message: `expected a mapping of NAME: "value", got ${show(v)}`, input: v });
    return out;
  }
  const entries = Object.entries(v);
  if (entries.length > MAX_ENV) ctx.addIssue({ code: "custom", message: `expected at most ${MAX_ENV} variables`, input: v });
  for (const [k, val] of entries.slice(0, MAX_ENV)) {
    if (!ENV_NAME.test(k)) {
      ctx.addIssue({
        code: "custom",
        message: `${quote(k)} is not a valid environment variable name (letters, digits and '_', not starting with a digit)`,
        input: k,
        path: [k],
      });
      continue;
    }
    const r = argString.safeParse(val);
    if (!r.success) {
      ctx.addIssue({ code: "custom", message: r.error.issues[0]?.message ?? "expected a string", input: val, path: [k] });
      continue;
    }
    Object.defineProperty(out, k, { value: r.data, enumerable: true, writable: true, configurable: true });
  }
  return out;
});

export const EntrypointSchema = section(
  {
    uri: uri(true).optional(),
    command: commandSchema.optional(),
    args: stringList("a list of strings", MAX_ARGS, MAX_ARG_LENGTH).default([]),
    env: envSchema.optional(),
    working_dir: str(4096).optional(),
  },
  "a mapping with command (and/or uri)",
);

const gpuTypeSchema = z.unknown().transform((v, ctx): string[] => {
  const items = typeof v === "string" ? [v] : v;
  if (!Array.isArray(items)) {
    ctx.addIssue({ code: "custom", message: `expected a GPU type or a list of them, like [A100-80GB, H100], got ${show(v)}`, input: v });
    return [];
  }
  const out: string[] = [];
  items.slice(0, 64).forEach((item, i) => {
    const path = typeof v === "string" ? [] : [i];
    if (typeof item !== "string") {
      ctx.addIssue({ code: "custom", message: `expected a GPU type name, got ${show(item)}`, input: item, path });
      return;
    }
    const canon = canonicalGpuType(item);
    if (canon === null) {
      const close = suggestGpuTypes(item);
      const hint =
        close.length > 0 ? `; did you mean ${joinOr(close)}?` : `; known types: ${GPU_TYPES.join(", ")}`;
      ctx.addIssue({ code: "custom", message: `unknown GPU type ${quote(item)}${hint}`, input: item, path });
      return;
    }
    if (!out.includes(canon)) out.push(canon);
  });
  if (items.length > 64) ctx.addIssue({ code: "custom", message: "expected at most 64 GPU types", input: v });
  return out;
});

const migProfileSchema = str(64, "a MIG profile like 1g.10gb").transform((v, ctx) => {
  const p = normalizeMigProfile(v);
  if (!ALL_MIG_PROFILES.includes(p)) {
    const close = closestMatches(p, ALL_MIG_PROFILES, 3);
    const hint = close.length > 0 ? `; did you mean ${joinOr(close)}?` : "";
    ctx.addIssue({
      code: "custom",
      message: `unknown MIG profile ${quote(v)}${hint} (profiles are named <slices>g.<memory>gb, e.g. 1g.10gb; see MIG_PROFILES)`,
      input: v,
    });
    return z.NEVER;
  }
  return p;
});

export const ResourcesSchema = section(
  {
    gpus: int(1, 4096),
    max_gpus_per_node: int(1, 16).optional(),
    requires_multi_node: bool().default(false),
    gpu_memory: size().optional(),
    cpu_memory: size().optional(),
    storage: size().optional(),
    gpu_type: gpuTypeSchema.optional(),
    gpu_fraction: num(0, 1, true).optional(),
    mig_profile: migProfileSchema.optional(),
  },
  "a mapping with at least gpus",
);

export const DataSchema = section(
  {
    dataset: uri(false).optional(),
    size_gb: num(0, 1e6).optional(),
    locality: oneOf(DATA_LOCALITIES).default("prefer"),
    replication_policy: oneOf(REPLICATION_POLICIES).default("none"),
    fetch: bool().default(false),
  },
  "a mapping with dataset, size_gb, locality, replication_policy, fetch",
);

const REGION = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const region = () =>
  str(64, "a region name like us-east-1").regex(REGION, {
    error: (iss) => `expected a region name like us-east-1 (letters, digits, '-', '_', '.'), got ${show(iss.input)}`,
  });

/**
 * Only the type of `budget`: its amount is checked by validate.ts with
 * parseBudget, because a number's exact decimal is its YAML source text,
 * which only the tree has. Keeping that out of the schema lets every schema
 * be built once, at module load, instead of once per parse.
 */
const budgetType = z.unknown().transform((v, ctx): number | string => {
  if (typeof v !== "number" && typeof v !== "string") {
    ctx.addIssue({ code: "custom", message: `expected an amount in USD like 500 or "$500", got ${show(v)}`, input: v });
    return z.NEVER;
  }
  return v;
});

const deadline = z.unknown().transform((v, ctx) => {
  if (typeof v !== "string") {
    ctx.addIssue({
      code: "custom",
      message: `expected an ISO 8601 date-time with a zone, like 2026-12-01T18:00:00Z, got ${show(v)}`,
      input: v,
    });
    return z.NEVER;
  }
  const r = parseDeadline(v);
  if (!r.ok) {
    ctx.addIssue({ code: "custom", message: r.message, input: v });
    return z.NEVER;
  }
  return r.value;
});
const providers = oneOrMany(oneOf(PROVIDERS), `a list of providers (${PROVIDERS.join(", ")})`, 16);
const regions = oneOrMany(region(), "a list of region names", 256);

export const ConstraintsSchema = section(
  {
    budget: budgetType.optional(),
    deadline: deadline.optional(),
    allow_spot: bool().default(false),
    min_reliability: num(0, 1).default(0),
    performance_weight: num(0, 1).default(0),
    allowed_providers: providers.default([]),
    excluded_providers: providers.default([]),
    allowed_regions: regions.default([]),
    excluded_regions: regions.default([]),
    priority: int(0, 1000).default(500),
  },
  "a mapping of constraints (budget, deadline, allow_spot, …)",
);

export const ExecutionSchema = section(
  {
    mode: oneOf(EXECUTION_MODES).optional(),
    tasks: int(1, 100_000).optional(),
    max_parallel: int(1, 100_000).optional(),
  },
  "a mapping with mode, tasks, max_parallel",
);

const PARAM_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
const MAX_PARAMETERS = 100;
const MAX_CHOICES = 1000;

const hpoParameterSchema = section(
  {
    type: oneOf(HPO_PARAMETER_TYPES),
    min: z.number({ error: expecting("a number") }).optional(),
    max: z.number({ error: expecting("a number") }).optional(),
    values: z
      .array(z.union([z.string(), z.number(), z.boolean()], { error: expecting("a string, number or boolean") }), {
        error: expecting("a list of choices"),
      })
      .max(MAX_CHOICES, { error: () => `expected at most ${MAX_CHOICES} choices` })
      .optional(),
  },
  "a mapping with type and min/max or values",
).transform((p, ctx): HpoParameter => {
  if (p.type === "choice") {
    if (p.min !== undefined) ctx.addIssue({ code: "custom", message: "a choice parameter takes values, not min", path: ["min"], input: p.min });
    if (p.max !== undefined) ctx.addIssue({ code: "custom", message: "a choice parameter takes values, not max", path: ["max"], input: p.max });
    if (p.values === undefined) {
      ctx.addIssue({ code: "custom", message: "required; a choice parameter needs a non-empty list of values", path: ["values"], input: undefined });
      return { type: "choice", values: [] };
    }
    if (p.values.length === 0) {
      ctx.addIssue({ code: "custom", message: "expected at least one value to choose from, got an empty list", path: ["values"], input: p.values });
    }
    return { type: "choice", values: p.values };
  }
  if (p.values !== undefined) {
    ctx.addIssue({ code: "custom", message: `a ${p.type} parameter takes min and max, not values`, path: ["values"], input: p.values });
  }
  for (const k of ["min", "max"] as const) {
    if (p[k] === undefined) {
      ctx.addIssue({ code: "custom", message: `required; a ${p.type} parameter needs ${k}`, path: [k], input: undefined });
    } else if (p.type === "int" && !Number.isInteger(p[k])) {
      ctx.addIssue({ code: "custom", message: `expected an integer for an int parameter, got ${p[k]}`, path: [k], input: p[k] });
    }
  }
  const min = p.min ?? 0;
  const max = p.max ?? 0;
  if (p.min !== undefined && p.max !== undefined && !(min < max)) {
    ctx.addIssue({ code: "custom", message: `min (${min}) must be less than max (${max})`, path: ["min"], input: min });
  }
  if (p.type === "loguniform" && p.min !== undefined && min <= 0) {
    ctx.addIssue({ code: "custom", message: `a loguniform parameter needs min > 0, got ${min}`, path: ["min"], input: min });
  }
  return { type: p.type, min, max };
});

const hpoParametersSchema = z
  .record(z.string().regex(PARAM_NAME), hpoParameterSchema, {
    error: (iss) => {
      if (iss.code === "invalid_key") {
        return "not a valid parameter name (start with a letter; letters, digits, '_', '.', '-'; at most 64 characters)";
      }
      if (iss.code === "invalid_type") {
        return expecting("a mapping of parameter name → {type, min, max} or {type: choice, values}")(iss);
      }
      return undefined;
    },
  })
  .superRefine((params, ctx) => {
    const n = Object.keys(params).length;
    if (n === 0) ctx.addIssue({ code: "custom", message: "expected at least one parameter to search over", input: params });
    if (n > MAX_PARAMETERS) ctx.addIssue({ code: "custom", message: `expected at most ${MAX_PARAMETERS} parameters, got ${n}`, input: params });
  });

export const HpoSchema = section(
  {
    trials: int(1, 100_000),
    parameters: hpoParametersSchema,
    objective: section(
      {
        metric: str(128, "a metric name like val_loss"),
        direction: oneOf(OBJECTIVE_DIRECTIONS),
      },
      "a mapping with metric and direction",
    ),
  },
  "a mapping with trials, parameters and objective",
);

export const CheckpointSchema = section(
  {
    interval: duration().optional(),
    interval_steps: int(1, 1_000_000_000).optional(),
    keep: int(1, 1000).default(3),
    trigger: oneOf(CHECKPOINT_TRIGGER_KINDS).default("signal"),
    uri: uri(false).optional(),
  },
  "a mapping with interval or interval_steps, keep, trigger, uri",
);

export const RetrySchema = section({ max_attempts: int(1, 100).default(3) }, "a mapping with max_attempts");

/** Each top-level section's schema, by its key in the spec (validate.ts compiles each). */
export const SECTION_SCHEMAS = {
  version: VersionSchema,
  job: JobSchema,
  entrypoint: EntrypointSchema,
  resources: ResourcesSchema,
  data: DataSchema,
  constraints: ConstraintsSchema,
  execution: ExecutionSchema,
  hpo: HpoSchema,
  checkpoint: CheckpointSchema,
  retry: RetrySchema,
} as const;
