/**
 * A protocol-level stand-in for Azure Key Vault's secrets API, for tests of src/secrets.ts.
 *
 * No Key Vault emulator exists (Azurite has none), so this speaks just enough of the REST protocol
 * for the real `SecretClient` (@azure/keyvault-secrets 4.12) to run unmodified against it:
 * - `GET /secrets/{name}/{version?}?api-version=...` answers the newest (or the named) version;
 * - a request without a bearer token gets the 401 challenge Key Vault sends
 *   (`WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>", resource="https://vault.azure.net"`).
 *   The SDK's challenge policy takes `resource` + "/.default" as the token scope and falls back to a
 *   `scope` parameter only when `resource` is absent; it reads the tenant from the `authorization` URL path;
 * - an unknown secret gets 404 `SecretNotFound`, a denied one 403 `Forbidden` / `ForbiddenByRbac`,
 *   a token the test did not accept 401 `Unauthorized`, all with Key Vault's JSON error body.
 *
 * It serves HTTPS only: the SDK's challenge policy refuses plain http outright. The certificate is
 * self-signed, made with the openssl CLI (node:crypto cannot issue X.509 certificates), and trusted
 * through `clientOptions.tlsOptions.ca`, which core-rest-pipeline hands to its https.Agent: nothing
 * process-wide (no NODE_TLS_REJECT_UNAUTHORIZED, no NODE_EXTRA_CA_CERTS).
 * The vault lives on 127.0.0.1, not under `.vault.azure.net`, so the SDK's check that the challenge
 * resource matches the vault's domain must be turned off: `clientOptions` does that, for tests only.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { SecretClientOptions } from '@azure/keyvault-secrets';

/** One request as the vault saw it. */
export interface VaultRequest {
  readonly method: string;
  /** The path without the query, e.g. `/secrets/aws-access-key-id/`. */
  readonly path: string;
  /** The secret name from the path, when the path is a secret's. */
  readonly secretName: string | undefined;
  /** The version segment, when one was given. */
  readonly secretVersion: string | undefined;
  readonly apiVersion: string | null;
  /** The bearer token, when the request carried one. */
  readonly token: string | undefined;
  readonly status: number;
}

export interface KeyVaultServerOptions {
  /** Secret values by name, each stored as a first version. */
  readonly secrets?: Readonly<Record<string, string>>;
  /** Tenant id in the challenge's `authorization` URL; default a fixed test GUID. */
  readonly tenantId?: string;
  /** Decides whether a bearer token is good; default: any non-empty token. */
  readonly acceptsToken?: (token: string) => boolean;
}

export interface KeyVaultServer {
  /** `https://127.0.0.1:PORT`, the vault URI. */
  readonly url: string;
  /** The PEM certificate the server presents (self-signed). */
  readonly certificate: string;
  /** Options for `SecretClient` that trust the certificate and skip the domain check of the challenge (tests only). */
  readonly clientOptions: SecretClientOptions;
  /** Every request so far, in arrival order. */
  readonly requests: readonly VaultRequest[];
  /** The names of the secrets served with 200, one entry per successful read. */
  served(): string[];
  /** Adds a new (current) version of a secret, as a rotation does. */
  setSecret(name: string, value: string): void;
  /** Removes every version of a secret: it answers 404 from now on. */
  deleteSecret(name: string): void;
  /** The caller may not read this secret: it answers 403 from now on. */
  deny(name: string): void;
  close(): Promise<void>;
}

interface SecretVersion {
  readonly version: string;
  readonly value: string;
  readonly created: number;
}

const DEFAULT_TENANT = '72f988bf-0000-4000-8000-00000000a11c';
const SECRET_PATH = /^\/secrets\/([^/]+)\/?([^/]*)$/;

export async function startKeyVaultServer(options: KeyVaultServerOptions = {}): Promise<KeyVaultServer> {
  const { key, certificate } = await selfSignedCertificate();
  const tenantId = options.tenantId ?? DEFAULT_TENANT;
  const acceptsToken = options.acceptsToken ?? ((token: string) => token.length > 0);
  const versions = new Map<string, SecretVersion[]>();
  const denied = new Set<string>();
  const requests: VaultRequest[] = [];
  let origin = '';

  const setSecret = (name: string, value: string): void => {
    const list = versions.get(name) ?? [];
    list.push({ version: randomUUID().replaceAll('-', ''), value, created: Math.floor(Date.now() / 1000) });
    versions.set(name, list);
  };
  for (const [name, value] of Object.entries(options.secrets ?? {})) setSecret(name, value);

  const handle = (request: IncomingMessage, response: ServerResponse): void => {
    const url = new URL(request.url ?? '/', origin);
    const match = SECRET_PATH.exec(url.pathname);
    const secretName = match?.[1] === undefined ? undefined : decodeURIComponent(match[1]);
    const secretVersion = match?.[2] ? decodeURIComponent(match[2]) : undefined;
    const authorization = request.headers.authorization ?? '';
    const token = authorization.startsWith('Bearer ') ? authorization.slice('Bearer '.length) : undefined;
    const apiVersion = url.searchParams.get('api-version');

    const send = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      requests.push({ method: request.method ?? '', path: url.pathname, secretName, secretVersion, apiVersion, token, status });
      response.writeHead(status, {
        'content-type': 'application/json; charset=utf-8',
        'x-ms-keyvault-service-version': '1.9.0.0',
        'x-ms-request-id': randomUUID(),
        ...headers,
      });
      response.end(body === undefined ? undefined : JSON.stringify(body));
    };
    const challenge = {
      'www-authenticate': `Bearer authorization="https://login.microsoftonline.com/${tenantId}", resource="https://vault.azure.net"`,
    };

    if (!apiVersion) {
      send(400, keyVaultError('BadParameter', 'The request URI contains an invalid or missing api-version.'));
    } else if (token === undefined) {
      // Key Vault answers every anonymous request with the challenge; the SDK sends one first on purpose.
      send(401, keyVaultError('Unauthorized', 'AKV10000: Request is missing a Bearer or PoP token.'), challenge);
    } else if (!acceptsToken(token)) {
      send(401, keyVaultError('Unauthorized', 'AKV10032: Invalid issuer.'), challenge);
    } else if (request.method !== 'GET' || secretName === undefined) {
      send(405, keyVaultError('BadParameter', `${request.method ?? ''} ${url.pathname} is not served by this test vault.`));
    } else if (denied.has(secretName)) {
      send(403, keyVaultError(
        'Forbidden',
        'Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\n'
          + `Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'\r\nResource: '/secrets/${secretName}'\r\nAssignment: (not found)\r\n`,
        'ForbiddenByRbac',
      ));
    } else {
      const list = versions.get(secretName) ?? [];
      const found = secretVersion === undefined ? list.at(-1) : list.find((candidate) => candidate.version === secretVersion);
      if (found === undefined) {
        send(404, keyVaultError(
          'SecretNotFound',
          `A secret with (name/id) ${secretName}${secretVersion === undefined ? '' : `/${secretVersion}`} was not found in this key vault. `
            + 'If you recently deleted this secret you may be able to recover it using the correct recovery command.',
        ));
      } else {
        send(200, {
          value: found.value,
          id: `${origin}/secrets/${secretName}/${found.version}`,
          attributes: { enabled: true, created: found.created, updated: found.created, recoveryLevel: 'Recoverable+Purgeable', recoverableDays: 90 },
          tags: {},
        });
      }
    }
  };

  const server: Server = createServer({ key, cert: certificate }, handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url: origin,
    certificate,
    clientOptions: {
      tlsOptions: { ca: certificate },
      disableChallengeResourceVerification: true,
      // A failing test should fail now, not after the SDK's back-off.
      retryOptions: { maxRetries: 0 },
    },
    requests,
    served: () => requests.filter((entry) => entry.status === 200 && entry.secretName !== undefined).map((entry) => entry.secretName ?? ''),
    setSecret,
    deleteSecret: (name) => { versions.delete(name); },
    deny: (name) => { denied.add(name); },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function keyVaultError(code: string, message: string, innerCode?: string): unknown {
  return { error: { code, message, ...(innerCode === undefined ? {} : { innererror: { code: innerCode } }) } };
}

const run = promisify(execFile);
let certificatePromise: Promise<{ key: string; certificate: string }> | undefined;

/** One certificate per process: openssl takes a few tens of milliseconds, and every test vault can share it. */
/** A self-signed certificate for 127.0.0.1 and localhost (made once per test file), for HTTPS stand-ins. */
export function selfSignedCertificate(): Promise<{ key: string; certificate: string }> {
  certificatePromise ??= (async () => {
    const directory = await mkdtemp(join(tmpdir(), 'key-vault-server-'));
    try {
      const keyPath = join(directory, 'key.pem');
      const certificatePath = join(directory, 'cert.pem');
      await run('openssl', [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', keyPath, '-out', certificatePath, '-days', '2', '-subj', '/CN=127.0.0.1',
        '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
      ]);
      return { key: await readFile(keyPath, 'utf8'), certificate: await readFile(certificatePath, 'utf8') };
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  })();
  return certificatePromise;
}
