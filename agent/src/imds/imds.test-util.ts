import { AppError } from "@gpuorch/core";
import { afterEach } from "vitest";
import { type ImdsScript, type ScriptedImdsServer, startScriptedImds } from "@gpuorch/testing";

/** `serve(script)` starts a scripted metadata server that is closed after each test of the calling file. */
export function scriptedImdsPerTest(): (script: ImdsScript) => Promise<ScriptedImdsServer> {
  const servers: ScriptedImdsServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });
  return async (script) => {
    const s = await startScriptedImds(script);
    servers.push(s);
    return s;
  };
}

/** The AppError `p` rejects with (other errors are rethrown); fails when it resolves. */
export async function appErrorOf(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof AppError) return e;
    throw e;
  }
  throw new Error("expected a rejection");
}
