import { AppError } from "@gpuorch/core";

/**
 * Keyset position of the last row of a page: created_at in exact
 * microseconds since the epoch (a JS Date would drop the microseconds and
 * repeat or skip rows) and the id that breaks ties.
 */
export interface ListPosition {
  createdAtMicros: string;
  id: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const VERSION = "j1";

export function isUuid(s: string): boolean {
  return UUID.test(s);
}

export function encodePageToken(p: ListPosition): string {
  return Buffer.from(`${VERSION}|${p.createdAtMicros}|${p.id}`, "utf8").toString("base64url");
}

/** Parses an opaque page token; INVALID_ARGUMENT naming `page_token` when it is not one of ours. */
export function decodePageToken(token: string): ListPosition {
  const bad = () =>
    AppError.invalid("invalid page_token", [{ field: "page_token", message: "not a page token returned by a previous list call" }], "invalid_page_token");
  if (!/^[A-Za-z0-9_-]+$/.test(token)) throw bad();
  const parts = Buffer.from(token, "base64url").toString("utf8").split("|");
  const [version, micros, id] = parts;
  if (parts.length !== 3 || version !== VERSION || micros === undefined || id === undefined) throw bad();
  if (!/^-?\d{1,19}$/.test(micros) || !isUuid(id)) throw bad();
  return { createdAtMicros: micros, id: id.toLowerCase() };
}
