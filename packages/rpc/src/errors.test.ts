import { AppError, ERROR_CODES } from "@gpuorch/core";
import { Metadata, status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import {
  ERROR_JSON_METADATA_KEY,
  errorCodeFromGrpcStatus,
  fromServiceError,
  grpcStatusFor,
  httpError,
  httpErrorBody,
  httpStatusFor,
  INTERNAL_ERROR_MESSAGE,
  REASON_METADATA_KEY,
  toServiceError,
} from "./errors.js";

describe("error table", () => {
  it("maps every code to the agreed HTTP status", () => {
    const http = Object.fromEntries(ERROR_CODES.map((c) => [c, httpStatusFor(c)]));
    expect(http).toEqual({
      INVALID_ARGUMENT: 400,
      FAILED_PRECONDITION: 409,
      NOT_FOUND: 404,
      ALREADY_EXISTS: 409,
      UNAUTHENTICATED: 401,
      PERMISSION_DENIED: 403,
      RESOURCE_EXHAUSTED: 422,
      ABORTED: 409,
      UNAVAILABLE: 503,
      DEADLINE_EXCEEDED: 504,
      INTERNAL: 500,
    });
  });

  it("maps every code to the gRPC status of the same name, and back", () => {
    for (const code of ERROR_CODES) {
      const s = grpcStatusFor(code);
      expect(status[s]).toBe(code);
      expect(errorCodeFromGrpcStatus(s)).toBe(code);
    }
  });
});

describe("toServiceError / fromServiceError", () => {
  it("round-trips an AppError with reason, fields and meta through metadata", () => {
    const err = new AppError("RESOURCE_EXHAUSTED", "no offer fits 9 H100s in eu-west — ünïcode", {
      reason: "infeasible_job",
      fields: [{ field: "resources.gpus", message: "too many", line: 4, column: 3 }],
      meta: { cheapest: "12.5", count: 3n },
    });
    const se = toServiceError(err);
    expect(se.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(se.details).toBe(err.message);
    expect(se.metadata.get(REASON_METADATA_KEY)).toEqual(["infeasible_job"]);
    const json = se.metadata.get(ERROR_JSON_METADATA_KEY)[0] as string;
    expect(json).toMatch(/^[\x20-\x7e]*$/);

    const back = fromServiceError(se);
    expect(back.code).toBe("RESOURCE_EXHAUSTED");
    expect(back.reason).toBe("infeasible_job");
    expect(back.message).toBe(err.message);
    expect(back.fields).toEqual(err.fields);
    expect(back.meta).toEqual({ cheapest: "12.5", count: "3" });
  });

  it("hides the message of unexpected errors and of INTERNAL AppErrors", () => {
    for (const e of [new Error("password=hunter2"), "a string", AppError.internal("pg: relation jobs missing")]) {
      const se = toServiceError(e);
      expect(se.code).toBe(status.INTERNAL);
      expect(se.details).toBe(INTERNAL_ERROR_MESSAGE);
      expect(JSON.stringify(se.metadata.getMap())).not.toMatch(/hunter2|relation|a string/);
    }
  });

  it("keeps huge field lists within a header-sized budget", () => {
    const fields = Array.from({ length: 5000 }, (_, i) => ({ field: `f${i}`, message: "x".repeat(50) }));
    const se = toServiceError(AppError.invalid("bad", fields, "invalid_spec"));
    const json = se.metadata.get(ERROR_JSON_METADATA_KEY)[0] as string;
    expect(json.length).toBeLessThanOrEqual(16 * 1024);
    const back = fromServiceError(se);
    expect(back.fields.length).toBeGreaterThan(0);
    expect(back.meta["fields_truncated"]).toBe(5000 - back.fields.length);
  });

  it("classifies a bare UNAVAILABLE as 'cannot reach the controller'", () => {
    const se = { code: status.UNAVAILABLE, details: "No connection established", message: "14 UNAVAILABLE", metadata: new Metadata() };
    const e = fromServiceError(se, { address: "ctl:7070" });
    expect(e.code).toBe("UNAVAILABLE");
    expect(e.reason).toBe("controller_unreachable");
    expect(e.message).toBe("cannot reach the controller at ctl:7070: No connection established");
  });

  it("classifies other bare statuses by the reverse table", () => {
    const e = fromServiceError({ code: status.UNIMPLEMENTED, details: "no such method", message: "", metadata: new Metadata() });
    expect(e.code).toBe("FAILED_PRECONDITION");
    expect(e.reason).toBe("unimplemented");
  });
});

describe("HTTP error bodies", () => {
  it("uses the reason as code and names the first field", () => {
    const e = AppError.invalid(
      "spec is invalid",
      [
        { field: "resources.gpus", message: "must be >= 1" },
        { field: "name", message: "required" },
      ],
      "invalid_spec",
    );
    expect(httpError(e)).toEqual({
      status: 400,
      body: {
        error: {
          code: "invalid_spec",
          message: "spec is invalid",
          details: {
            field: "resources.gpus",
            fields: [
              { field: "resources.gpus", message: "must be >= 1" },
              { field: "name", message: "required" },
            ],
          },
        },
      },
    });
  });

  it("spreads meta into details and hides internals", () => {
    const body = httpErrorBody(new AppError("RESOURCE_EXHAUSTED", "no fit", { reason: "infeasible_job", meta: { gpus: 9 } }));
    expect(body.error).toEqual({ code: "infeasible_job", message: "no fit", details: { gpus: 9, fields: [] } });
    expect(httpErrorBody(new Error("secret")).error).toEqual({
      code: "internal",
      message: INTERNAL_ERROR_MESSAGE,
      details: { fields: [] },
    });
    expect(httpError(AppError.notFound("Job", "j1")).status).toBe(404);
  });
});
