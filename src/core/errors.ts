/**
 * Errors a user can act on. Each names what failed and where; none ever carries a secret
 * (messages pass through `redactSecrets` before they reach a log, a report or a response).
 */

/**
 * How a store failure affects the run:
 * - `object`: this one object failed; the others go on;
 * - `store`: the whole store is unusable (credentials refused, bucket missing, service down): stop using it, delete nothing;
 * - `refused-pull`: the service will not pull from a URL; fall back to streaming;
 * - `unmirrorable`: this object can never be written as it is (its metadata cannot be mapped), whatever the
 *   store's health: it fails every run until the source changes, and is no sign the store is down.
 */
export type FailureScope = 'object' | 'store' | 'refused-pull' | 'unmirrorable';

export class StoreError extends Error {
  override readonly name = 'StoreError';
  readonly store: string;
  readonly operation: string;
  readonly key: string | undefined;
  readonly status: number | undefined;
  readonly code: string | undefined;
  readonly scope: FailureScope;

  constructor(fields: {
    store: string;
    operation: string;
    key?: string | undefined;
    status?: number | undefined;
    code?: string | undefined;
    scope: FailureScope;
    detail: string;
    cause?: unknown;
  }) {
    const where = fields.key === undefined ? fields.store : `${fields.store} key ${JSON.stringify(fields.key)}`;
    const status = [fields.status, fields.code].filter((part) => part !== undefined).join(' ');
    super(redactSecrets(`${fields.operation} failed on ${where}${status ? ` (${status})` : ''}: ${fields.detail}`), { cause: fields.cause });
    this.store = fields.store;
    this.operation = fields.operation;
    this.key = fields.key;
    this.status = fields.status;
    this.code = fields.code;
    this.scope = fields.scope;
  }
}

/** A setting is missing or malformed; the run stops before any request. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(problems.length === 1 ? `Configuration error: ${problems[0]}` : `Configuration errors:\n- ${problems.join('\n- ')}`);
    this.problems = problems;
  }
}

/** Another run holds the lock of a target. */
export class LockHeldError extends Error {
  override readonly name = 'LockHeldError';
}

const knownSecrets = new Set<string>();

/** Registers a secret value (a key, a password) so that it is masked wherever a message could carry it. */
export function registerSecret(value: string | undefined): void {
  if (value !== undefined && value.length >= 4) knownSecrets.add(value);
}

const SIGNED_URL_PARAMETER = /([?&](?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|sig|se|sv|sp|skoid|sktid|skt|ske|sks|skv)=)[^&\s"']*/gi;
const CONNECTION_STRING_SECRET = /((?:AccountKey|SharedAccessSignature|SharedAccessKey)=)[^;\s"']*/gi;
/** A SigV4 Authorization header (`Credential=<key id>/<scope>, ..., Signature=<hex>`), as a service may echo it in an error. */
const AUTHORIZATION_HEADER_SECRET = /(\b(?:Credential|Signature)=)[^&,;()\s"']+/g;

/** Masks registered secrets, URL signatures and connection-string keys in any text that may leave the process. */
export function redactSecrets(text: string): string {
  let result = text
    .replace(SIGNED_URL_PARAMETER, '$1[redacted]')
    .replace(CONNECTION_STRING_SECRET, '$1[redacted]')
    .replace(AUTHORIZATION_HEADER_SECRET, '$1[redacted]');
  for (const secret of knownSecrets) result = result.split(secret).join('[redacted]');
  return result;
}

/** The message of anything thrown, masked. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return redactSecrets(error.message || error.name);
  return redactSecrets(String(error));
}
