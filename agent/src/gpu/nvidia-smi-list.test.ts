import { describe, expect, it } from "vitest";
import { withListing } from "./inventory.js";
import { parseNvidiaSmiList } from "./nvidia-smi-list.js";
import { parseNvidiaSmiXml } from "./nvidia-smi-xml.js";
import { readTestdata } from "./testdata-files.js";

const H100_MIG_LISTING = {
  index: 0,
  name: "NVIDIA H100 80GB HBM3",
  uuid: "GPU-00000000-0000-0000-0000-000000000000",
  migDevices: [
    { index: 0, profile: "3g.40gb", uuid: "MIG-00000000-0000-0000-0000-000000000000", gpuInstanceId: null, computeInstanceId: null },
    { index: 1, profile: "2g.20gb", uuid: "MIG-00000001-0000-0000-0000-000000000001", gpuInstanceId: null, computeInstanceId: null },
    { index: 2, profile: "1g.10gb", uuid: "MIG-00000002-0000-0000-0000-000000000002", gpuInstanceId: null, computeInstanceId: null },
    { index: 3, profile: "1g.10gb", uuid: "MIG-00000003-0000-0000-0000-000000000003", gpuInstanceId: null, computeInstanceId: null },
  ],
};

/** The body of one `# <title>` section of an nvidia_gpu_exporter capture file. */
function captureSection(capture: string, title: string): string {
  const lines = capture.split("\n");
  const at = lines.indexOf(`# ${title}`);
  expect(at).toBeGreaterThan(0);
  // Title, command line, a row of #s; the body runs to the next row of #s.
  const start = lines.findIndex((l, i) => i > at && l.startsWith("#####")) + 1;
  const end = lines.findIndex((l, i) => i >= start && l.startsWith("#####"));
  return lines.slice(start, end).join("\n");
}

describe("parseNvidiaSmiList", () => {
  it("reads the H100 MIG listing (driver 590.48.01): 3g.40gb + 2g.20gb + 2 × 1g.10gb with their MIG UUIDs", () => {
    const listing = parseNvidiaSmiList(readTestdata("h100-80gb-hbm3-mig-3g.40gb-2g.20gb-2x1g.10gb-drv590.48.01.nvidia-smi-L.txt"));
    expect(listing).toEqual({ gpus: [H100_MIG_LISTING], unrecognized: [] });
  });

  it("reads the same listing cut from the whole capture file's `capabilities :: list (-L)` section", () => {
    const section = captureSection(readTestdata("capture-linux-h100-80gb-hbm3-mig-drv590.48.01.full.txt"), "capabilities :: list (-L)");
    expect(parseNvidiaSmiList(section)).toEqual({ gpus: [H100_MIG_LISTING], unrecognized: [] });
  });

  // No permissively licensed capture shows the profile names newer drivers
  // print for compute-instance and media-extension profiles or the pre-R470
  // UUID form, so these lines are written here in the shape of the real ones above.
  it("takes newer profile names (`1c.3g.71gb`, `1g.10gb+me`) whole", () => {
    const listing = parseNvidiaSmiList(
      [
        "GPU 0: NVIDIA H200 (UUID: GPU-11111111-2222-3333-4444-555555555555)",
        "  MIG 1c.3g.71gb     Device  0: (UUID: MIG-aaaaaaaa-0000-0000-0000-000000000000)",
        "  MIG 1g.10gb+me     Device  1: (UUID: MIG-bbbbbbbb-0000-0000-0000-000000000000)",
      ].join("\n"),
    );
    expect(listing.gpus[0]?.migDevices.map((m) => [m.index, m.profile, m.uuid])).toEqual([
      [0, "1c.3g.71gb", "MIG-aaaaaaaa-0000-0000-0000-000000000000"],
      [1, "1g.10gb+me", "MIG-bbbbbbbb-0000-0000-0000-000000000000"],
    ]);
  });

  it("takes GPU and compute instance ids from pre-R470 MIG UUIDs (`MIG-GPU-<uuid>/<gi>/<ci>`)", () => {
    const listing = parseNvidiaSmiList(
      "GPU 0: A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)\n" +
        "  MIG 1g.5gb Device 0: (UUID: MIG-GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77/7/0)\n",
    );
    expect(listing.gpus[0]?.migDevices[0]).toEqual({
      index: 0,
      profile: "1g.5gb",
      uuid: "MIG-GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77/7/0",
      gpuInstanceId: 7,
      computeInstanceId: 0,
    });
  });

  it("keeps lines of no known shape aside instead of guessing", () => {
    const listing = parseNvidiaSmiList("No devices were found\n");
    expect(listing).toEqual({ gpus: [], unrecognized: ["No devices were found"] });
  });
});

describe("withListing", () => {
  const xml = parseNvidiaSmiXml(readTestdata("a100-sxm4-80gb-mig-4x1g.20gb-1of4gpus-drv535.54.03.xml"));

  it("adds MIG profiles and UUIDs from -L to the XML's MIG devices, matching the GPU by UUID and devices by index", () => {
    // GPU line and profiles as the A100's real -L prints them (see testdata/README.md for why that
    // capture is not committed); the MIG UUIDs here are placeholders.
    const listing = parseNvidiaSmiList(
      [
        "GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-513536b6-7d19-9063-b049-1e69664bb298)",
        ...[0, 1, 2, 3].map((i) => `  MIG 1g.20gb     Device  ${i}: (UUID: MIG-0000000${i}-test-0000-0000-000000000000)`),
        "GPU 1: NVIDIA A100-SXM4-80GB (UUID: GPU-not-in-the-xml)",
      ].join("\n"),
    );
    const merged = withListing(xml, listing.gpus);
    expect(merged.attachedGpus).toBe(4);
    expect(merged.gpus).toHaveLength(1);
    expect(merged.gpus[0]?.migDevices.map((m) => [m.index, m.gpuInstanceId, m.computeInstanceId, m.profile, m.memoryTotalMib, m.uuid])).toEqual([
      [0, 3, 0, "1g.20gb", 19968, "MIG-00000000-test-0000-0000-000000000000"],
      [1, 4, 0, "1g.20gb", 19968, "MIG-00000001-test-0000-0000-000000000000"],
      [2, 5, 0, "1g.20gb", 19968, "MIG-00000002-test-0000-0000-000000000000"],
      [3, 6, 0, "1g.20gb", 19968, "MIG-00000003-test-0000-0000-000000000000"],
    ]);
  });

  it("takes the GPU index from -L, since a trimmed capture's position is not its index", () => {
    const listing = parseNvidiaSmiList("GPU 2: NVIDIA A100-SXM4-80GB (UUID: GPU-513536b6-7d19-9063-b049-1e69664bb298)\n");
    expect(withListing(xml, listing.gpus).gpus[0]?.index).toBe(2);
  });

  it("leaves a GPU the listing does not know as the XML described it", () => {
    const listing = parseNvidiaSmiList(readTestdata("h100-80gb-hbm3-mig-3g.40gb-2g.20gb-2x1g.10gb-drv590.48.01.nvidia-smi-L.txt"));
    expect(withListing(xml, listing.gpus)).toEqual(xml);
  });
});
