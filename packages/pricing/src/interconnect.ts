import type { CloudProvider, Interconnect } from "@gpuorch/core";

/**
 * Instance types with a high-tier interconnect between nodes: the only ones
 * the optimizer may use for `requires_multi_node: true`. Each entry names the
 * provider documentation that says so. Deliberately left out: EFA-capable
 * instance types that AWS does not position for tightly coupled training
 * (g4dn/g5/g6/g6e large sizes, p5.4xlarge: PCIe GPUs or a single GPU), and
 * GCP A2 (100 Gbps networking without GPUDirect). Add a type only with a
 * citation.
 */
export interface InterconnectEntry {
  provider: CloudProvider;
  instanceType: string;
  interconnect: Interconnect;
  source: string;
}

const AWS_EFA = "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/efa.html#efa-instance-types";
const AWS_AC_NETWORK = "https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html#ac_network";
const GCP_TCPX = "https://cloud.google.com/compute/docs/gpus/gpudirect";
const GCP_TCPXO = "https://cloud.google.com/cluster-toolkit/docs/machine-learning/a3-mega-enable-gpudirect-tcpxo";
const GCP_RDMA = "https://cloud.google.com/compute/docs/accelerator-optimized-machines#a3-ultra-vms";
const GCP_A4 = "https://cloud.google.com/compute/docs/accelerator-optimized-machines#a4-vms";
const AZURE_IB = "https://learn.microsoft.com/azure/virtual-machines/setup-infiniband";
const AZURE_ND_A100 = "https://learn.microsoft.com/azure/virtual-machines/sizes/gpu-accelerated/ndasra100v4-series";
const AZURE_ND_A100_80 = "https://learn.microsoft.com/azure/virtual-machines/sizes/gpu-accelerated/ndma100v4-series";
const AZURE_ND_H100 = "https://learn.microsoft.com/azure/virtual-machines/sizes/gpu-accelerated/ndh100v5-series";
const AZURE_ND_H200 = "https://learn.microsoft.com/azure/virtual-machines/sizes/gpu-accelerated/nd-h200-v5-series";
const AZURE_ND_MI300X = "https://learn.microsoft.com/azure/virtual-machines/sizes/gpu-accelerated/ndmi300xv5-series";
const AZURE_ND_V2 = "https://learn.microsoft.com/azure/virtual-machines/sizes/gpu-accelerated/ndv2-series";
const AZURE_NC_V3 = "https://learn.microsoft.com/azure/virtual-machines/sizes/gpu-accelerated/ncv3-series";

const aws = (instanceType: string, source = AWS_EFA): InterconnectEntry => ({ provider: "aws", instanceType, interconnect: "efa", source });

export const INTERCONNECT_TABLE: readonly InterconnectEntry[] = [
  // AWS Elastic Fabric Adapter: P-series training instances (NVLink/NVSwitch inside, 100-6400 Gbps EFA between) and Trainium.
  aws("p3dn.24xlarge"),
  aws("p4d.24xlarge", AWS_AC_NETWORK),
  aws("p4de.24xlarge", AWS_AC_NETWORK),
  aws("p5.48xlarge", AWS_AC_NETWORK),
  aws("p5e.48xlarge", AWS_AC_NETWORK),
  aws("p5en.48xlarge", AWS_AC_NETWORK),
  aws("p6-b200.48xlarge", AWS_AC_NETWORK),
  aws("p6-b300.48xlarge", AWS_AC_NETWORK),
  aws("trn1.32xlarge", AWS_AC_NETWORK),
  aws("trn1n.32xlarge", AWS_AC_NETWORK),
  aws("trn2.48xlarge", AWS_AC_NETWORK),
  // GCP: GPUDirect-TCPX on A3 High (8-GPU shape only) and A3 Edge, TCPXO on A3 Mega, GPUDirect RDMA (RoCE) on A3 Ultra and A4.
  { provider: "gcp", instanceType: "a3-highgpu-8g", interconnect: "gpudirect-tcpx", source: GCP_TCPX },
  { provider: "gcp", instanceType: "a3-edgegpu-8g", interconnect: "gpudirect-tcpx", source: GCP_TCPX },
  { provider: "gcp", instanceType: "a3-megagpu-8g", interconnect: "gpudirect-tcpxo", source: GCP_TCPXO },
  { provider: "gcp", instanceType: "a3-ultragpu-8g", interconnect: "gpudirect-rdma", source: GCP_RDMA },
  { provider: "gcp", instanceType: "a4-highgpu-8g", interconnect: "gpudirect-rdma", source: GCP_A4 },
  // Azure: the RDMA-capable ("r") ND/NC sizes have InfiniBand (EDR/HDR/NDR) between VMs.
  { provider: "azure", instanceType: "Standard_ND96asr_v4", interconnect: "infiniband", source: AZURE_ND_A100 },
  { provider: "azure", instanceType: "Standard_ND96amsr_A100_v4", interconnect: "infiniband", source: AZURE_ND_A100_80 },
  { provider: "azure", instanceType: "Standard_ND96isr_H100_v5", interconnect: "infiniband", source: AZURE_ND_H100 },
  { provider: "azure", instanceType: "Standard_ND96isr_H200_v5", interconnect: "infiniband", source: AZURE_ND_H200 },
  { provider: "azure", instanceType: "Standard_ND96isr_MI300X_v5", interconnect: "infiniband", source: AZURE_ND_MI300X },
  { provider: "azure", instanceType: "Standard_ND40rs_v2", interconnect: "infiniband", source: AZURE_ND_V2 },
  { provider: "azure", instanceType: "Standard_NC24rs_v3", interconnect: "infiniband", source: AZURE_NC_V3 },
];

/** General page on Azure InfiniBand-enabled sizes, cited by the README next to the table. */
export const AZURE_INFINIBAND_OVERVIEW = AZURE_IB;

const BY_KEY: ReadonlyMap<string, InterconnectEntry> = new Map(INTERCONNECT_TABLE.map((e) => [`${e.provider}/${e.instanceType}`, e]));

export function interconnectFor(provider: CloudProvider, instanceType: string): Interconnect | null {
  return BY_KEY.get(`${provider}/${instanceType}`)?.interconnect ?? null;
}
