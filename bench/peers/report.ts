// The rows `npm run bench:peers` measures, as a console table, Markdown and JSON.
import {
  formatMs,
  formatRate,
  jsonWithRows,
  loadLine,
  type Machine,
  machineLine,
  markdownColumns,
  roundedRow,
} from '../report';
import type { Op } from '../workloads';
import { TOLERANCE } from './check';

export interface PeerRow {
  op: Op;
  shape: string;
  dims: number[];
  axis: number;
  dtype: 'f32';
  library: string;
  how: string;
  threads: number;
  medianMs: number;
  /** (bytes of x + bytes of y) / median time; backward counts x + dy + dx. */
  gbPerS: number;
  /** A memcpy of x's bytes (read + written), sampled in the same rounds. */
  memcpyGbPerS: number;
  /** Median time / batchnorm native's median time on the same workload. */
  timeOverNative: number | null;
  /** Max |output - batchnorm native's| over y (backward: dx); 0 for native itself. */
  maxAbsDiff: number;
  /** The check of every output: max |diff|, and relative to max |batchnorm's| where that exceeds 1. */
  check: string;
  calls: number;
}

export interface Skipped {
  op: Op;
  shape: string;
  library: string;
  why: string;
}

export interface PeerResults {
  generatedAt: string;
  quick: boolean;
  machine: Machine & { libraries: string[] };
  rows: PeerRow[];
  skipped: Skipped[];
}

function ratio(x: number): string {
  return `${x.toFixed(x < 10 ? 2 : x < 100 ? 1 : 0)}x`;
}

export function cells(r: PeerRow): string[] {
  return [
    r.op,
    r.shape,
    r.library,
    r.how,
    String(r.threads),
    formatMs(r.medianMs),
    formatRate(r.gbPerS),
    (r.gbPerS / r.memcpyGbPerS).toFixed(2),
    r.timeOverNative === null ? '' : ratio(r.timeOverNative),
    r.maxAbsDiff === 0 ? '0' : r.maxAbsDiff.toExponential(1),
  ];
}

export const HEADERS = [
  'op',
  'shape',
  'library',
  'how',
  'threads',
  'median ms',
  'GB/s',
  'x memcpy',
  'time/native',
  'max abs diff y/dx',
];
export const WORDS = 4;

export function skippedLines(skipped: readonly Skipped[]): string[] {
  return skipped.map((s) => `${s.library} ${s.op} ${s.shape}: ${s.why}`);
}

export function toMarkdown(results: PeerResults): string {
  const bullet = (l: string) => `- ${l}`;
  const text = [
    `# batchnorm against peer libraries${results.quick ? ' (quick)' : ''}`,
    '',
    `Machine: ${machineLine(results.machine)}. Run ${results.generatedAt}, ${loadLine(results.machine)}.`,
    '',
    ...results.machine.libraries.map(bullet),
    '',
    'f32. Effective GB/s = (bytes of x + bytes of y) / median time; backward counts x + dy + dx.',
    "`x memcpy` divides that by a one-thread memcpy of x's bytes sampled in the same rounds;",
    "`time/native` is the row's median over batchnorm native's. Every library's answer is checked against",
    "batchnorm native's before it is timed: `max abs diff y/dx` is the largest difference in y (backward: dx);",
    'dGamma and dBeta are checked relative to their size (the JSON `check` field). Only rows that agree to',
    `${TOLERANCE} (times max(1, max |value|)) are timed.`,
    'onnxruntime-node runs through `await session.run` with y written into a preallocated tensor; tfjs runs',
    'on tensors made once up front and does not copy y back to JavaScript.',
    '',
    markdownColumns(HEADERS, results.rows.map(cells), WORDS),
    '',
    ...(results.skipped.length ? ['## Not measured', '', ...skippedLines(results.skipped).map(bullet), ''] : []),
  ].join('\n');
  return `${text.trimEnd()}\n`;
}

export function toJson(results: PeerResults): string {
  const { rows, ...rest } = results;
  return jsonWithRows(rest, rows.map(roundedRow));
}
