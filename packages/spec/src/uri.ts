import { closestMatches } from "./did-you-mean.js";
import type { UriKind } from "./types.js";
import { quote, type Parsed } from "./units.js";

/** Longest URI or path a spec may name. */
export const MAX_URI_LENGTH = 4096;

const OBJECT_SCHEMES = ["file", "s3", "gs", "az", "minio"] as const;

const S3_BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const GS_BUCKET = /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/;
const AZ_ACCOUNT = /^[a-z0-9]{3,24}$/;
const AZ_CONTAINER = /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;
const ENDPOINT = /^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:\d{1,5})?$/;
const GIT_REF = /^[^\s#]+$/;
const SCP_GIT = /^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s#]+(#.*)?$/;

/**
 * Where a URI or path points, or why it is not acceptable. `allowGit` is
 * true only for the entrypoint (code); data and checkpoints live in object
 * stores or on a file system.
 */
export function classifyUri(input: string, allowGit: boolean): Parsed<UriKind> {
  const fail = (message: string): Parsed<UriKind> => ({ ok: false, message });
  const okKind = (value: UriKind): Parsed<UriKind> => ({ ok: true, value });
  if (input.length === 0) return fail("expected a URI or path, got an empty string");
  if (input.length > MAX_URI_LENGTH) return fail(`expected at most ${MAX_URI_LENGTH} characters, got ${input.length}`);
  if (hasControlChar(input)) return fail(`${quote(input)} contains a control character`);
  if (input.trim() !== input) return fail(`${quote(input)} has leading or trailing spaces`);
  const supported = allowGit
    ? "file://, s3://, gs://, az://, minio://, a git URL (git+https://…, https://….git, git@host:org/repo.git) or a local path"
    : "file://, s3://, gs://, az://, minio:// or a local path";

  if (SCP_GIT.test(input) && !input.includes("://")) {
    if (!allowGit) return fail(`git repositories are only accepted for entrypoint.uri; use ${supported}`);
    return gitRef(input) ?? okKind("git");
  }
  const sm = /^([A-Za-z][A-Za-z0-9+.-]*):(\/\/)?(.*)$/s.exec(input);
  if (!sm) return okKind("local");
  const scheme = (sm[1] ?? "").toLowerCase();
  const rest = sm[3] ?? "";
  if (sm[2] === undefined) {
    return fail(`${quote(input)} looks like a URI but lacks '//' after '${sm[1]}:'; use ${supported}`);
  }
  if (/\s/.test(input)) return fail(`${quote(input)} contains whitespace; URIs must be percent-encoded`);

  if (scheme === "git+https" || scheme === "git+ssh" || ((scheme === "https" || scheme === "ssh") && isGitPath(rest))) {
    if (!allowGit) return fail(`git repositories are only accepted for entrypoint.uri; use ${supported}`);
    const host = upTo(rest, "/", "#");
    if (host.length === 0) return fail(`${quote(input)} has no host`);
    return gitRef(input) ?? okKind("git");
  }
  if (scheme === "https" || scheme === "http") {
    return allowGit
      ? fail(`${quote(input)}: http(s) URLs are accepted only for git repositories (ending in .git, optionally #ref)`)
      : fail(`${quote(input)}: http(s) URLs are not supported for data; use ${supported}`);
  }
  // rest.split("/", 2) without the array: bucket (or account, endpoint) and the segment after it.
  const slash = rest.indexOf("/");
  const first = slash < 0 ? rest : rest.slice(0, slash);
  const second = slash < 0 ? "" : upTo(rest.slice(slash + 1), "/");
  switch (scheme) {
    case "file":
      if (rest.length === 0 || rest === "/") return fail(`${quote(input)} names no path`);
      return okKind("file");
    case "s3":
      if (!S3_BUCKET.test(first)) return fail(`${quote(input)}: '${first.slice(0, 70)}' is not a valid S3 bucket name`);
      return okKind("s3");
    case "gs":
      if (!GS_BUCKET.test(first)) return fail(`${quote(input)}: '${first.slice(0, 70)}' is not a valid GCS bucket name`);
      return okKind("gs");
    case "az":
      if (!AZ_ACCOUNT.test(first)) {
        return fail(`${quote(input)}: expected az://<storage account>/<container>/<blob>; '${first.slice(0, 30)}' is not a storage account name`);
      }
      if (!AZ_CONTAINER.test(second)) {
        return fail(`${quote(input)}: expected az://<storage account>/<container>/<blob>; '${second.slice(0, 70)}' is not a container name`);
      }
      return okKind("az");
    case "minio":
      if (!ENDPOINT.test(first)) return fail(`${quote(input)}: expected minio://<endpoint>/<bucket>/<key>; '${first.slice(0, 70)}' is not a host[:port]`);
      if (!S3_BUCKET.test(second)) {
        return fail(`${quote(input)}: expected minio://<endpoint>/<bucket>/<key>; '${second.slice(0, 70)}' is not a valid bucket name`);
      }
      return okKind("minio");
    default: {
      const known = allowGit ? [...OBJECT_SCHEMES, "git+https", "git+ssh"] : [...OBJECT_SCHEMES];
      const close = closestMatches(scheme, known, 1)[0];
      return fail(`unsupported URI scheme '${scheme.slice(0, 20)}://'${close ? ` (did you mean '${close}://'?)` : ""}; use ${supported}`);
    }
  }
}

function hasControlChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/** `s` before the first `stop` or `stop2` (all of it if neither occurs): split's first part without split's array, which cost more than the rest of classifyUri. */
function upTo(s: string, stop: string, stop2?: string): string {
  let end = s.indexOf(stop);
  if (stop2 !== undefined) {
    const end2 = s.indexOf(stop2);
    if (end2 >= 0 && (end < 0 || end2 < end)) end = end2;
  }
  return end < 0 ? s : s.slice(0, end);
}

function isGitPath(rest: string): boolean {
  const path = upTo(rest, "#");
  return /\.git\/?$/i.test(path);
}

/** An error if the `#ref` part of a git URL is present but malformed. */
function gitRef(input: string): Parsed<UriKind> | null {
  const i = input.indexOf("#");
  if (i < 0) return null;
  const ref = input.slice(i + 1);
  if (!GIT_REF.test(ref)) return { ok: false, message: `${quote(input)}: the git ref after '#' must be a non-empty branch, tag or commit` };
  return null;
}

/** True when the URI/path names a script the agent can run directly. */
export function isScript(uri: string): boolean {
  const path = upTo(uri, "?", "#");
  return /\.(py|sh)$/i.test(path);
}
