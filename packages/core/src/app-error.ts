/**
 * One error type for every expected failure in gpuorch. `code` is aligned with
 * gRPC status names so one table (in @gpuorch/rpc) maps it to gRPC and HTTP;
 * `reason` is a stable, machine-readable domain reason (snake_case) that
 * clients may switch on; `details.fields` names offending input fields.
 */
export type ErrorCode =
  | "INVALID_ARGUMENT"
  | "FAILED_PRECONDITION"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "UNAUTHENTICATED"
  | "PERMISSION_DENIED"
  | "RESOURCE_EXHAUSTED"
  | "ABORTED"
  | "UNAVAILABLE"
  | "DEADLINE_EXCEEDED"
  | "INTERNAL";

export const ERROR_CODES: readonly ErrorCode[] = [
  "INVALID_ARGUMENT",
  "FAILED_PRECONDITION",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "UNAUTHENTICATED",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "ABORTED",
  "UNAVAILABLE",
  "DEADLINE_EXCEEDED",
  "INTERNAL",
];

/** One offending field: a dotted path (`resources.gpus`), where it is, and why. */
export interface FieldViolation {
  field: string;
  message: string;
  line?: number;
  column?: number;
}

export interface AppErrorOptions {
  reason?: string;
  fields?: FieldViolation[];
  cause?: unknown;
  /** Extra structured data safe to show to the caller. */
  meta?: Record<string, unknown>;
}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly reason: string;
  readonly fields: FieldViolation[];
  readonly meta: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, opts: AppErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "AppError";
    this.code = code;
    this.reason = opts.reason ?? defaultReason(code);
    this.fields = opts.fields ?? [];
    this.meta = opts.meta ?? {};
  }

  static invalid(message: string, fields: FieldViolation[] = [], reason = "invalid_argument"): AppError {
    return new AppError("INVALID_ARGUMENT", message, { reason, fields });
  }

  static notFound(what: string, id: string): AppError {
    return new AppError("NOT_FOUND", `${what} ${id} not found`, { reason: `${what.toLowerCase()}_not_found` });
  }

  static precondition(message: string, reason: string, meta?: Record<string, unknown>): AppError {
    return new AppError("FAILED_PRECONDITION", message, { reason, ...(meta ? { meta } : {}) });
  }

  static unauthenticated(message = "missing or invalid bearer token"): AppError {
    return new AppError("UNAUTHENTICATED", message, { reason: "unauthenticated" });
  }

  static internal(message: string, cause?: unknown): AppError {
    return new AppError("INTERNAL", message, { reason: "internal", cause });
  }
}

export function isAppError(e: unknown): e is AppError {
  return e instanceof AppError;
}

function defaultReason(code: ErrorCode): string {
  return code.toLowerCase();
}

/** Whether a caller may retry the same request unchanged and hope for success. */
export function isRetryable(code: ErrorCode): boolean {
  switch (code) {
    case "UNAVAILABLE":
    case "ABORTED":
    case "DEADLINE_EXCEEDED":
      return true;
    case "RESOURCE_EXHAUSTED":
    case "INVALID_ARGUMENT":
    case "FAILED_PRECONDITION":
    case "NOT_FOUND":
    case "ALREADY_EXISTS":
    case "UNAUTHENTICATED":
    case "PERMISSION_DENIED":
    case "INTERNAL":
      return false;
  }
}

/** Wrap anything thrown into an AppError, keeping AppErrors as they are. */
export function toAppError(e: unknown): AppError {
  if (isAppError(e)) return e;
  const message = e instanceof Error ? e.message : String(e);
  return AppError.internal(message, e);
}
