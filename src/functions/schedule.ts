/**
 * The timer's schedule: app setting SYNC_SCHEDULE, an NCRONTAB expression with seconds
 * (`{second} {minute} {hour} {day} {month} {day-of-week}`), checked the way the host's parser
 * (NCrontab) reads it, so a typo is reported with the setting's name instead of a host indexing error.
 */
import { SettingsReader, type Settings } from '../config.ts';

/** Hourly, on the hour. */
export const DEFAULT_SYNC_SCHEDULE = '0 0 * * * *';

interface CronField {
  readonly name: string;
  readonly min: number;
  readonly max: number;
  /** Full names; NCrontab accepts any case-insensitive prefix of one (Jan, Mon). */
  readonly names?: readonly string[];
}

const FIELDS: readonly CronField[] = [
  { name: 'second', min: 0, max: 59 },
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'] },
  { name: 'day-of-week', min: 0, max: 6, names: ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'] },
];

/** SYNC_SCHEDULE, or the hourly default when unset; throws `ConfigError` naming the setting when it is not a six-field NCRONTAB expression. */
export function syncSchedule(settings: Settings): string {
  const read = new SettingsReader(settings);
  const schedule = read.optional('SYNC_SCHEDULE') ?? DEFAULT_SYNC_SCHEDULE;
  const problem = scheduleProblem(schedule);
  if (problem !== undefined) {
    read.problem(
      `SYNC_SCHEDULE ${JSON.stringify(schedule)} is not an NCRONTAB schedule (${problem}): expected six fields ` +
        `"{second} {minute} {hour} {day} {month} {day-of-week}", such as "${DEFAULT_SYNC_SCHEDULE}" (hourly, the default) or "0 30 2 * * *" (02:30 every day)`,
    );
  }
  read.throwIfProblems();
  return schedule;
}

function scheduleProblem(schedule: string): string | undefined {
  const parts = schedule.split(/\s+/);
  if (parts.length !== FIELDS.length) return `${parts.length} field${parts.length === 1 ? '' : 's'} instead of ${FIELDS.length}`;
  for (const [index, field] of FIELDS.entries()) {
    const problem = fieldProblem(parts[index] ?? '', field);
    if (problem !== undefined) return `${field.name} ${JSON.stringify(parts[index])}: ${problem}`;
  }
  return undefined;
}

/** A field is a comma list of `*`, `v` or `a-b`, each with an optional `/step` (`v/step` runs from v to the maximum). */
function fieldProblem(text: string, field: CronField): string | undefined {
  for (const item of text.split(',')) {
    const match = /^(?:(\*)|([0-9A-Za-z]+)(?:-([0-9A-Za-z]+))?)(?:\/(\d+))?$/.exec(item);
    if (match === null) return `"${item}" is not *, a value, or a range, each with an optional /step`;
    const step = match[4] === undefined ? 1 : Number(match[4]);
    if (step < 1) return 'a step must be at least 1';
    if (match[1] !== undefined) continue;
    const first = valueOf(match[2] ?? '', field);
    const last = match[3] === undefined ? first : valueOf(match[3], field);
    if (first === undefined || last === undefined) {
      return `values run from ${field.min} to ${field.max}${field.names ? ` or are names such as ${field.names[1]?.slice(0, 3)}` : ''}`;
    }
    if (first > last) return `the range ${item} runs backwards`;
  }
  return undefined;
}

function valueOf(text: string, field: CronField): number | undefined {
  if (/^\d+$/.test(text)) {
    const value = Number(text);
    return value >= field.min && value <= field.max ? value : undefined;
  }
  const index = field.names?.findIndex((name) => name.toLowerCase().startsWith(text.toLowerCase())) ?? -1;
  return index < 0 ? undefined : field.min + index;
}
