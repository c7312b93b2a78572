// The long soak: 100k calls (SOAK_CALLS) of every op, sync and Async, through the native
// backend on a small f32 and f64 problem, with memory (after a full GC) before and after
// and the call rate of each loop. Run with `npm run soak`. Exits non-zero when RSS grows
// by more than 64 MiB (SOAK_RSS_LIMIT_MIB) or typed-array memory by more than 8 MiB:
// a leaked napi reference keeps every array of its call alive.
import { native, nativeLoadError } from '../index';
import { type MemoryFigures, MiB, memoryAfterGc, runCalls, soakOps } from './workload';

const CALLS = Number(process.env.SOAK_CALLS ?? 100_000);
const RSS_LIMIT = Number(process.env.SOAK_RSS_LIMIT_MIB ?? 64) * MiB;
const ARRAY_BUFFER_LIMIT = 8 * MiB;
const SHAPE = [8, 4, 3];

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

function row(cells: string[]): string {
  return cells.map((c, i) => (i === 0 ? c.padEnd(26) : c.padStart(12))).join(' ');
}

function figures(label: string, m: MemoryFigures): string {
  return `${label.padEnd(6)} rss ${mib(m.rss)}, heap ${mib(m.heapUsed)}, external ${mib(m.external)}, arrayBuffers ${mib(m.arrayBuffers)}`;
}

async function main(): Promise<void> {
  if (!native) throw new Error(`the soak needs the native backend: ${nativeLoadError?.message}`);
  console.log(
    `soak: ${CALLS} calls of each op, sync and Async (64 in flight), shape [${SHAPE}], node ${process.version}`,
  );
  const loops = (['f32', 'f64'] as const).flatMap((dtype) =>
    soakOps(native!, dtype, SHAPE).map((op) => ({ op, dtype })),
  );
  // Warm up every path (JIT, pool threads, allocator arenas) before the baseline.
  for (const { op } of loops) {
    await runCalls(op, 'sync', 2_000);
    await runCalls(op, 'async', 2_000);
  }
  const start = memoryAfterGc();
  console.log(figures('start', start));
  console.log(row(['op', 'sync calls/s', 'async calls/s', 'rss after']));
  const began = Date.now();
  for (const { op, dtype } of loops) {
    const rates = [];
    for (const mode of ['sync', 'async'] as const) {
      const t0 = process.hrtime.bigint();
      await runCalls(op, mode, CALLS);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      rates.push(Math.round(CALLS / seconds).toLocaleString('en-US'));
    }
    console.log(row([`${op.name} ${dtype}`, ...rates, mib(process.memoryUsage().rss)]));
  }
  const end = memoryAfterGc();
  console.log(figures('end', end));
  const total = loops.length * 2 * CALLS;
  console.log(`${total.toLocaleString('en-US')} calls in ${((Date.now() - began) / 1000).toFixed(1)} s`);
  const rssGrowth = end.rss - start.rss;
  const bufferGrowth = end.arrayBuffers - start.arrayBuffers;
  console.log(`growth: rss ${mib(rssGrowth)}, arrayBuffers ${mib(bufferGrowth)}`);
  if (rssGrowth > RSS_LIMIT || bufferGrowth > ARRAY_BUFFER_LIMIT) {
    console.error(`FAIL: memory grew beyond rss ${mib(RSS_LIMIT)} / arrayBuffers ${mib(ARRAY_BUFFER_LIMIT)}`);
    process.exitCode = 1;
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
