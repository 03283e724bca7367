import { spawn } from "node:child_process";
import { AppError } from "@gpuorch/core";

/**
 * Runs nvidia-smi as a child process and returns its stdout, or throws an
 * AppError whose `reason` says what went wrong. nvidia-smi is known to hang
 * (a wedged GPU, an NVML call stuck in the kernel) and to fail in ways only
 * its text reveals, so every run has a deadline and an output bound, and the
 * whole process group is killed, not just the direct child: a wrapper script
 * (containers often put one in front) must not leave nvidia-smi behind.
 *
 * Reasons: `nvidia_smi_not_found` (NOT_FOUND: no binary — the caller treats
 * that as "no NVIDIA GPUs"), `nvidia_smi_timeout` (DEADLINE_EXCEEDED),
 * `nvidia_smi_output_too_large`, `no_devices_found`,
 * `driver_library_version_mismatch`, `nvidia_smi_failed` (UNAVAILABLE),
 * `aborted` (ABORTED).
 */

export interface RunNvidiaSmiOptions {
  /** Executable to run; a bare name is looked up on PATH. Default `nvidia-smi`. */
  path?: string;
  /** Default 10 s. */
  timeoutMs?: number;
  /** Bound on stdout + stderr together. Default 16 MiB (an 8-GPU `-q -x` is under 1 MiB). */
  maxOutputBytes?: number;
  /** Between SIGTERM and SIGKILL to the process group after a timeout. Default 1 s. */
  killGraceMs?: number;
  signal?: AbortSignal;
}

export const DEFAULT_NVIDIA_SMI_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_OUTPUT_BYTES = 16 * 1024 * 1024;
const DEFAULT_KILL_GRACE_MS = 1_000;

// nvidia-smi's exit status is the NVML return code; 18 is NVML_ERROR_LIB_RM_VERSION_MISMATCH
// (the kernel module and the user-space library come from different driver versions).
const EXIT_DRIVER_LIBRARY_MISMATCH = 18;

export async function runNvidiaSmi(args: readonly string[], opts: RunNvidiaSmiOptions = {}): Promise<string> {
  const path = opts.path ?? "nvidia-smi";
  const timeoutMs = opts.timeoutMs ?? DEFAULT_NVIDIA_SMI_TIMEOUT_MS;
  const maxOutputBytes = opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  const killGraceMs = opts.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
  const command = [path, ...args].join(" ");
  if (opts.signal?.aborted) throw new AppError("ABORTED", `${command}: aborted before start`, { reason: "aborted" });

  return new Promise<string>((resolve, reject) => {
    const child = spawn(path, args, {
      stdio: ["ignore", "pipe", "pipe"],
      // Its own process group, so a timeout can kill everything it started.
      detached: true,
      // Parse the English messages regardless of the node's locale.
      env: { ...process.env, LC_ALL: "C" },
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let outputBytes = 0;
    let settled = false;
    let failure: AppError | undefined;
    let graceTimer: NodeJS.Timeout | undefined;

    const settle = (error: AppError | undefined, value?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      clearTimeout(graceTimer);
      opts.signal?.removeEventListener("abort", onAbort);
      if (error) reject(error);
      else resolve(value ?? "");
    };
    const killGroup = (sig: NodeJS.Signals): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, sig);
      } catch {
        // ESRCH: the group is already gone, which is what we wanted.
      }
    };
    // Stop the child and report `error` once it has exited, or after the grace
    // period even if it has not: a process stuck in the kernel may never exit,
    // and the agent must not wait on it.
    const stop = (error: AppError, first: NodeJS.Signals): void => {
      if (failure) return;
      failure = error;
      killGroup(first);
      graceTimer = setTimeout(() => {
        killGroup("SIGKILL");
        settle(error);
      }, killGraceMs);
    };

    const deadline = setTimeout(() => {
      stop(
        new AppError("DEADLINE_EXCEEDED", `${command} did not finish within ${timeoutMs} ms and was killed`, {
          reason: "nvidia_smi_timeout",
          meta: { timeoutMs },
        }),
        "SIGTERM",
      );
    }, timeoutMs);
    const onAbort = (): void => {
      stop(new AppError("ABORTED", `${command}: aborted`, { reason: "aborted" }), "SIGTERM");
    };
    opts.signal?.addEventListener("abort", onAbort, { once: true });

    const collect = (into: Buffer[]) => (chunk: Buffer) => {
      outputBytes += chunk.length;
      if (outputBytes > maxOutputBytes) {
        stop(
          new AppError("UNAVAILABLE", `${command} printed more than ${maxOutputBytes} bytes and was killed`, {
            reason: "nvidia_smi_output_too_large",
            meta: { maxOutputBytes },
          }),
          "SIGKILL",
        );
        return;
      }
      into.push(chunk);
    };
    child.stdout.on("data", collect(stdout));
    child.stderr.on("data", collect(stderr));

    child.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") {
        settle(new AppError("NOT_FOUND", `${path} not found`, { reason: "nvidia_smi_not_found", cause: err }));
      } else {
        settle(new AppError("UNAVAILABLE", `${command} could not be started: ${err.message}`, { reason: "nvidia_smi_failed", cause: err }));
      }
    });
    child.on("close", (code, sig) => {
      if (failure) {
        settle(failure);
        return;
      }
      const out = Buffer.concat(stdout).toString("utf8");
      const err = Buffer.concat(stderr).toString("utf8");
      const problem = classify(command, code, sig, out, err);
      if (problem) settle(problem);
      else settle(undefined, out);
    });
  });
}

function classify(
  command: string,
  code: number | null,
  sig: NodeJS.Signals | null,
  stdout: string,
  stderr: string,
): AppError | undefined {
  const text = `${stdout}\n${stderr}`;
  const meta = { exitCode: code, signal: sig, output: firstLines(text) };
  // Checked before the exit status: we have no capture showing which status
  // accompanies this message, and it must never reach the XML parser as "XML".
  if (/^No devices were found\s*$/m.test(text)) {
    return new AppError("UNAVAILABLE", `${command}: No devices were found (the driver is loaded but sees no usable GPU)`, {
      reason: "no_devices_found",
      meta,
    });
  }
  if (code === EXIT_DRIVER_LIBRARY_MISMATCH || /Driver\/library version mismatch/i.test(text)) {
    return new AppError(
      "UNAVAILABLE",
      `${command}: NVIDIA driver/library version mismatch (the kernel module and the user-space driver differ; reboot or reload the module)`,
      { reason: "driver_library_version_mismatch", meta },
    );
  }
  if (code !== 0) {
    const how = code === null ? `killed by ${sig ?? "a signal"}` : `exit code ${code}`;
    return new AppError("UNAVAILABLE", `${command} failed (${how}): ${firstLines(text) || "no output"}`, {
      reason: "nvidia_smi_failed",
      meta,
    });
  }
  return undefined;
}

function firstLines(text: string): string {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "")
    .slice(0, 3)
    .join(" | ")
    .slice(0, 500);
}
