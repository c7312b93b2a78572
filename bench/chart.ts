// A horizontal bar chart of effective GB/s as plain SVG: one group per op, shape and dtype,
// a bar per backend, and a tick at the memcpy rate of the same bytes.
import { machineLine, type Results, type Row } from './report';

const COLORS = { native: '#d9480f', js: '#1971c2', memcpy: '#212529' };
const LABEL_WIDTH = 250;
const PLOT_WIDTH = 560;
const BAR = 11;
const GROUP_GAP = 9;
const TOP = 64;
const LEFT = 10;

function escapeXml(text: string): string {
  return text.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c] ?? c);
}

/** A round axis maximum: 1, 2 or 5 times a power of ten, at or above `value`. */
function niceMax(value: number): number {
  const power = 10 ** Math.floor(Math.log10(Math.max(value, 1e-9)));
  return ([1, 2, 5, 10].find((m) => m * power >= value) ?? 10) * power;
}

export function toSvg(results: Results): string {
  // A [2,4] call is all overhead: its GB/s says nothing, so it stays out of the chart.
  const rows = results.rows.filter((r) => r.output === 'out' && r.dims.reduce((a, b) => a * b, 1) > 64);
  const groups = new Map<string, Row[]>();
  for (const r of rows) {
    const key = `${r.op} ${r.shape} ${r.dtype}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const max = niceMax(Math.max(1, ...rows.flatMap((r) => [r.gbPerS, r.memcpyGbPerS])));
  const x = (gbPerS: number) => LEFT + LABEL_WIDTH + (Math.min(gbPerS, max) / max) * PLOT_WIDTH;
  const groupHeight = 2 * BAR + GROUP_GAP;
  const height = TOP + groups.size * groupHeight + 40;
  const width = LEFT + LABEL_WIDTH + PLOT_WIDTH + 30;

  const parts: string[] = [];
  const ticks = 5;
  for (let i = 0; i <= ticks; i++) {
    const v = (max * i) / ticks;
    const px = x(v).toFixed(1);
    parts.push(
      `<line x1="${px}" y1="${TOP - 6}" x2="${px}" y2="${height - 34}" stroke="#dee2e6"/>`,
      `<text x="${px}" y="${height - 20}" text-anchor="middle">${Number(v.toPrecision(3))}</text>`,
    );
  }
  parts.push(`<text x="${x(max / 2)}" y="${height - 6}" text-anchor="middle">effective GB/s (higher is better)</text>`);

  let y = TOP;
  for (const [key, group] of groups) {
    parts.push(`<text x="${LEFT + LABEL_WIDTH - 8}" y="${y + BAR + 4}" text-anchor="end">${escapeXml(key)}</text>`);
    for (const [i, backend] of (['native', 'js'] as const).entries()) {
      const r = group.find((g) => g.backend === backend);
      if (!r) continue;
      const top = y + i * BAR;
      const w = (x(r.gbPerS) - x(0)).toFixed(1);
      // Each bar has its own baseline tick: the memcpy sampled beside it.
      const copy = x(r.memcpyGbPerS).toFixed(1);
      parts.push(
        `<rect x="${x(0)}" y="${top}" width="${w}" height="${BAR - 1}" fill="${COLORS[backend]}">` +
          `<title>${escapeXml(`${key} ${backend}: ${r.gbPerS.toFixed(1)} GB/s, ${r.medianMs.toPrecision(3)} ms`)}</title></rect>`,
        `<text x="${(x(r.gbPerS) + 3).toFixed(1)}" y="${top + BAR - 2}" font-size="9">${r.gbPerS.toFixed(1)}</text>`,
        `<line x1="${copy}" y1="${top - 1}" x2="${copy}" y2="${top + BAR}" stroke="${COLORS.memcpy}" stroke-width="2"/>`,
      );
    }
    y += groupHeight;
  }

  const legend = [
    `<rect x="${LEFT}" y="36" width="10" height="10" fill="${COLORS.native}"/><text x="${LEFT + 14}" y="45">native</text>`,
    `<rect x="${LEFT + 70}" y="36" width="10" height="10" fill="${COLORS.js}"/><text x="${LEFT + 84}" y="45">js</text>`,
    `<line x1="${LEFT + 120}" y1="36" x2="${LEFT + 120}" y2="47" stroke="${COLORS.memcpy}" stroke-width="2"/>`,
    `<text x="${LEFT + 126}" y="45">memcpy of the same bytes (TypedArray.set, 1 thread) measured beside each bar; reused output</text>`,
  ];
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<title>batchnorm: effective GB/s per op, shape, dtype and backend</title>`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${LEFT}" y="18" font-size="13" font-weight="bold">batchnorm: effective GB/s${results.quick ? ' (quick run)' : ''}</text>`,
    `<text x="${LEFT}" y="31" font-size="10">${escapeXml(machineLine(results.machine))}</text>`,
    ...legend,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}
