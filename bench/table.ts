/** Plain-text tables and the units the benchmark prints. */

const MB = 1_000_000;

/** Renders rows under a header, columns padded to their widest cell; number-like cells right-aligned unless `leftOnly`. */
export function renderTable(header: readonly string[], rows: readonly (readonly string[])[], options: { leftOnly?: boolean } = {}): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, column) => {
        const width = widths[column] ?? cell.length;
        return !options.leftOnly && column > 0 && /^[-0-9.,× ]+(?:\s?[a-zA-Z%/]+)?$/.test(cell) ? cell.padStart(width) : cell.padEnd(width);
      })
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((width) => '-'.repeat(width)).join('  '), ...rows.map(line)].join('\n');
}

export function seconds(ms: number | undefined): string {
  if (ms === undefined) return '-';
  return ms < 10_000 ? `${(ms / 1000).toFixed(2)} s` : `${(ms / 1000).toFixed(1)} s`;
}

/** `208 MB`; with `digits`, `200.4 MB` (a figure judged against a limit must not round onto it). */
export function megabytes(bytes: number | undefined, digits = 0): string {
  return bytes === undefined ? '-' : `${(bytes / MB).toFixed(digits)} MB`;
}

/** `2.34 s/GiB`: CPU seconds per GiB moved. */
export function perGib(secondsPerGib: number | undefined): string {
  return secondsPerGib === undefined ? '-' : `${secondsPerGib.toFixed(2)} s/GiB`;
}

export function count(value: number | undefined): string {
  return value === undefined ? '-' : value.toLocaleString('en-US');
}

/** `ours / theirs` as `0.63×`; `-` when either side is missing. */
export function ratio(ours: number | undefined, theirs: number | undefined): string {
  if (ours === undefined || theirs === undefined || theirs === 0) return '-';
  return `${(ours / theirs).toFixed(2)}×`;
}
