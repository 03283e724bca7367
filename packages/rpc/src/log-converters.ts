import { AppError } from "@gpuorch/core";
import * as pb from "@gpuorch/proto";

/** A stored job output line as the controller serves it (structurally the db's StoredJobLogLine). */
export interface LogLineView {
  seq: number;
  attempt: number;
  rank: number;
  nodeRank: number;
  /** "stdout" | "stderr" | "system" (markers written by gpuorch itself). */
  stream: string;
  text: string;
  at: Date;
}

/** The JSON shape of a line (HTTP `GET /v1/jobs/{id}/logs`, `gpuorch logs --json`). */
export interface LogLineJson {
  seq: number;
  attempt: number;
  rank: number;
  node_rank: number;
  stream: string;
  text: string;
  at: string;
}

export function jobLogLineToProto(l: LogLineView): pb.JobLogLine {
  return { seq: String(l.seq), attempt: l.attempt, rank: l.rank, nodeRank: l.nodeRank, stream: l.stream, text: l.text, at: l.at };
}

export function jobLogLineFromProto(l: pb.JobLogLine): LogLineView {
  const seq = Number(l.seq);
  if (!Number.isSafeInteger(seq) || seq < 0) throw AppError.invalid(`log line seq '${l.seq}' is not a non-negative integer`, [{ field: "seq", message: "expected an integer ≥ 0" }]);
  return { seq, attempt: l.attempt, rank: l.rank, nodeRank: l.nodeRank, stream: l.stream, text: l.text, at: l.at ?? new Date(0) };
}

export function jobLogLineToJson(l: LogLineView): LogLineJson {
  return { seq: l.seq, attempt: l.attempt, rank: l.rank, node_rank: l.nodeRank, stream: l.stream, text: l.text, at: l.at.toISOString() };
}
