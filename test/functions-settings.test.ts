/** The Functions app's own settings: SYNC_SCHEDULE and the two deadlines, checked before anything runs. */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../src/core/errors.ts';
import { runDeadline } from '../src/functions/run-sync.ts';
import { DEFAULT_SYNC_SCHEDULE, syncSchedule } from '../src/functions/schedule.ts';

function configErrorOf(action: () => unknown): ConfigError {
  try {
    action();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('SYNC_SCHEDULE', () => {
  it('is hourly on the hour when unset or empty', () => {
    expect(DEFAULT_SYNC_SCHEDULE).toBe('0 0 * * * *');
    expect(syncSchedule({})).toBe('0 0 * * * *');
    expect(syncSchedule({ SYNC_SCHEDULE: '  ' })).toBe('0 0 * * * *');
  });

  it.each([
    '0 */5 * * * *',
    '0 30 2 * * *',
    '0 0 9-17 * * 1-5',
    '0 0 0 1 */2 *',
    '15,45 0 * * * *',
    '0 30 9 * Jan Mon',
    '0 0 6 * * Saturday,sun',
    '0 5/20 * * * *',
    '0 0 0 29 2 *',
  ])('accepts %s, as the host\'s NCRONTAB parser does', (schedule) => {
    expect(syncSchedule({ SYNC_SCHEDULE: schedule })).toBe(schedule);
  });

  it.each([
    ['0 * * * *', '5 fields instead of 6'],
    ['0 0 * * * * *', '7 fields instead of 6'],
    ['every hour', '2 fields instead of 6'],
    ['00:05:00', '1 field instead of 6'],
    ['60 0 * * * *', 'second "60": values run from 0 to 59'],
    ['0 0 24 * * *', 'hour "24": values run from 0 to 23'],
    ['0 0 0 0 * *', 'day "0": values run from 1 to 31'],
    ['0 0 0 * 13 *', 'month "13": values run from 1 to 12 or are names such as Feb'],
    ['0 0 0 * * 7', 'day-of-week "7": values run from 0 to 6 or are names such as Mon'],
    ['0 0 0 * * Funday', 'day-of-week "Funday"'],
    ['0 */0 * * * *', 'minute "*/0": a step must be at least 1'],
    ['0 0 17-9 * * *', 'hour "17-9": the range 17-9 runs backwards'],
    ['0 0 ? * * *', 'hour "?": "?" is not *, a value, or a range'],
    ['0 0 1,,2 * * *', 'hour "1,,2": "" is not *, a value, or a range'],
  ])('rejects %j naming SYNC_SCHEDULE and what is wrong: %s', (schedule, problem) => {
    const error = configErrorOf(() => syncSchedule({ SYNC_SCHEDULE: schedule }));

    expect(error.message).toContain(`SYNC_SCHEDULE ${JSON.stringify(schedule)} is not an NCRONTAB schedule (${problem}`);
    expect(error.message).toContain('"{second} {minute} {hour} {day} {month} {day-of-week}"');
  });
});

describe('run deadlines', () => {
  const startedMs = 1_800_000_000_000;

  it('an HTTP run cancels at 200 s by default, inside the 230 s Azure allows a response, and stops starting transfers 30 s before', () => {
    expect(runDeadline({}, 'http', startedMs)).toEqual({ stopStartingAt: startedMs + 170_000, abortAt: startedMs + 200_000 });
  });

  it('a timer run cancels at 540 s by default, a minute inside host.json\'s 10-minute functionTimeout', () => {
    expect(runDeadline({}, 'timer', startedMs)).toEqual({ stopStartingAt: startedMs + 510_000, abortAt: startedMs + 540_000 });
  });

  it('a short deadline keeps a quarter of it for transfers already started', () => {
    expect(runDeadline({ SYNC_HTTP_DEADLINE_SECONDS: '60' }, 'http', startedMs)).toEqual({ stopStartingAt: startedMs + 45_000, abortAt: startedMs + 60_000 });
  });

  it.each([
    [{ SYNC_HTTP_DEADLINE_SECONDS: '221' }, 'SYNC_HTTP_DEADLINE_SECONDS "221" is not a whole number from 10 to 220 (default 200)'],
    [{ SYNC_HTTP_DEADLINE_SECONDS: 'soon' }, 'SYNC_HTTP_DEADLINE_SECONDS "soon" is not a whole number from 10 to 220'],
  ])('an HTTP deadline the platform would not wait for is refused: %j', (settings, message) => {
    expect(configErrorOf(() => runDeadline(settings, 'http', startedMs)).message).toContain(message);
  });

  it('a timer deadline must end 10 s before the function timeout', () => {
    expect(runDeadline({ SYNC_TIMER_DEADLINE_SECONDS: '590' }, 'timer', startedMs).abortAt).toBe(startedMs + 590_000);
    expect(configErrorOf(() => runDeadline({ SYNC_TIMER_DEADLINE_SECONDS: '591' }, 'timer', startedMs)).message)
      .toContain('SYNC_TIMER_DEADLINE_SECONDS "591" is not a whole number from 10 to 590 (default 540)');
  });

  it('a longer function timeout set through AzureFunctionsJobHost__functionTimeout allows a longer timer deadline', () => {
    const settings = { AzureFunctionsJobHost__functionTimeout: '00:30:00', SYNC_TIMER_DEADLINE_SECONDS: '1790' };

    expect(runDeadline(settings, 'timer', startedMs).abortAt).toBe(startedMs + 1_790_000);
    expect(runDeadline({ AzureFunctionsJobHost__functionTimeout: '-1', SYNC_TIMER_DEADLINE_SECONDS: '7200' }, 'timer', startedMs).abortAt).toBe(startedMs + 7_200_000);
  });

  it('a shorter function timeout shortens the default timer deadline with it', () => {
    expect(runDeadline({ AzureFunctionsJobHost__functionTimeout: '00:05:00' }, 'timer', startedMs).abortAt).toBe(startedMs + 240_000);
  });

  it('a malformed function timeout is named', () => {
    expect(configErrorOf(() => runDeadline({ AzureFunctionsJobHost__functionTimeout: '10 minutes' }, 'timer', startedMs)).message)
      .toContain('AzureFunctionsJobHost__functionTimeout "10 minutes" is not a timeout: expected hh:mm:ss');
  });

  it('the HTTP deadline ignores the function timeout: 230 s is the limit whatever the plan', () => {
    expect(runDeadline({ AzureFunctionsJobHost__functionTimeout: '01:00:00' }, 'http', startedMs).abortAt).toBe(startedMs + 200_000);
  });
});
