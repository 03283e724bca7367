import { AppError, ERROR_CODES, type ErrorCode, type FieldViolation, isAppError } from "@gpuorch/core";
import { Metadata, type ServiceError, status } from "@grpc/grpc-js";

/** Trailing metadata keys carrying the structured error next to the gRPC status. */
export const REASON_METADATA_KEY = "gpuorch-reason";
export const ERROR_JSON_METADATA_KEY = "gpuorch-error-json";

/** What callers see instead of an unexpected error's message. */
export const INTERNAL_ERROR_MESSAGE = "internal error; the controller logged the details";

export interface ErrorMapping {
  grpc: status;
  http: number;
}

/** THE table: every error code's gRPC status and HTTP status. */
export function errorMapping(code: ErrorCode): ErrorMapping {
  switch (code) {
    case "INVALID_ARGUMENT":
      return { grpc: status.INVALID_ARGUMENT, http: 400 };
    case "FAILED_PRECONDITION":
      return { grpc: status.FAILED_PRECONDITION, http: 409 };
    case "NOT_FOUND":
      return { grpc: status.NOT_FOUND, http: 404 };
    case "ALREADY_EXISTS":
      return { grpc: status.ALREADY_EXISTS, http: 409 };
    case "UNAUTHENTICATED":
      return { grpc: status.UNAUTHENTICATED, http: 401 };
    case "PERMISSION_DENIED":
      return { grpc: status.PERMISSION_DENIED, http: 403 };
    case "RESOURCE_EXHAUSTED":
      return { grpc: status.RESOURCE_EXHAUSTED, http: 422 };
    case "ABORTED":
      return { grpc: status.ABORTED, http: 409 };
    case "UNAVAILABLE":
      return { grpc: status.UNAVAILABLE, http: 503 };
    case "DEADLINE_EXCEEDED":
      return { grpc: status.DEADLINE_EXCEEDED, http: 504 };
    case "INTERNAL":
      return { grpc: status.INTERNAL, http: 500 };
  }
}

export function grpcStatusFor(code: ErrorCode): status {
  return errorMapping(code).grpc;
}

export function httpStatusFor(code: ErrorCode): number {
  return errorMapping(code).http;
}

/**
 * The error code for a gRPC status that arrived without gpuorch metadata
 * (raised by grpc-js itself, a proxy, or a peer of another version).
 */
export function errorCodeFromGrpcStatus(s: status): ErrorCode {
  switch (s) {
    case status.INVALID_ARGUMENT:
    case status.OUT_OF_RANGE:
      return "INVALID_ARGUMENT";
    case status.FAILED_PRECONDITION:
    case status.UNIMPLEMENTED: // version skew: the peer lacks the method
      return "FAILED_PRECONDITION";
    case status.NOT_FOUND:
      return "NOT_FOUND";
    case status.ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case status.UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case status.PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case status.RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case status.ABORTED:
    case status.CANCELLED: // e.g. the server force-closed the call while shutting down
      return "ABORTED";
    case status.UNAVAILABLE:
      return "UNAVAILABLE";
    case status.DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case status.OK:
    case status.UNKNOWN:
    case status.INTERNAL:
    case status.DATA_LOSS:
      return "INTERNAL";
  }
}

/** The wire form of an error: what both gRPC metadata and HTTP bodies carry. */
export interface ErrorJson {
  code: ErrorCode;
  reason: string;
  message: string;
  fields: FieldViolation[];
  meta: Record<string, unknown>;
}

const MAX_MESSAGE_CHARS = 4096;
const MAX_JSON_CHARS = 16 * 1024;

/**
 * What may leave the process for `e`: AppErrors as they are, except that
 * INTERNAL ones (and anything that is not an AppError) lose their message,
 * fields and meta, which may hold internals.
 */
export function publicError(e: unknown): ErrorJson {
  if (isAppError(e) && e.code !== "INTERNAL") {
    return { code: e.code, reason: e.reason, message: e.message, fields: e.fields, meta: e.meta };
  }
  const reason = isAppError(e) ? e.reason : "internal";
  return { code: "INTERNAL", reason, message: INTERNAL_ERROR_MESSAGE, fields: [], meta: {} };
}

/**
 * A grpc-js status object for `e`, with the structured error in trailing
 * metadata (`gpuorch-reason`, `gpuorch-error-json`). Never leaks the message
 * of an unexpected error.
 */
export function toServiceError(e: unknown): Partial<ServiceError> & { code: status; details: string; metadata: Metadata } {
  const pub = publicError(e);
  const details = truncate(pub.message, MAX_MESSAGE_CHARS);
  const metadata = new Metadata();
  metadata.set(REASON_METADATA_KEY, asciiSafe(pub.reason));
  metadata.set(ERROR_JSON_METADATA_KEY, encodeErrorJson({ ...pub, message: details }));
  return { name: "ServiceError", message: details, code: grpcStatusFor(pub.code), details, metadata };
}

/** JSON in printable ASCII (metadata values must be), shrunk to fit a header. */
function encodeErrorJson(err: ErrorJson): string {
  let fields = err.fields;
  let meta = err.meta;
  for (;;) {
    const body: ErrorJson = { ...err, fields, meta };
    if (fields.length < err.fields.length) body.meta = { ...meta, fields_truncated: err.fields.length - fields.length };
    const json = asciiSafe(safeStringify(body));
    if (json.length <= MAX_JSON_CHARS) return json;
    if (fields.length > 0) fields = fields.slice(0, Math.floor(fields.length / 2));
    else if (Object.keys(meta).length > 0) meta = {};
    else return asciiSafe(safeStringify({ ...body, message: truncate(err.message, 1024) }));
  }
}

function safeStringify(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? x.toString() : x));
}

/** Escapes everything outside printable ASCII as \uXXXX (still valid JSON inside strings). */
function asciiSafe(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

function truncate(s: string, max: number): string {
  return s.length <= max ? s : s.slice(0, max - 1) + "…";
}

export interface FromServiceErrorOptions {
  /** The address the client dialled, named in "cannot reach" messages. */
  address?: string;
}

/** Rebuilds the AppError a server sent, or classifies a transport-level failure. */
export function fromServiceError(err: unknown, opts: FromServiceErrorOptions = {}): AppError {
  if (isAppError(err)) return err;
  if (!isServiceErrorLike(err)) {
    return AppError.internal(err instanceof Error ? err.message : String(err), err);
  }
  const decoded = decodeErrorJson(err.metadata);
  if (decoded) {
    return new AppError(decoded.code, decoded.message, {
      reason: decoded.reason,
      fields: decoded.fields,
      meta: decoded.meta,
      cause: err,
    });
  }
  const code = errorCodeFromGrpcStatus(err.code);
  const details = err.details || err.message;
  if (code === "UNAVAILABLE" && opts.address) {
    return new AppError("UNAVAILABLE", `cannot reach the controller at ${opts.address}: ${details}`, {
      reason: "controller_unreachable",
      cause: err,
    });
  }
  if (code === "DEADLINE_EXCEEDED" && opts.address) {
    return new AppError("DEADLINE_EXCEEDED", `the controller at ${opts.address} did not answer in time: ${details}`, {
      reason: "deadline_exceeded",
      cause: err,
    });
  }
  const name = status[err.code] as string | undefined;
  return new AppError(code, details, { reason: (name ?? "unknown").toLowerCase(), cause: err });
}

interface ServiceErrorLike {
  code: status;
  details: string;
  message: string;
  metadata?: Metadata;
}

function isServiceErrorLike(e: unknown): e is ServiceErrorLike {
  return (
    typeof e === "object" &&
    e !== null &&
    typeof (e as { code?: unknown }).code === "number" &&
    typeof (e as { details?: unknown }).details === "string"
  );
}

function decodeErrorJson(md: Metadata | undefined): ErrorJson | null {
  const raw = md?.get(ERROR_JSON_METADATA_KEY)[0];
  if (typeof raw !== "string") return null;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return null;
  }
  if (typeof v !== "object" || v === null) return null;
  const o = v as Record<string, unknown>;
  const code = o["code"];
  if (typeof code !== "string" || !(ERROR_CODES as readonly string[]).includes(code)) return null;
  const fields = Array.isArray(o["fields"]) ? (o["fields"] as unknown[]).filter(isFieldViolation) : [];
  const meta = typeof o["meta"] === "object" && o["meta"] !== null ? (o["meta"] as Record<string, unknown>) : {};
  return {
    code: code as ErrorCode,
    reason: typeof o["reason"] === "string" ? o["reason"] : code.toLowerCase(),
    message: typeof o["message"] === "string" ? o["message"] : "",
    fields,
    meta,
  };
}

function isFieldViolation(v: unknown): v is FieldViolation {
  return (
    typeof v === "object" &&
    v !== null &&
    typeof (v as { field?: unknown }).field === "string" &&
    typeof (v as { message?: unknown }).message === "string"
  );
}

/** The JSON body of an HTTP error response (admin API). */
export interface HttpErrorBody {
  error: {
    /** The domain reason, e.g. "invalid_spec", "infeasible_job", "not_found". */
    code: string;
    message: string;
    details: { field?: string; fields: FieldViolation[]; [key: string]: unknown };
  };
}

export function httpErrorBody(e: unknown): HttpErrorBody {
  const pub = publicError(e);
  const first = pub.fields[0];
  return {
    error: {
      code: pub.reason,
      message: pub.message,
      details: { ...pub.meta, ...(first ? { field: first.field } : {}), fields: pub.fields },
    },
  };
}

/** Status and body together, for an HTTP handler's catch block. */
export function httpError(e: unknown): { status: number; body: HttpErrorBody } {
  return { status: httpStatusFor(publicError(e).code), body: httpErrorBody(e) };
}
