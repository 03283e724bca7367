/**
 * Plain value (from yaml-tree) → JobSpec or located issues. Each top-level
 * section is checked by its own zod schema so every broken section reports at
 * once; then the rules that span fields run on whatever sections parsed, and
 * the normalized spec is assembled with defaults and derived fields.
 */
import * as z from "zod";
import { didYouMean } from "./did-you-mean.js";
import { formatPath, type PathSegment } from "./issues.js";
import { MIG_MODELS_BY_GPU_TYPE, MIG_PROFILES, modelsWithProfile, type MigGpuModel } from "./mig-profiles.js";
import { SECTION_SCHEMAS, show } from "./schema.js";
import { SYNCHRONOUS_FRAMEWORKS, type ExecutionMode, type JobSpec, type SpecIssue, type UriKind } from "./types.js";
import { parseBudget } from "./units.js";
import { isScript } from "./uri.js";
import type { YamlTree } from "./yaml-tree.js";

/** The top-level keys a spec may hold, in the order the design guide lists them. */
export const ROOT_KEYS = Object.keys(SECTION_SCHEMAS) as readonly (keyof typeof SECTION_SCHEMAS)[];

const HPO_PARAMETER_KEYS = ["type", "min", "max", "values"] as const;

/** Each mapping section's keys (every section but `version`), for "did you mean". */
const SECTION_KEYS: Readonly<Record<string, readonly string[]>> = Object.fromEntries(
  Object.entries(SECTION_SCHEMAS).flatMap(([section, schema]) => ("shape" in schema ? [[section, Object.keys(schema.shape)]] : [])),
);

/** The keys a mapping at `path` may hold, for "did you mean". */
function allowedKeysAt(path: readonly PropertyKey[]): readonly string[] {
  const [a, b, c] = path;
  if (path.length === 0) return ROOT_KEYS;
  if (path.length === 1) return (typeof a === "string" ? SECTION_KEYS[a] : undefined) ?? [];
  if (a === "hpo" && b === "objective" && path.length === 2) return Object.keys(SECTION_SCHEMAS.hpo.shape.objective.shape);
  if (a === "hpo" && b === "parameters" && path.length === 3 && typeof c === "string") return HPO_PARAMETER_KEYS;
  return [];
}

function unknownKeyMessage(key: string, allowed: readonly string[]): string {
  const hint = didYouMean(key, allowed);
  const shown = key.length > 64 ? `${key.slice(0, 64)}…` : key;
  return hint.length > 0 ? `unknown key '${shown}'${hint}` : `unknown key '${shown}'; expected one of ${allowed.join(", ")}`;
}

/** Issues kept while validating; the result shows the first MAX_ISSUES by position anyway. */
const MAX_COLLECTED = 1000;

/** Collects issues with positions looked up in the YAML tree. */
class IssueSink {
  readonly issues: SpecIssue[] = [];
  constructor(private readonly tree: YamlTree) {}

  /** True when `path` or one of its ancestors had its value dropped. */
  private poisoned(path: readonly PropertyKey[]): boolean {
    if (this.tree.poisoned.size === 0) return false;
    for (let k = 0; k <= path.length; k++) {
      if (this.tree.poisoned.has(formatPath(path.slice(0, k)))) return true;
    }
    return false;
  }

  /**
   * Add an issue at `path`. `at: "key"` points at the key (unknown keys);
   * a path with no node (a missing key) points at its nearest ancestor's key.
   * `where` overrides the position with another path's.
   */
  add(
    path: readonly PropertyKey[],
    message: string | (() => string),
    opts: { at?: "key" | "value"; where?: readonly PropertyKey[] } = {},
  ): void {
    if (this.issues.length >= MAX_COLLECTED) return;
    if (this.poisoned(path)) return;
    const p = formatPath(path);
    const lookup = opts.where ?? path;
    let line: number | null = null;
    let column: number | null = null;
    for (let k = lookup.length; k >= 0; k--) {
      const info = this.tree.nodes.get(formatPath(lookup.slice(0, k)));
      if (!info) continue;
      const useKey = (k < lookup.length || opts.at === "key") && info.keyLine !== undefined;
      line = useKey ? (info.keyLine ?? info.line) : info.line;
      column = useKey ? (info.keyColumn ?? info.column) : info.column;
      break;
    }
    this.issues.push({ path: p, line, column, message: typeof message === "string" ? message : message() });
  }

  addZod(prefix: readonly PathSegment[], issues: readonly z.core.$ZodIssue[]): void {
    for (const iss of issues) {
      const path = [...prefix, ...iss.path];
      if (iss.code === "unrecognized_keys") {
        const allowed = allowedKeysAt(path);
        for (const key of iss.keys) this.add([...path, key], () => unknownKeyMessage(key, allowed), { at: "key" });
      } else {
        this.add(path, iss.message);
      }
    }
  }
}

type Out<S extends z.ZodType> = z.output<S>;

/**
 * The schemas as validateTree runs them. z.compile generates one function per
 * schema (with `new Function`, as zod already does for object schemas) that
 * checks a valid section with plain `typeof` and range tests, instead of
 * zod's generic walk with a payload, closures and an issue list per field,
 * which was a third of the cost of a parse. The generated function only
 * answers input it accepts; anything else it hands to the schema itself, so
 * issues and their order are the schema's own, and schema.ts stays the one
 * definition of a valid spec. schema-compile.test.ts checks both give the same
 * results.
 */
const COMPILED = compileEach(SECTION_SCHEMAS);

/** The same schemas, each through z.compile (which returns the schema's own type). */
function compileEach<T extends Record<string, z.ZodType>>(schemas: T): T {
  return Object.fromEntries(Object.entries(schemas).map(([key, schema]) => [key, z.compile(schema)])) as T;
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** `xs` without repeats, first occurrences in order; a new array. */
function unique<T>(xs: readonly T[]): T[] {
  return xs.length < 2 ? xs.slice() : [...new Set(xs)];
}

const list = (xs: readonly string[]): string => `[${xs.join(", ")}]`;

export function validateTree(tree: YamlTree): { spec: JobSpec | null; issues: SpecIssue[] } {
  const sink = new IssueSink(tree);
  for (const i of tree.issues) sink.issues.push(i);
  const root = tree.value;
  if (!isMapping(root)) {
    sink.add([], `expected a mapping at the top level (${ROOT_KEYS.slice(0, 4).join(", ")}, …), got ${show(root)}`);
    return { spec: null, issues: sink.issues };
  }
  for (const key of Object.keys(root)) {
    if (!(ROOT_KEYS as readonly string[]).includes(key)) sink.add([key], () => unknownKeyMessage(key, ROOT_KEYS), { at: "key" });
  }

  const parse = <S extends z.ZodType>(name: string, schema: S, required: string | null): Out<S> | undefined => {
    const raw = root[name];
    if (raw === undefined && required !== null) {
      sink.add([name], `required; expected ${required}`);
      return undefined;
    }
    const r = schema.safeParse(raw ?? {});
    if (!r.success) {
      sink.addZod([name], r.error.issues);
      return undefined;
    }
    return r.data;
  };

  if (root.version !== undefined) {
    const r = COMPILED.version.safeParse(root.version);
    if (!r.success) sink.addZod(["version"], r.error.issues);
  }
  const job = parse("job", COMPILED.job, "a mapping with name, type and framework");
  const entry = parse("entrypoint", COMPILED.entrypoint, "a mapping with command (and/or uri)");
  const res = parse("resources", COMPILED.resources, "a mapping with at least gpus");
  const data = parse("data", COMPILED.data, null);
  // The budget's amount is checked here rather than in the schema: a number's
  // exact decimal is its YAML source text, which only the tree has. Its issue
  // goes in first, where the schema's own budget issue would be.
  const rawBudget = isMapping(root.constraints) ? root.constraints.budget : undefined;
  let budgetUsd: string | undefined;
  let budgetOk = true;
  if (typeof rawBudget === "number" || typeof rawBudget === "string") {
    const source = typeof rawBudget === "number" ? tree.numberSource(["constraints", "budget"]) : undefined;
    const r = parseBudget(rawBudget, source);
    if (r.ok) budgetUsd = r.value;
    else {
      budgetOk = false;
      sink.add(["constraints", "budget"], r.message);
    }
  }
  const parsedCons = parse("constraints", COMPILED.constraints, null);
  const cons = budgetOk ? parsedCons : undefined;
  const exec = parse("execution", COMPILED.execution, null);
  const ckpt = parse("checkpoint", COMPILED.checkpoint, null);
  const retry = parse("retry", COMPILED.retry, null);

  // hpo: required iff the job is an hpo job.
  let hpo: Out<typeof SECTION_SCHEMAS.hpo> | undefined;
  if (job?.type === "hpo") {
    if (root.hpo === undefined) {
      sink.add(["hpo"], "required when job.type is hpo; expected a mapping with trials, parameters and objective", {
        where: ["job", "type"],
      });
    } else hpo = parse("hpo", COMPILED.hpo, null);
  } else if (job && root.hpo !== undefined) {
    sink.add(["hpo"], `only allowed when job.type is hpo (job.type is ${job.type}); remove it or set type: hpo`, { at: "key" });
  }

  // --- execution mode and task count -------------------------------------
  let mode: ExecutionMode = "single_cluster";
  let tasks = 1;
  if (job && exec) {
    const sync = SYNCHRONOUS_FRAMEWORKS.has(job.framework);
    const derived: ExecutionMode = sync ? "single_cluster" : job.type === "training" ? "single_cluster" : "multi_task";
    if (exec.mode === "multi_task" && sync) {
      sink.add(
        ["execution", "mode"],
        `${job.framework} trains synchronously: all its ranks exchange gradients every step and must run inside one cluster, so execution.mode must be single_cluster (or left out)`,
      );
    }
    mode = exec.mode ?? derived;
    const why = exec.mode !== undefined ? "" : ` (derived from framework ${job.framework} and type ${job.type})`;
    if (job.type === "hpo") {
      tasks = hpo?.trials ?? 1;
      if (exec.tasks !== undefined && hpo && exec.tasks !== hpo.trials) {
        sink.add(
          ["execution", "tasks"],
          `for hpo jobs the number of units is hpo.trials (${hpo.trials}); remove execution.tasks (${exec.tasks})`,
        );
      }
    } else {
      if (exec.tasks !== undefined && exec.tasks > 1 && mode !== "multi_task") {
        sink.add(
          ["execution", "tasks"],
          `tasks: ${exec.tasks} needs execution.mode multi_task, but the mode is ${mode}${why}; a single_cluster job is one unit`,
        );
      }
      tasks = exec.tasks ?? 1;
    }
    if (exec.max_parallel !== undefined && mode !== "multi_task" && job.type !== "hpo") {
      sink.add(
        ["execution", "max_parallel"],
        `max_parallel only applies to multi_task jobs and hpo; this job runs as one ${mode} unit${why}`,
      );
    }
    if (res?.requires_multi_node && mode === "multi_task") {
      sink.add(
        ["resources", "requires_multi_node"],
        `requires_multi_node: true cannot be combined with multi_task execution${why}: each task is an independent single-node unit`,
      );
    }
  }

  // --- resources -----------------------------------------------------------
  if (res) {
    const { gpus, max_gpus_per_node: maxPer, requires_multi_node: multi } = res;
    if (multi && gpus === 1) {
      sink.add(["resources", "requires_multi_node"], "1 GPU cannot span several nodes; set requires_multi_node: false or ask for more gpus");
    } else if (multi && maxPer !== undefined && gpus <= maxPer) {
      sink.add(
        ["resources", "requires_multi_node"],
        `${gpus} GPUs fit on one node of at most ${maxPer} (max_gpus_per_node); set requires_multi_node: false, or lower max_gpus_per_node to spread them`,
      );
    }
    if (!multi && maxPer !== undefined && gpus > maxPer) {
      sink.add(["resources", "gpus"], `${gpus} GPUs cannot fit on one node of at most ${maxPer}; set requires_multi_node: true`);
    }
    if (res.gpu_fraction !== undefined) {
      if (gpus !== 1) {
        sink.add(["resources", "gpu_fraction"], `gpu_fraction is a share of one GPU and needs gpus: 1, got gpus: ${gpus}`);
      }
      if (multi) sink.add(["resources", "gpu_fraction"], "gpu_fraction cannot be combined with requires_multi_node: true");
      if (res.mig_profile !== undefined) {
        sink.add(["resources", "gpu_fraction"], "gpu_fraction and mig_profile are two ways to share a GPU; set only one");
      }
    }
    if (res.mig_profile !== undefined) {
      const profile = res.mig_profile;
      if (gpus !== 1) {
        sink.add(["resources", "mig_profile"], `mig_profile asks for one MIG instance and needs gpus: 1, got gpus: ${gpus}`);
      }
      const types = res.gpu_type ?? [];
      if (types.length > 0) {
        const models = types.flatMap((t) => MIG_MODELS_BY_GPU_TYPE[t as keyof typeof MIG_MODELS_BY_GPU_TYPE] ?? []);
        if (models.length === 0) {
          const capable = Object.keys(MIG_MODELS_BY_GPU_TYPE);
          sink.add(
            ["resources", "mig_profile"],
            `none of gpu_type ${list(types)} supports MIG; MIG-capable types are ${capable.join(", ")}`,
          );
        } else if (!models.some((m) => (MIG_PROFILES[m] as readonly string[]).includes(profile))) {
          const offers = models.map((m: MigGpuModel) => `${m}: ${MIG_PROFILES[m].join(", ")}`).join("; ");
          const where = modelsWithProfile(profile);
          sink.add(
            ["resources", "mig_profile"],
            `${profile} is not a MIG profile of gpu_type ${list(types)} (${offers})${where.length > 0 ? `; ${profile} exists on ${where.join(", ")}` : ""}`,
          );
        }
      }
    }
  }

  // --- entrypoint -----------------------------------------------------------
  if (entry && entry.command === undefined) {
    if (entry.uri === undefined) {
      sink.add(
        ["entrypoint", "command"],
        "required; expected a command (a string or a list of strings), unless entrypoint.uri is a script (.py or .sh)",
      );
    } else if (entry.uri.kind === "git" || !isScript(entry.uri.value)) {
      sink.add(
        ["entrypoint", "command"],
        `required because entrypoint.uri ${show(entry.uri.value)} is not a script (.py or .sh); say how to run it, e.g. command: python train.py`,
        { where: ["entrypoint", "uri"] },
      );
    }
  }

  // --- data -------------------------------------------------------------------
  if (data && data.dataset === undefined) {
    if (data.locality === "required") {
      sink.add(["data", "locality"], "locality: required needs data.dataset (the data to run next to)");
    }
    if (data.replication_policy !== "none") {
      sink.add(["data", "replication_policy"], `replication_policy: ${data.replication_policy} needs data.dataset (the data to replicate)`);
    }
  }

  // --- constraints ----------------------------------------------------------
  if (cons) {
    const both = cons.allowed_providers.filter((p) => cons.excluded_providers.includes(p));
    if (both.length > 0) {
      sink.add(["constraints", "excluded_providers"], `${both.join(", ")} ${both.length === 1 ? "is" : "are"} both allowed and excluded`);
    }
    const bothR = cons.allowed_regions.filter((r) => cons.excluded_regions.includes(r));
    if (bothR.length > 0) {
      sink.add(["constraints", "excluded_regions"], `${bothR.join(", ")} ${bothR.length === 1 ? "is" : "are"} both allowed and excluded`);
    }
  }

  // --- checkpoint -------------------------------------------------------------
  if (ckpt && ckpt.interval !== undefined && ckpt.interval_steps !== undefined) {
    sink.add(["checkpoint", "interval_steps"], "set either checkpoint.interval (time) or checkpoint.interval_steps, not both");
  }

  if (sink.issues.length > 0 || !job || !entry || !res || !data || !cons || !exec || !ckpt || !retry) {
    return { spec: null, issues: sink.issues };
  }
  if (job.type === "hpo" && !hpo) return { spec: null, issues: sink.issues };

  // Optional fields are set only when present: a JobSpec has no undefined keys.
  // Keys are added in the documented order, which is also the order JSON shows.
  const jobOut: JobSpec["job"] = { name: job.name, type: job.type, framework: job.framework };
  if (job.team !== undefined) jobOut.team = job.team;
  if (job.project !== undefined) jobOut.project = job.project;
  if (job.estimated_hours !== undefined) jobOut.estimated_hours = job.estimated_hours;

  const entryOut = {} as JobSpec["entrypoint"];
  if (entry.uri !== undefined) {
    entryOut.uri = entry.uri.value;
    entryOut.uri_kind = entry.uri.kind;
  }
  if (entry.command !== undefined) entryOut.command = entry.command.argv;
  entryOut.command_shell = entry.command?.shell ?? false;
  entryOut.args = entry.args;
  entryOut.env = entry.env ?? {};
  if (entry.working_dir !== undefined) entryOut.working_dir = entry.working_dir;

  const resOut = { gpus: res.gpus } as JobSpec["resources"];
  if (res.max_gpus_per_node !== undefined) resOut.max_gpus_per_node = res.max_gpus_per_node;
  resOut.requires_multi_node = res.requires_multi_node;
  if (res.gpu_memory !== undefined) resOut.gpu_memory_gb = res.gpu_memory;
  if (res.cpu_memory !== undefined) resOut.cpu_memory_gb = res.cpu_memory;
  if (res.storage !== undefined) resOut.storage_gb = res.storage;
  resOut.gpu_type = res.gpu_type ?? [];
  if (res.gpu_fraction !== undefined) resOut.gpu_fraction = res.gpu_fraction;
  if (res.mig_profile !== undefined) resOut.mig_profile = res.mig_profile;

  const dataOut = {} as JobSpec["data"];
  if (data.dataset !== undefined) {
    dataOut.dataset = data.dataset.value;
    dataOut.dataset_kind = data.dataset.kind as Exclude<UriKind, "git">;
  }
  if (data.size_gb !== undefined) dataOut.size_gb = data.size_gb;
  dataOut.locality = data.locality;
  dataOut.replication_policy = data.replication_policy;
  dataOut.fetch = data.fetch;

  const consOut = {} as JobSpec["constraints"];
  if (budgetUsd !== undefined) consOut.budget_usd = budgetUsd;
  if (cons.deadline !== undefined) consOut.deadline = cons.deadline;
  consOut.allow_spot = cons.allow_spot;
  consOut.min_reliability = cons.min_reliability;
  consOut.performance_weight = cons.performance_weight;
  consOut.allowed_providers = unique(cons.allowed_providers);
  consOut.excluded_providers = unique(cons.excluded_providers);
  consOut.allowed_regions = unique(cons.allowed_regions);
  consOut.excluded_regions = unique(cons.excluded_regions);
  consOut.priority = cons.priority;

  const execOut: JobSpec["execution"] = { mode, mode_derived: exec.mode === undefined, tasks };
  if (exec.max_parallel !== undefined) execOut.max_parallel = exec.max_parallel;

  const ckptOut = {} as JobSpec["checkpoint"];
  if (ckpt.interval !== undefined) ckptOut.interval_seconds = ckpt.interval;
  if (ckpt.interval_steps !== undefined) ckptOut.interval_steps = ckpt.interval_steps;
  ckptOut.keep = ckpt.keep;
  ckptOut.trigger = ckpt.trigger;
  if (ckpt.uri !== undefined) {
    ckptOut.uri = ckpt.uri.value;
    ckptOut.uri_kind = ckpt.uri.kind as Exclude<UriKind, "git">;
  }

  const spec: JobSpec = {
    version: 1,
    job: jobOut,
    entrypoint: entryOut,
    resources: resOut,
    data: dataOut,
    constraints: consOut,
    execution: execOut,
    checkpoint: ckptOut,
    retry: { max_attempts: retry.max_attempts },
  };
  if (hpo) spec.hpo = { trials: hpo.trials, parameters: hpo.parameters, objective: hpo.objective };
  return { spec, issues: [] };
}
