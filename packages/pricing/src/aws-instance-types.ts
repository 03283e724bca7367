/**
 * What the AWS Price List does not say about accelerated instance types: the
 * accelerator model and its memory per device (the product attributes carry
 * only a count, `gpu`, and a total, `gpuMemory`), plus the accelerator count
 * of shapes where the `gpu` attribute is absent or whole (Inferentia/Trainium
 * chips, fractional L4 shapes). Facts from the AWS accelerated computing
 * specifications: https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html
 */
export interface AwsFamily {
  gpuType: string;
  /** Memory of one accelerator, GB. */
  gpuMemoryGb: number;
}

export const AWS_FAMILIES: Readonly<Record<string, AwsFamily>> = {
  p2: { gpuType: "K80", gpuMemoryGb: 12 },
  p3: { gpuType: "V100", gpuMemoryGb: 16 },
  p3dn: { gpuType: "V100-32GB", gpuMemoryGb: 32 },
  p4d: { gpuType: "A100", gpuMemoryGb: 40 },
  p4de: { gpuType: "A100-80GB", gpuMemoryGb: 80 },
  p5: { gpuType: "H100", gpuMemoryGb: 80 },
  p5e: { gpuType: "H200", gpuMemoryGb: 141 },
  p5en: { gpuType: "H200", gpuMemoryGb: 141 },
  "p6-b200": { gpuType: "B200", gpuMemoryGb: 180 },
  "p6-b300": { gpuType: "B300", gpuMemoryGb: 262.5 },
  g2: { gpuType: "K520", gpuMemoryGb: 4 },
  g3: { gpuType: "M60", gpuMemoryGb: 8 },
  g3s: { gpuType: "M60", gpuMemoryGb: 8 },
  g4dn: { gpuType: "T4", gpuMemoryGb: 16 },
  g4ad: { gpuType: "V520", gpuMemoryGb: 8 },
  g5: { gpuType: "A10G", gpuMemoryGb: 24 },
  g5g: { gpuType: "T4G", gpuMemoryGb: 16 },
  g6: { gpuType: "L4", gpuMemoryGb: 24 },
  g6f: { gpuType: "L4", gpuMemoryGb: 24 },
  gr6: { gpuType: "L4", gpuMemoryGb: 24 },
  gr6f: { gpuType: "L4", gpuMemoryGb: 24 },
  g6e: { gpuType: "L40S", gpuMemoryGb: 48 },
  inf1: { gpuType: "Inferentia", gpuMemoryGb: 8 },
  inf2: { gpuType: "Inferentia2", gpuMemoryGb: 32 },
  trn1: { gpuType: "Trainium", gpuMemoryGb: 32 },
  trn1n: { gpuType: "Trainium", gpuMemoryGb: 32 },
  dl2q: { gpuType: "QualcommAI100", gpuMemoryGb: 16 },
};

/** Accelerator counts that the `gpu` attribute does not give (chips, GPU partitions). */
export const AWS_ACCELERATOR_COUNTS: Readonly<Record<string, number>> = {
  "g6f.large": 0.125,
  "g6f.xlarge": 0.125,
  "g6f.2xlarge": 0.25,
  "g6f.4xlarge": 0.5,
  "gr6f.4xlarge": 0.5,
  "inf1.xlarge": 1,
  "inf1.2xlarge": 1,
  "inf1.6xlarge": 4,
  "inf1.24xlarge": 16,
  "inf2.xlarge": 1,
  "inf2.8xlarge": 1,
  "inf2.24xlarge": 6,
  "inf2.48xlarge": 12,
  "trn1.2xlarge": 1,
  "trn1.32xlarge": 16,
  "trn1n.32xlarge": 16,
  "dl2q.24xlarge": 8,
};

/** The family of an instance type name: "p4d.24xlarge" → "p4d", "p6-b200.48xlarge" → "p6-b200". */
export function awsFamily(instanceType: string): string {
  const dot = instanceType.indexOf(".");
  return dot < 0 ? instanceType : instanceType.slice(0, dot);
}

/**
 * Region and zone of a Price List location: a Local or Wavelength Zone's
 * regionCode is its zone group ("us-west-2-lax-1", "us-east-1-wl1-atl-wlz-1"),
 * priced on its own and launched from its parent region.
 */
export function awsRegionAndZone(regionCode: string, locationType: string): { region: string; zone: string } | null {
  if (locationType === "AWS Region") return { region: regionCode, zone: "" };
  if (locationType === "AWS Local Zone" || locationType === "AWS Wavelength Zone") {
    const m = /^([a-z]{2}(?:-gov)?-[a-z]+-\d+)-/.exec(regionCode);
    return m ? { region: m[1]!, zone: regionCode } : null;
  }
  return null;
}
