import { describe, expect, it } from "vitest";
import { AppError } from "../app-error.js";
import { busyFirst, job, node } from "./fixtures.test-util.js";
import { compareJobsForPlacement, gangShapes, placeJobs } from "./placement.js";

describe("single-node best fit", () => {
  it("puts a job on the feasible node left with the fewest free GPUs", () => {
    const d = placeJobs({
      jobs: [job("j", { gpus: 2 })],
      nodes: [node("empty", { gpus: 8 }), node("half", { gpus: 8, busy: busyFirst(5) }), node("tight", { gpus: 8, busy: busyFirst(7) })],
    });
    // tight has only 1 free: infeasible; half leaves 1 free; empty would leave 6.
    expect(d.placements).toEqual([{ jobId: "j", nodes: [{ nodeId: "half", gpuIndices: [5, 6] }] }]);
    expect(d.pending).toEqual([]);
  });

  it("keeps a whole node free for a later large job", () => {
    const d = placeJobs({
      jobs: [job("small", { gpus: 4, priority: 900 }), job("big", { gpus: 8, priority: 100 })],
      nodes: [node("a", { gpus: 8 }), node("b", { gpus: 8, busy: busyFirst(4) })],
    });
    expect(d.placements.map((p) => [p.jobId, p.nodes[0]?.nodeId])).toEqual([
      ["small", "b"],
      ["big", "a"],
    ]);
  });

  it("breaks ties by node id", () => {
    const d = placeJobs({ jobs: [job("j", { gpus: 1 })], nodes: [node("n2", { gpus: 4 }), node("n1", { gpus: 4 })] });
    expect(d.placements[0]?.nodes[0]?.nodeId).toBe("n1");
  });

  it("never places on nodes that are not ready", () => {
    const d = placeJobs({
      jobs: [job("j", { gpus: 1 })],
      nodes: [node("a", { state: "draining" }), node("b", { state: "unreachable" }), node("c", { state: "lost" })],
    });
    expect(d.placements).toEqual([]);
    expect(d.pending[0]).toMatchObject({ neverFits: false });
    expect(d.pending[0]?.reason).toContain("only nodes that are not ready could hold it (a draining, b unreachable, c lost)");
  });

  it("honours max_gpus_per_node and reports it as never fitting", () => {
    const d = placeJobs({ jobs: [job("j", { gpus: 8, maxGpusPerNode: 4 })], nodes: [node("a", { gpus: 8 })] });
    expect(d.pending).toEqual([
      { jobId: "j", neverFits: true, reason: "needs 8 GPUs on one node but max_gpus_per_node is 4 (set requires_multi_node to spread it)" },
    ]);
  });
});

describe("GPU memory and type filters", () => {
  const nodes = [
    node("small-mem", { model: "A100-40GB", memoryGb: 40, gpus: 8 }),
    node("h100", { model: "H100", memoryGb: 80, gpus: 8, busy: busyFirst(6) }),
    node("a100", { model: "A100-80GB", memoryGb: 80, gpus: 8, busy: busyFirst(4) }),
  ];

  it("uses only GPUs with at least the requested memory", () => {
    const d = placeJobs({ jobs: [job("j", { gpus: 4, gpuMemoryGb: 80 })], nodes });
    expect(d.placements[0]?.nodes).toEqual([{ nodeId: "a100", gpuIndices: [4, 5, 6, 7] }]);
  });

  it("uses only the listed GPU models", () => {
    const d = placeJobs({ jobs: [job("j", { gpus: 2, gpuTypes: ["H100"] })], nodes });
    expect(d.placements[0]?.nodes).toEqual([{ nodeId: "h100", gpuIndices: [6, 7] }]);
  });

  it("skips non-matching GPUs inside a mixed node", () => {
    const mixed = node("mixed", {
      gpuList: [
        { index: 0, uuid: "u0", model: "T4", memoryGb: 16, allocatedTo: null },
        { index: 1, uuid: "u1", model: "L4", memoryGb: 24, allocatedTo: null },
        { index: 2, uuid: "u2", model: "T4", memoryGb: 16, allocatedTo: null },
      ],
    });
    const d = placeJobs({ jobs: [job("j", { gpus: 2, gpuTypes: ["T4"] })], nodes: [mixed] });
    expect(d.placements[0]?.nodes).toEqual([{ nodeId: "mixed", gpuIndices: [0, 2] }]);
  });

  it("says never fits when no registered GPU matches", () => {
    const d = placeJobs({ jobs: [job("j", { gpus: 1, gpuTypes: ["B200"], gpuMemoryGb: 180 })], nodes });
    expect(d.pending).toEqual([
      { jobId: "j", neverFits: true, reason: "needs 1 B200 GPU of ≥180 GB on one node; no registered node has a matching GPU" },
    ]);
  });
});

describe("gang placement", () => {
  it("places N nodes of one instance type, each with the same k GPUs", () => {
    const d = placeJobs({
      jobs: [job("g", { gpus: 16, requiresMultiNode: true, maxGpusPerNode: 8 })],
      nodes: [node("n1"), node("n2"), node("n3")],
    });
    expect(d.placements).toEqual([
      {
        jobId: "g",
        nodes: [
          { nodeId: "n1", gpuIndices: [0, 1, 2, 3, 4, 5, 6, 7] },
          { nodeId: "n2", gpuIndices: [0, 1, 2, 3, 4, 5, 6, 7] },
        ],
      },
    ]);
  });

  it("is all or none: no GPU is held when the gang does not fit", () => {
    const d = placeJobs({
      jobs: [job("g", { gpus: 24, requiresMultiNode: true, maxGpusPerNode: 8 }), job("s", { gpus: 8, priority: 1 })],
      nodes: [node("n1"), node("n2"), node("n3", { busy: busyFirst(1) })],
      // reservations off: the point is that a failed gang leaves nothing behind
    }, { maxReservations: 0 });
    expect(d.placements.map((p) => p.jobId)).toEqual(["s"]);
    expect(d.pending).toEqual([
      {
        jobId: "g",
        neverFits: false,
        reason:
          "needs 24 GPUs as a gang (≤8 per node); no provider+region+network group has 3 ready nodes of one instance type with 8 free GPUs each (closest: aws/us-east-1/net-a p4de.24xlarge has 2)",
      },
    ]);
  });

  it("enforces one provider, region and network", () => {
    const d = placeJobs({
      jobs: [job("g", { gpus: 16, requiresMultiNode: true, maxGpusPerNode: 8 })],
      nodes: [
        node("aws-1", { provider: "aws" }),
        node("gcp-1", { provider: "gcp" }),
        node("east-2", { region: "us-east-2" }),
        node("other-net", { network: "net-b" }),
      ],
    });
    expect(d.placements).toEqual([]);
    expect(d.pending[0]).toMatchObject({ neverFits: true });
    expect(d.pending[0]?.reason).toBe(
      "needs 16 GPUs as a gang (≤8 per node); no provider+region+network group has 2 nodes of one instance type with 8 GPUs each (closest: aws/us-east-1/net-a p4de.24xlarge has 1)",
    );
  });

  it("enforces one instance type", () => {
    const d = placeJobs({
      jobs: [job("g", { gpus: 16, requiresMultiNode: true, maxGpusPerNode: 8 })],
      nodes: [node("a", { instanceType: "p4d.24xlarge" }), node("b", { instanceType: "p4de.24xlarge" })],
    });
    expect(d.pending[0]?.neverFits).toBe(true);
  });

  it("splits into equal smaller shares when max_gpus_per_node or free GPUs require it", () => {
    const d = placeJobs({
      jobs: [job("g", { gpus: 12, requiresMultiNode: true, maxGpusPerNode: 8 })],
      nodes: [node("n1"), node("n2")],
    });
    // 8 does not divide 12: two nodes of 6 keep the world size exact.
    expect(d.placements[0]?.nodes.map((n) => n.gpuIndices.length)).toEqual([6, 6]);
  });

  it("prefers fewest nodes, then the group leaving fewest free GPUs on touched nodes", () => {
    const d = placeJobs({
      jobs: [job("g", { gpus: 8, requiresMultiNode: true, maxGpusPerNode: 4 })],
      nodes: [
        node("a1", { network: "a" }),
        node("a2", { network: "a" }),
        node("b1", { network: "b", busy: busyFirst(4) }),
        node("b2", { network: "b", busy: busyFirst(4) }),
      ],
    });
    expect(d.placements[0]?.nodes.map((n) => n.nodeId)).toEqual(["b1", "b2"]);
  });

  it("lets a multi-node job run as a gang of one when one node can hold it all", () => {
    const d = placeJobs({ jobs: [job("g", { gpus: 8, requiresMultiNode: true })], nodes: [node("n1"), node("n2")] });
    expect(d.placements[0]?.nodes).toEqual([{ nodeId: "n1", gpuIndices: [0, 1, 2, 3, 4, 5, 6, 7] }]);
  });

  it("says a gang waits on nodes that are not ready rather than never fitting", () => {
    const d = placeJobs({
      jobs: [job("g", { gpus: 16, requiresMultiNode: true, maxGpusPerNode: 8 })],
      nodes: [node("n1"), node("n2", { state: "unreachable" })],
    });
    expect(d.pending).toEqual([
      {
        jobId: "g",
        neverFits: false,
        reason: "needs 16 GPUs as a gang (≤8 per node); it fits the registered topology only with nodes that are not ready (n2 unreachable)",
      },
    ]);
  });

  it("takes a whole node set of one gang without mixing in other shapes", () => {
    const d = placeJobs({
      jobs: [job("g", { gpus: 4, requiresMultiNode: true })],
      nodes: [node("n1", { busy: busyFirst(6) }), node("n2", { busy: busyFirst(6) }), node("n3", { busy: busyFirst(7) })],
    });
    // 4 GPUs: k=4 impossible (2 free max), k=2 on n1+n2.
    expect(d.placements[0]?.nodes).toEqual([
      { nodeId: "n1", gpuIndices: [6, 7] },
      { nodeId: "n2", gpuIndices: [6, 7] },
    ]);
  });
});

describe("multi_task", () => {
  it("places each unit on one node and spreads units over providers and regions", () => {
    const d = placeJobs({
      jobs: [job("hpo", { executionMode: "multi_task", gpus: 4, tasks: 3 })],
      nodes: [node("aws", { gpus: 4 }), node("gcp", { provider: "gcp", region: "us-central1", gpus: 4 })],
    });
    expect(d.placements).toEqual([
      { jobId: "hpo", unit: 0, nodes: [{ nodeId: "aws", gpuIndices: [0, 1, 2, 3] }] },
      { jobId: "hpo", unit: 1, nodes: [{ nodeId: "gcp", gpuIndices: [0, 1, 2, 3] }] },
    ]);
    expect(d.pending).toEqual([
      {
        jobId: "hpo",
        neverFits: false,
        unitsPlaced: 2,
        unitsPending: 1,
        reason: "placed 2 of 3 units; each unit needs 4 GPUs on one node; largest ready node has 0 free (aws)",
      },
    ]);
  });

  it("reports a unit that can never fit as never fitting, with nothing placed", () => {
    const d = placeJobs({
      jobs: [job("eval", { executionMode: "multi_task", gpus: 2, tasks: 2, gpuTypes: ["H100"] })],
      nodes: [node("n", { model: "A100-80GB" })],
    });
    expect(d.placements).toEqual([]);
    expect(d.pending).toEqual([
      {
        jobId: "eval",
        neverFits: true,
        unitsPlaced: 0,
        unitsPending: 2,
        reason: "placed 0 of 2 units; each unit needs 2 H100 GPUs on one node; no registered node has a matching GPU",
      },
    ]);
  });

  it("places only the units still pending", () => {
    const d = placeJobs({
      jobs: [job("inf", { executionMode: "multi_task", gpus: 1, tasks: 4, pendingUnits: [3, 1] })],
      nodes: [node("n", { gpus: 8 })],
    });
    expect(d.placements.map((p) => p.unit)).toEqual([1, 3]);
    expect(d.pending).toEqual([]);
  });
});

describe("queue order", () => {
  it("orders by priority desc, deadline asc with null last, createdAt asc, then id", () => {
    const t = (s: string) => new Date(`2026-11-0${s}T00:00:00Z`);
    const jobs = [
      job("e", { priority: 100 }),
      job("d", { priority: 500, deadline: null, createdAt: t("1") }),
      job("c", { priority: 500, deadline: t("9"), createdAt: t("5") }),
      job("b2", { priority: 500, deadline: t("8"), createdAt: t("3") }),
      job("b1", { priority: 500, deadline: t("8"), createdAt: t("3") }),
      job("a", { priority: 900 }),
    ];
    expect([...jobs].sort(compareJobsForPlacement).map((j) => j.id)).toEqual(["a", "b1", "b2", "c", "d", "e"]);
  });

  it("gives the scarce GPU to the higher-priority job, then the earlier deadline", () => {
    const d = placeJobs({
      jobs: [
        job("late", { priority: 500, deadline: new Date("2026-12-31T00:00:00Z") }),
        job("low", { priority: 10 }),
        job("soon", { priority: 500, deadline: new Date("2026-11-30T00:00:00Z") }),
      ],
      nodes: [node("n", { gpus: 1 })],
    });
    expect(d.placements.map((p) => p.jobId)).toEqual(["soon"]);
    expect(d.pending.map((p) => p.jobId)).toEqual(["late", "low"]);
  });

  it("later jobs see the GPUs taken by earlier ones", () => {
    const d = placeJobs({ jobs: [job("a", { gpus: 6 }), job("b", { gpus: 6 })], nodes: [node("n", { gpus: 8 })] }, { maxReservations: 0 });
    expect(d.placements.map((p) => p.jobId)).toEqual(["a"]);
    expect(d.pending[0]?.reason).toBe("needs 6 GPUs on one node; largest ready node has 2 free (n)");
  });
});

describe("backfill reservation", () => {
  it("holds free GPUs for the blocked head job so smaller jobs cannot starve it", () => {
    const d = placeJobs({
      jobs: [job("big", { gpus: 8, priority: 900 }), job("small", { gpus: 2, priority: 100 })],
      nodes: [node("n1", { busy: busyFirst(4) }), node("n2", { busy: busyFirst(6) })],
    });
    expect(d.pending[0]).toMatchObject({ jobId: "big", neverFits: false, reservation: [{ nodeId: "n1", gpuIndices: [4, 5, 6, 7] }] });
    // small backfills on n2 instead of eating big's reserved GPUs
    expect(d.placements).toEqual([{ jobId: "small", nodes: [{ nodeId: "n2", gpuIndices: [6, 7] }] }]);
  });

  it("tells a job blocked only by a reservation why it waits", () => {
    const d = placeJobs({
      jobs: [job("big", { gpus: 8, priority: 900 }), job("small", { gpus: 2, priority: 100 })],
      nodes: [node("n1", { busy: busyFirst(4) })],
    });
    expect(d.pending[1]).toEqual({
      jobId: "small",
      neverFits: false,
      reason: "needs 2 GPUs on one node; the free GPUs on n1 are held for higher-priority job big (backfill reservation)",
    });
  });

  it("reserves for a blocked gang on the nodes closest to fitting", () => {
    const d = placeJobs({
      jobs: [job("g", { gpus: 16, requiresMultiNode: true, maxGpusPerNode: 8, priority: 900 }), job("s", { gpus: 1, priority: 1 })],
      nodes: [node("n1", { busy: busyFirst(2) }), node("n2", { busy: busyFirst(8) }), node("n3", { busy: busyFirst(7) })],
    });
    expect(d.pending[0]?.reservation).toEqual([
      { nodeId: "n1", gpuIndices: [2, 3, 4, 5, 6, 7] },
      { nodeId: "n3", gpuIndices: [7] },
    ]);
    expect(d.placements).toEqual([]);
    expect(d.pending[1]?.reason).toContain("held for higher-priority job g");
  });

  it("reserves for at most maxReservations jobs and never for one that never fits", () => {
    const d = placeJobs({
      jobs: [
        job("huge", { gpus: 64, priority: 1000 }),
        job("b1", { gpus: 8, priority: 900 }),
        job("b2", { gpus: 8, priority: 800 }),
        job("s", { gpus: 1, priority: 1 }),
      ],
      nodes: [node("n1", { busy: busyFirst(1) }), node("n2", { busy: busyFirst(1) })],
    });
    expect(d.pending.find((p) => p.jobId === "huge")).toMatchObject({ neverFits: true });
    expect(d.pending.find((p) => p.jobId === "huge")?.reservation).toBeUndefined();
    expect(d.pending.find((p) => p.jobId === "b1")?.reservation).toEqual([{ nodeId: "n1", gpuIndices: [1, 2, 3, 4, 5, 6, 7] }]);
    expect(d.pending.find((p) => p.jobId === "b2")?.reservation).toBeUndefined();
    expect(d.placements).toEqual([{ jobId: "s", nodes: [{ nodeId: "n2", gpuIndices: [1] }] }]);
  });
});

describe("reasons", () => {
  it("distinguishes never fits from busy for a single-node job", () => {
    const nodes = [node("n1", { busy: busyFirst(8) })];
    const never = placeJobs({ jobs: [job("j", { gpus: 16, gpuMemoryGb: 80 })], nodes });
    expect(never.pending[0]).toEqual({
      jobId: "j",
      neverFits: true,
      reason: "needs 16 GPUs of ≥80 GB on one node; largest registered node has 8 matching",
    });
    const busy = placeJobs({ jobs: [job("j", { gpus: 8, gpuMemoryGb: 80 })], nodes }, { maxReservations: 0 });
    expect(busy.pending[0]).toEqual({
      jobId: "j",
      neverFits: false,
      reason: "needs 8 GPUs of ≥80 GB on one node; largest ready node has 0 free (n1)",
    });
  });

  it("names the gang shape and the closest group when the gang never fits", () => {
    const d = placeJobs({
      jobs: [job("g", { gpus: 16, requiresMultiNode: true, maxGpusPerNode: 8, gpuTypes: ["A100-80GB"] })],
      nodes: [node("n1"), node("n2", { model: "H100" })],
    });
    expect(d.pending[0]?.reason).toBe(
      "needs 16 A100-80GB GPUs as a gang (≤8 per node); no provider+region+network group has 2 nodes of one instance type with 8 A100-80GB GPUs each (closest: aws/us-east-1/net-a p4de.24xlarge has 1)",
    );
  });

  it("rejects a job with a non-positive GPU count as never fitting", () => {
    const d = placeJobs({ jobs: [job("j", { gpus: 0 })], nodes: [node("n")] });
    expect(d.pending[0]).toEqual({ jobId: "j", neverFits: true, reason: "invalid job: gpus must be a positive integer, got 0" });
  });

  it("throws on duplicate ids in the snapshot", () => {
    expect(() => placeJobs({ jobs: [job("j"), job("j")], nodes: [] })).toThrow(AppError);
    expect(() => placeJobs({ jobs: [], nodes: [node("n"), node("n")] })).toThrow(/node id n appears twice/);
  });
});

describe("gangShapes", () => {
  it("lists divisors up to the per-node cap, largest first", () => {
    expect(gangShapes(12, 8)).toEqual([6, 4, 3, 2, 1]);
    expect(gangShapes(16, Number.POSITIVE_INFINITY)).toEqual([16, 8, 4, 2, 1]);
  });
});
