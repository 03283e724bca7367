import { AppError } from "@gpuorch/core";
import type { GpuInfo, GpuInventory } from "./inventory.js";
import { enabledValue, integerValue, numberValue, textValue } from "./nvidia-smi-values.js";

/**
 * Parser for `nvidia-smi --query-gpu=<fields> --format=csv[,noheader][,nounits]`.
 * The header names each field with its unit (`memory.total [MiB]`); cells keep
 * the unit unless `nounits` was given (`81559 MiB`), and missing values are
 * bracketed (`[N/A]`, `[Not Supported]`, `[Requested functionality has been
 * deprecated]`). nvidia-smi never quotes cells and no field value we ask for
 * contains a comma, so a plain split is exact; a row with the wrong number of
 * cells is rejected rather than misaligned.
 */

export interface QueryGpuColumn {
  field: string;
  /** Unit from the header (`MiB`, `%`, `W`, `MHz`, `us`); null when the header has none. */
  unit: string | null;
}

export interface QueryGpuRow {
  /** Raw cell text by field name, placeholders included. */
  readonly cells: ReadonlyMap<string, string>;
  /** The cell as text; null for a missing field or a placeholder. */
  text(field: string): string | null;
  /** The cell as a number in the header's unit; null for a missing field, a placeholder or a unit mismatch. */
  number(field: string): number | null;
}

export interface QueryGpuCsv {
  columns: QueryGpuColumn[];
  rows: QueryGpuRow[];
}

const HEADER_CELL = /^(.*?)(?:\s*\[([^\]]+)\])?$/;

/**
 * Parses CSV output that has a header line. Without a header (`noheader`)
 * pass the field list you queried as `fields`.
 */
export function parseQueryGpuCsv(output: string, fields?: readonly string[]): QueryGpuCsv {
  const lines = output.split(/\r?\n/).filter((l) => l.trim() !== "");
  let columns: QueryGpuColumn[];
  if (fields) {
    columns = fields.map((field) => ({ field, unit: null }));
  } else {
    const header = lines.shift();
    if (header === undefined) throw invalid("nvidia-smi --query-gpu output is empty");
    columns = splitCells(header).map((cell) => {
      const m = HEADER_CELL.exec(cell);
      return { field: m?.[1] ?? cell, unit: m?.[2] ?? null };
    });
  }
  const rows = lines.map((line, i) => {
    const cells = splitCells(line);
    if (cells.length !== columns.length) {
      throw invalid(`nvidia-smi --query-gpu row ${i + 1} has ${cells.length} cells, header has ${columns.length}`);
    }
    return createRow(columns, cells);
  });
  return { columns, rows };
}

function splitCells(line: string): string[] {
  return line.split(",").map((c) => c.trim());
}

function createRow(columns: readonly QueryGpuColumn[], values: readonly string[]): QueryGpuRow {
  const cells = new Map<string, string>();
  const units = new Map<string, string | null>();
  columns.forEach((c, i) => {
    cells.set(c.field, values[i] ?? "");
    units.set(c.field, c.unit);
  });
  return {
    cells,
    text: (field) => textValue(cells.get(field)),
    number: (field) => numberValue(cells.get(field), units.get(field) ?? undefined),
  };
}

function invalid(message: string): AppError {
  return new AppError("INVALID_ARGUMENT", message, { reason: "nvidia_smi_csv_invalid" });
}

/** The first of several field spellings (nvidia-smi accepts aliases such as `clocks.sm`) that has a value. */
function firstNumber(row: QueryGpuRow, ...fields: string[]): number | null {
  for (const f of fields) {
    const n = row.number(f);
    if (n !== null) return n;
  }
  return null;
}

/**
 * An inventory from a --query-gpu CSV, for fields that were queried; fields
 * not queried are null. The CSV never lists MIG devices (that needs `-L` or
 * the XML), so `migDevices` is empty.
 */
export function inventoryFromQueryGpu(csv: QueryGpuCsv): GpuInventory {
  const gpus = csv.rows.map((row, position): GpuInfo => {
    const correctable = (scope: string): number | null => row.number(`ecc.errors.corrected.${scope}.total`);
    const uncorrectable = (scope: string): number | null => row.number(`ecc.errors.uncorrected.${scope}.total`);
    const ecc = (scope: string) =>
      correctable(scope) === null && uncorrectable(scope) === null
        ? null
        : { correctable: correctable(scope), uncorrectable: uncorrectable(scope) };
    return {
      index: integerValue(row.cells.get("index")) ?? position,
      uuid: row.text("uuid"),
      name: row.text("name") ?? "unknown",
      pciBusId: row.text("pci.bus_id"),
      memory: {
        totalMib: row.number("memory.total"),
        usedMib: row.number("memory.used"),
        freeMib: row.number("memory.free"),
      },
      utilization: { gpuPercent: row.number("utilization.gpu"), memoryPercent: row.number("utilization.memory") },
      temperatureC: row.number("temperature.gpu"),
      power: {
        drawW: firstNumber(row, "power.draw", "power.draw.instant", "power.draw.average"),
        limitW: firstNumber(row, "enforced.power.limit", "power.limit"),
      },
      smClockMhz: firstNumber(row, "clocks.current.sm", "clocks.sm"),
      ecc: { enabled: enabledValue(row.cells.get("ecc.mode.current")), volatile: ecc("volatile"), aggregate: ecc("aggregate") },
      migMode: { current: enabledValue(row.cells.get("mig.mode.current")), pending: enabledValue(row.cells.get("mig.mode.pending")) },
      migDevices: [],
    };
  });
  const first = csv.rows[0];
  return {
    driverVersion: first?.text("driver_version") ?? null,
    cudaVersion: null,
    attachedGpus: first ? integerValue(first.cells.get("count")) : null,
    gpus,
  };
}
