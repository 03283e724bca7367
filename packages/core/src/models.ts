import type { ArtifactType, ExecutionMode, Framework, JobStatus, JobType, Provider } from "./job-status.js";

/** Who is calling: resolved from a bearer token. Admins see every team. */
export interface Principal {
  tokenId: string;
  teamId: string | null;
  teamName: string | null;
  kind: TokenKind;
  admin: boolean;
}

export const TOKEN_KINDS = ["user", "agent"] as const;
export type TokenKind = (typeof TOKEN_KINDS)[number];

/** Where a job was placed (filled by the optimizer / scheduler in later issues). */
export interface JobTarget {
  provider: Provider;
  region: string;
  zone: string | null;
  instanceType: string;
  instanceCount: number;
  spot: boolean;
}

/** A job as stored: current state plus the verbatim spec. Money as decimal strings. */
export interface Job {
  id: string;
  teamId: string;
  teamName: string;
  name: string;
  project: string | null;
  type: JobType;
  framework: Framework;
  executionMode: ExecutionMode;
  status: JobStatus;
  statusReason: string | null;
  priority: number;
  attempt: number;
  maxAttempts: number;
  version: number;
  gpus: number;
  specYaml: string;
  budgetUsd: string | null;
  deadline: Date | null;
  estimatedCostUsd: string | null;
  runningCostUsd: string;
  target: JobTarget | null;
  createdAt: Date;
  updatedAt: Date;
  scheduledAt: Date | null;
  startedAt: Date | null;
  finishedAt: Date | null;
}

/** One append-only row of a job's history. `seq` is 1-based, gap-free per job. */
export interface JobEvent {
  jobId: string;
  seq: number;
  fromStatus: JobStatus | null;
  toStatus: JobStatus;
  attempt: number;
  reason: string;
  actor: string;
  createdAt: Date;
}

export interface JobArtifact {
  id: string;
  jobId: string;
  attempt: number;
  type: ArtifactType;
  uri: string;
  step: number | null;
  bytes: number | null;
  sha256: string | null;
  createdAt: Date;
}

/** A page of results plus an opaque cursor for the next page (null at the end). */
export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

/** Injected sources of time and randomness so core stays deterministic. */
export interface Clock {
  now(): Date;
}

export interface IdSource {
  /** A new unique id (UUIDv7 in production: time-ordered). */
  newId(): string;
}
