#!/usr/bin/env node
import { runAgentCli } from "./agent-cli.js";

// Thin entry point: everything testable lives in agent-cli.ts. The exit code is
// set rather than forced so pending stdout writes flush before the process ends.
process.exitCode = await runAgentCli(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
});
