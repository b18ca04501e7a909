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
    // The key is never redacted: it names the object, and a key may well contain `Signature=` or `sig=`.
    const where = fields.key === undefined ? redactSecrets(fields.store) : `${redactSecrets(fields.store)} key ${JSON.stringify(fields.key)}`;
    const status = [fields.status, fields.code].filter((part) => part !== undefined).join(' ');
    super(`${redactSecrets(fields.operation)} failed on ${where}${status ? ` (${status})` : ''}: ${redactSecrets(fields.detail)}`, { cause: fields.cause });
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

/** The run lock could not be renewed: the run stopped so that another may take over. A lost lock is a failed run. */
export class LockLostError extends Error {
  override readonly name = 'LockLostError';
}

/** The operator stopped the run (SIGINT, SIGTERM): in-flight transfers were cancelled, nothing partial left visible. */
export class InterruptedError extends Error {
  override readonly name = 'InterruptedError';
  readonly signalName: string;
  constructor(signalName: string) {
    super(`interrupted by ${signalName}`);
    this.signalName = signalName;
  }
}

/** The run's deadline came. */
export class DeadlineError extends Error {
  override readonly name = 'DeadlineError';
}

const knownSecrets = new Set<string>();

/** Registers a secret value (a key, a password) so that it is masked wherever a message could carry it. */
export function registerSecret(value: string | undefined): void {
  if (value !== undefined && value.length >= 4) knownSecrets.add(value);
}

/*
 * Each pattern matches a secret by its shape (a SigV4 signature is 64 hex digits, a credential scope
 * ends in a date and `aws4_request`, a SAS `sig` is base64), not by its name alone: object keys travel in
 * the same messages, and a key such as `docs/Signature=draft.txt` must come out as it went in.
 */
const SIGNED_URL_PARAMETER = /([?&](?:X-Amz-Signature=(?=[0-9a-f]{64})|X-Amz-Credential=(?=[^&\s"']+?(?:%2F|\/)\d{8}(?:%2F|\/))|X-Amz-Security-Token=(?=[A-Za-z0-9%+/=_-]{32})|sig=(?=[A-Za-z0-9%+/=]{20})))[^&\s"']*/gi;
const CONNECTION_STRING_SECRET = /((?:AccountKey|SharedAccessKey)=(?=[A-Za-z0-9+/]{20})|SharedAccessSignature=(?=[^;\s"']*sig=))[^;\s"']*/gi;
/** A SigV4 Authorization header (`Credential=<key id>/<date>/..., Signature=<64 hex>`), as a service may echo it in an error. */
const AUTHORIZATION_HEADER_SECRET = /(\b(?:Credential=(?=[^&,;()\s"'/]+\/\d{8}\/)|Signature=(?=[0-9a-f]{64}\b)))[^&,;()\s"']+/g;

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
  // Masked when it was made, around its key, which must stay as it is.
  if (error instanceof StoreError) return error.message;
  if (error instanceof Error) return redactSecrets(error.message || error.name);
  return redactSecrets(String(error));
}
