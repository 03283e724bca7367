import { describe, expect, it } from "vitest";
import { GPU_TYPES } from "./gpu-types.js";
import { formatSpecIssues, MIG_PROFILES, parseJobSpec, SPEC_MAX_BYTES, type JobSpec, type ParseResult } from "./index.js";
import { ALL_MIG_PROFILES, MIG_MODELS_BY_GPU_TYPE } from "./mig-profiles.js";

function spec(yaml: string): JobSpec {
  const r = parseJobSpec(yaml);
  if (!r.ok) throw new Error(formatSpecIssues(r.issues));
  return r.spec;
}

function issues(yaml: string): string[] {
  const r = parseJobSpec(yaml);
  if (r.ok) throw new Error("expected the spec to be rejected");
  return r.issues.map((i) => `${i.line}:${i.column} ${i.path}: ${i.message}`);
}

/** A minimal valid spec with `job` fields and extra top-level YAML appended. */
function withJob(type: string, framework: string, extra = "", resources = "gpus: 1"): string {
  return `job: {name: t, type: ${type}, framework: ${framework}}\nentrypoint: {command: run}\nresources: {${resources}}\n${extra}`;
}

const HPO = "hpo:\n  trials: 7\n  parameters: {lr: {type: uniform, min: 0, max: 1}}\n  objective: {metric: m, direction: minimize}\n";

describe("defaults", () => {
  it("fills every defaulted field of a minimal spec", () => {
    expect(spec(withJob("training", "command"))).toEqual({
      version: 1,
      job: { name: "t", type: "training", framework: "command" },
      entrypoint: { command: ["run"], command_shell: true, args: [], env: {} },
      resources: { gpus: 1, requires_multi_node: false, gpu_type: [] },
      data: { locality: "prefer", replication_policy: "none", fetch: false },
      constraints: {
        allow_spot: false,
        min_reliability: 0,
        performance_weight: 0,
        allowed_providers: [],
        excluded_providers: [],
        allowed_regions: [],
        excluded_regions: [],
        priority: 500,
      },
      execution: { mode: "single_cluster", mode_derived: true, tasks: 1 },
      checkpoint: { keep: 3, trigger: "signal" },
      retry: { max_attempts: 3 },
    } satisfies JobSpec);
  });

  it("is a plain record, storable as JSON as is", () => {
    const record: Record<string, unknown> = spec(withJob("training", "command"));
    expect(JSON.parse(JSON.stringify(record))).toEqual(record);
  });

  it("writes every field, set or defaulted, in the documented order", () => {
    // The normalized spec is stored and compared as JSON, so its key order is part of the contract.
    const full = spec(`version: 1
job: {name: full, type: training, framework: pytorch, team: ml, project: p, estimated_hours: 2}
entrypoint: {uri: s3://code-bucket/a.tar.gz, command: [python, t.py], args: [x], env: {A: b}, working_dir: /w}
resources: {gpus: 1, max_gpus_per_node: 8, requires_multi_node: false, gpu_memory: 16GB, cpu_memory: 64GB, storage: 1TB, gpu_type: [a100], gpu_fraction: 0.5}
data: {dataset: s3://data-bucket/d/, size_gb: 10, locality: required, replication_policy: pre-stage, fetch: true}
constraints: {budget: 12.50, deadline: 2026-12-01T20:00:00+02:00, allow_spot: true, min_reliability: 0.9, performance_weight: 0.5, allowed_providers: [aws, aws, gcp], excluded_providers: azure, allowed_regions: [us-east-1], excluded_regions: [eu-west-1], priority: 7}
execution: {mode: single_cluster, tasks: 1}
checkpoint: {interval: 1h, keep: 2, trigger: file, uri: s3://ckpt-bucket/c/}
retry: {max_attempts: 5}
`);
    expect(JSON.stringify(full)).toBe(
      '{"version":1,"job":{"name":"full","type":"training","framework":"pytorch","team":"ml","project":"p","estimated_hours":2},' +
        '"entrypoint":{"uri":"s3://code-bucket/a.tar.gz","uri_kind":"s3","command":["python","t.py"],"command_shell":false,"args":["x"],"env":{"A":"b"},"working_dir":"/w"},' +
        '"resources":{"gpus":1,"max_gpus_per_node":8,"requires_multi_node":false,"gpu_memory_gb":16,"cpu_memory_gb":64,"storage_gb":1000,"gpu_type":["A100"],"gpu_fraction":0.5},' +
        '"data":{"dataset":"s3://data-bucket/d/","dataset_kind":"s3","size_gb":10,"locality":"required","replication_policy":"pre-stage","fetch":true},' +
        '"constraints":{"budget_usd":"12.50","deadline":"2026-12-01T18:00:00.000Z","allow_spot":true,"min_reliability":0.9,"performance_weight":0.5,' +
        '"allowed_providers":["aws","gcp"],"excluded_providers":["azure"],"allowed_regions":["us-east-1"],"excluded_regions":["eu-west-1"],"priority":7},' +
        '"execution":{"mode":"single_cluster","mode_derived":false,"tasks":1},' +
        '"checkpoint":{"interval_seconds":3600,"keep":2,"trigger":"file","uri":"s3://ckpt-bucket/c/","uri_kind":"s3"},"retry":{"max_attempts":5}}',
    );
    const hpo = spec(
      "job: {name: t, type: hpo, framework: pytorch}\nentrypoint: {uri: ./train.py}\nresources: {gpus: 1, mig_profile: 1g.10gb}\nexecution: {max_parallel: 3}\n" +
        "hpo: {trials: 4, parameters: {lr: {type: uniform, min: 0, max: 1}, opt: {type: choice, values: [a, 1, true]}}, objective: {metric: m, direction: minimize}}\n" +
        "checkpoint: {interval_steps: 10}\n",
    );
    expect(JSON.stringify(hpo)).toBe(
      '{"version":1,"job":{"name":"t","type":"hpo","framework":"pytorch"},"entrypoint":{"uri":"./train.py","uri_kind":"local","command_shell":false,"args":[],"env":{}},' +
        '"resources":{"gpus":1,"requires_multi_node":false,"gpu_type":[],"mig_profile":"1g.10gb"},"data":{"locality":"prefer","replication_policy":"none","fetch":false},' +
        '"constraints":{"allow_spot":false,"min_reliability":0,"performance_weight":0,"allowed_providers":[],"excluded_providers":[],"allowed_regions":[],"excluded_regions":[],"priority":500},' +
        '"execution":{"mode":"multi_task","mode_derived":true,"tasks":4,"max_parallel":3},"checkpoint":{"interval_steps":10,"keep":3,"trigger":"signal"},"retry":{"max_attempts":3},' +
        '"hpo":{"trials":4,"parameters":{"lr":{"type":"uniform","min":0,"max":1},"opt":{"type":"choice","values":["a",1,true]}},"objective":{"metric":"m","direction":"minimize"}}}',
    );
  });

  it("leaves out optional fields the user did not set (no undefined keys)", () => {
    const s = spec(withJob("training", "command"));
    expect(Object.keys(s.job)).toEqual(["name", "type", "framework"]);
    expect("budget_usd" in s.constraints).toBe(false);
  });
});

describe("derived execution mode", () => {
  it.each([
    ["training", "pytorch_ddp", "single_cluster"],
    ["training", "horovod", "single_cluster"],
    ["training", "horovod_elastic", "single_cluster"],
    ["training", "tensorflow_multiworker", "single_cluster"],
    ["training", "pytorch", "single_cluster"],
    ["training", "command", "single_cluster"],
    ["inference", "pytorch", "multi_task"],
    ["inference", "command", "multi_task"],
    ["eval", "pytorch", "multi_task"],
    ["hpo", "pytorch", "multi_task"],
    ["hpo", "command", "multi_task"],
    // Synchronous frameworks win over the job type.
    ["inference", "pytorch_ddp", "single_cluster"],
    ["hpo", "horovod", "single_cluster"],
  ])("%s + %s → %s", (type, framework, mode) => {
    const s = spec(withJob(type, framework, type === "hpo" ? HPO : ""));
    expect(s.execution).toMatchObject({ mode, mode_derived: true });
  });

  it("uses hpo.trials as the task count of an hpo job", () => {
    expect(spec(withJob("hpo", "pytorch", HPO)).execution.tasks).toBe(7);
  });

  it("keeps an explicit mode and says it was not derived", () => {
    const s = spec(withJob("inference", "pytorch", "execution: {mode: single_cluster}"));
    expect(s.execution).toEqual({ mode: "single_cluster", mode_derived: false, tasks: 1 });
  });

  it("refuses multi_task for a synchronous framework even when the type would allow it", () => {
    expect(issues(withJob("inference", "horovod", "execution:\n  mode: multi_task\n"))).toEqual([
      "5:9 execution.mode: horovod trains synchronously: all its ranks exchange gradients every step and must run inside one cluster, so execution.mode must be single_cluster (or left out)",
    ]);
  });
});

describe("normalization", () => {
  it("turns a single gpu_type into a canonical, de-duplicated list", () => {
    expect(spec(withJob("training", "command", "", "gpus: 1, gpu_type: a100-80GB")).resources.gpu_type).toEqual(["A100-80GB"]);
    expect(spec(withJob("training", "command", "", "gpus: 1, gpu_type: [h100, H100, 'H 100']")).resources.gpu_type).toEqual(["H100"]);
  });

  it("keeps a list command as argv and marks a string command for the shell", () => {
    const list = spec(`job: {name: t, type: training, framework: command}\nentrypoint: {command: [python, "a b.py"]}\nresources: {gpus: 1}\n`);
    expect(list.entrypoint).toMatchObject({ command: ["python", "a b.py"], command_shell: false });
    expect(spec(withJob("training", "command")).entrypoint).toMatchObject({ command: ["run"], command_shell: true });
  });

  it("normalizes MIG profile spellings", () => {
    expect(spec(withJob("inference", "command", "", "gpus: 1, mig_profile: 'MIG 1G.10GB'")).resources.mig_profile).toBe("1g.10gb");
  });

  it("keeps the budget's digits exactly as written", () => {
    const budget = (v: string): string | undefined => spec(withJob("training", "command", `constraints: {budget: ${v}}`)).constraints.budget_usd;
    expect(budget("0.1")).toBe("0.1");
    expect(budget("12.50")).toBe("12.50");
    expect(budget("100000000000.000001")).toBe("100000000000.000001");
    expect(budget('"$ 1200"')).toBe("1200");
  });

  it("normalizes the deadline to UTC", () => {
    expect(spec(withJob("training", "command", "constraints: {deadline: '2026-06-01T12:00:00-07:00'}")).constraints.deadline).toBe(
      "2026-06-01T19:00:00.000Z",
    );
  });

  it("accepts a single provider or region as a one-item list", () => {
    const c = spec(withJob("training", "command", "constraints: {allowed_providers: gcp, excluded_regions: us-east-1}")).constraints;
    expect([c.allowed_providers, c.excluded_regions]).toEqual([["gcp"], ["us-east-1"]]);
  });
});

describe("cross-field rules name the fields and the numbers", () => {
  it.each([
    ["gpus: 8, max_gpus_per_node: 4", "resources.gpus: 8 GPUs cannot fit on one node of at most 4; set requires_multi_node: true"],
    [
      "gpus: 8, max_gpus_per_node: 8, requires_multi_node: true",
      "resources.requires_multi_node: 8 GPUs fit on one node of at most 8 (max_gpus_per_node)",
    ],
    ["gpus: 3, gpu_fraction: 0.5", "resources.gpu_fraction: gpu_fraction is a share of one GPU and needs gpus: 1, got gpus: 3"],
    ["gpus: 2, mig_profile: 1g.10gb", "resources.mig_profile: mig_profile asks for one MIG instance and needs gpus: 1, got gpus: 2"],
    ["gpus: 1, gpu_type: A100, mig_profile: 1g.10gb", ""],
    ["gpus: 1, gpu_type: A100, mig_profile: 1g.20gb", "1g.20gb is not a MIG profile of gpu_type [A100] (A100-40GB: 1g.5gb"],
  ])("%s", (resources, message) => {
    const r = parseJobSpec(withJob("training", "command", "", resources));
    if (message === "") {
      expect(r.ok, r.ok ? "" : formatSpecIssues(r.issues)).toBe(true);
      return;
    }
    expect(r.ok ? [] : r.issues.map((i) => `${i.path}: ${i.message}`)).toContainEqual(expect.stringContaining(message));
  });

  it("reports all independent problems at once, in source order", () => {
    const yaml = [
      "job: {name: Bad_Name, type: training, framework: pytorch}", // 1
      "entrypoint: {command: x, args: [1]}", // 2
      "resources: {gpus: 0}", // 3
      "constraints: {priority: -1, budget: 0}", // 4
      "retry: {max_attempts: 0}", // 5
    ].join("\n");
    expect(issues(yaml)).toEqual([
      "1:13 job.name: expected a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters), got \"Bad_Name\"",
      '2:33 entrypoint.args[0]: expected a string, got 1; quote it: "1"',
      "3:19 resources.gpus: expected an integer ≥ 1 and ≤ 4096, got 0",
      "4:25 constraints.priority: expected an integer ≥ 0 and ≤ 1000, got -1",
      "4:37 constraints.budget: expected an amount in USD > 0, got 0",
      "5:23 retry.max_attempts: expected an integer ≥ 1 and ≤ 100, got 0",
    ]);
  });

  it("points a missing key at its parent's key", () => {
    expect(issues("job:\n  name: x\n  type: training\nentrypoint: {command: x}\nresources: {gpus: 1}\n")).toEqual([
      "1:1 job.framework: required; expected one of pytorch_ddp, horovod, horovod_elastic, tensorflow_multiworker, pytorch, command",
    ]);
  });

  it("caps the number of issues with a summary line", () => {
    const yaml = `${withJob("training", "command")}${Array.from({ length: 120 }, (_, i) => `extra_${i}: 1`).join("\n")}\n`;
    const r = parseJobSpec(yaml);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.issues).toHaveLength(51);
    expect(r.issues[50]).toEqual({ path: "", line: null, column: null, message: "70 more issues not shown; fix the ones above first" });
  });
});

describe("parseJobSpec never throws", () => {
  const hostile: Array<[string, unknown]> = [
    ["null", null],
    ["a number", 42],
    ["an object", { job: {} }],
    ["undefined", undefined],
    ["a lone surrogate", "job: \ud800\n"],
    ["NUL bytes", "job:\n  name: \u0000\n"],
    ["control characters", "\u0007\u0008: \u001b[31m"],
    ["only a BOM", "\ufeff"],
    ["a document end marker", "...\n"],
    ["a lone colon", ":"],
    ["unbalanced brackets", "]]]}}}"],
    ["an unterminated quote", 'job: "abc'],
  ];
  it.each(hostile)("%s", (_name, input) => {
    let r: ParseResult | undefined;
    expect(() => {
      r = parseJobSpec(input as string);
    }).not.toThrow();
    expect(r?.ok).toBe(false);
    if (r && !r.ok) expect(r.issues.length).toBeGreaterThan(0);
  });
});

describe("size limit", () => {
  it("is 1 MiB by default and configurable", () => {
    expect(SPEC_MAX_BYTES).toBe(1024 * 1024);
    const yaml = withJob("training", "command");
    expect(parseJobSpec(yaml).ok).toBe(true);
    const r = parseJobSpec(yaml, { maxBytes: 20 });
    expect(r).toEqual({
      ok: false,
      issues: [{ path: "", line: null, column: null, message: "the spec is larger than the limit of 20 bytes; job specs are small, keep data out of them" }],
    });
  });

  it("ignores a nonsensical maxBytes instead of refusing everything", () => {
    expect(parseJobSpec(withJob("training", "command"), { maxBytes: Number.NaN }).ok).toBe(true);
    expect(parseJobSpec(withJob("training", "command"), { maxBytes: -1 }).ok).toBe(true);
  });
});

describe("MIG_PROFILES", () => {
  it("names every profile <slices>g.<memory>gb with an optional variant suffix", () => {
    for (const p of ALL_MIG_PROFILES) expect(p).toMatch(/^[1-7]g\.\d+gb([+-][a-z.]+)?$/);
  });

  it("covers the MIG-capable GPUs NVIDIA lists", () => {
    expect(Object.keys(MIG_PROFILES)).toEqual(
      expect.arrayContaining(["A30", "A100-40GB", "A100-80GB", "H100", "H100-NVL", "H200", "B200", "GH200"]),
    );
    expect(MIG_PROFILES["A100-80GB"]).toContain("1g.10gb");
    expect(MIG_PROFILES["A100-40GB"]).toContain("7g.40gb");
    expect(MIG_PROFILES.A30).toEqual(["1g.6gb", "1g.6gb+me", "2g.12gb", "2g.12gb+me", "4g.24gb"]);
  });

  it("maps only catalog GPU types to table rows that exist", () => {
    for (const [type, models] of Object.entries(MIG_MODELS_BY_GPU_TYPE)) {
      expect(GPU_TYPES as readonly string[]).toContain(type);
      for (const m of models ?? []) expect(Object.keys(MIG_PROFILES)).toContain(m);
    }
  });

  it("is frozen", () => {
    expect(Object.isFrozen(MIG_PROFILES)).toBe(true);
    expect(Object.isFrozen(MIG_PROFILES.H100)).toBe(true);
  });
});

describe("checkpoint.trigger and data.fetch", () => {
  const base = `version: 1
job: {name: t, type: training, framework: pytorch_ddp}
entrypoint: {command: [python, train.py]}
resources: {gpus: 1}
`;
  it("accepts them and keeps them in the normalized spec", () => {
    const r = parseJobSpec(`${base}checkpoint: {uri: "s3://ckpts/c/", trigger: file}\ndata: {dataset: "s3://datasets/d/", fetch: true}\n`);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.spec.checkpoint.trigger).toBe("file");
    expect(r.spec.data.fetch).toBe(true);
  });
  it("names the field and the choices when a value is wrong", () => {
    const r = parseJobSpec(`${base}checkpoint: {trigger: sometimes}\ndata: {fetch: maybe}\n`);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const by = new Map(r.issues.map((i) => [i.path, i.message]));
    expect(by.get("checkpoint.trigger")).toMatch(/signal.*file/);
    expect(by.get("data.fetch")).toMatch(/true|false|boolean/);
  });
});
