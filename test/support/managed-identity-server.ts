/**
 * A protocol-level stand-in for the managed-identity endpoint of App Service and Azure Functions,
 * for tests of src/secrets.ts. No emulator of it exists.
 *
 * The real endpoint: the platform sets `IDENTITY_ENDPOINT` (e.g. `http://localhost:8081/msi/token`)
 * and `IDENTITY_HEADER` (a secret the caller echoes in `X-IDENTITY-HEADER`); a token is
 * `GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=<resource>[&client_id=<user-assigned id>]`,
 * answered with `{ access_token, expires_on (epoch seconds, as a string), resource, token_type, client_id }`.
 *
 * How @azure/identity 4.14 finds it (checked in its source and in @azure/msal-node 3.x, which it delegates to):
 * - `ManagedIdentityCredential`, and `DefaultAzureCredential` through it, pick the "AppService" source
 *   when both `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` are set in `process.env` (and
 *   `IDENTITY_SERVER_THUMBPRINT` is not: that would be Service Fabric). They read `process.env`,
 *   never an env object handed to them, so a test must set these two variables in the process.
 * - The chosen source, with its endpoint, is kept in a static of msal-node's `ManagedIdentityClient`
 *   on the first token request, and tokens are kept in a static cache keyed by identity. So within
 *   one process (one vitest file) the first endpoint stays in use, and each identity asks it once
 *   while its token is valid. Start one server per test file, before any credential asks for a token.
 * - `DefaultAzureCredential` passes `AZURE_CLIENT_ID` (or its `managedIdentityClientId` option) on as
 *   the user-assigned identity: it arrives here as `client_id`.
 * - ManagedIdentityCredential reports every failure here as "credential unavailable", so
 *   DefaultAzureCredential then tries its developer credentials (VS Code, Azure CLI, PowerShell, azd)
 *   unless AZURE_TOKEN_CREDENTIALS limits it (see applyToProcessEnv).
 * - A 404 or 410 from this endpoint is retried with back-off (from 0.8 s, resp. 3 s), 5xx by the usual
 *   pipeline retry; a 400 is final, so a test of a refused identity is fast.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One token request as the endpoint saw it. */
export interface IdentityRequest {
  readonly apiVersion: string | null;
  readonly resource: string | null;
  /** The user-assigned identity asked for; undefined for the system-assigned one. */
  readonly clientId: string | undefined;
  /** Whether `X-IDENTITY-HEADER` carried the right secret. */
  readonly headerMatched: boolean;
  readonly status: number;
}

export interface ManagedIdentityServerOptions {
  /** Client ids of the user-assigned identities attached to the "app"; others get 400, as in Azure. */
  readonly userAssignedClientIds?: readonly string[];
  /** Whether the "app" has a system-assigned identity; default true. */
  readonly systemAssigned?: boolean;
  /** Token lifetime in seconds; default 3600. */
  readonly tokenSeconds?: number;
}

export interface ManagedIdentityServer {
  /** `http://127.0.0.1:PORT/msi/token`, the value of IDENTITY_ENDPOINT. */
  readonly endpoint: string;
  /** The value of IDENTITY_HEADER. */
  readonly header: string;
  /** Every request so far, in arrival order. */
  readonly requests: readonly IdentityRequest[];
  /** Whether this server issued the token (a vault can accept exactly these). */
  issued(token: string): boolean;
  /**
   * Points @azure/identity in this process at this endpoint, and only at it: sets IDENTITY_ENDPOINT and
   * IDENTITY_HEADER, sets AZURE_TOKEN_CREDENTIALS=prod (DefaultAzureCredential then skips the developer
   * credentials, so an `az login` on the machine cannot change a test's outcome), and clears the variables
   * that select another credential or identity source. Returns a function that restores them all.
   */
  applyToProcessEnv(): () => void;
  close(): Promise<void>;
}

const PATH = '/msi/token';
/** Variables that would make @azure/identity use a service principal, workload identity, or another managed-identity source. */
const OTHER_IDENTITY_VARIABLES = [
  'AZURE_TENANT_ID', 'AZURE_CLIENT_ID', 'AZURE_CLIENT_SECRET', 'AZURE_CLIENT_CERTIFICATE_PATH', 'AZURE_USERNAME', 'AZURE_PASSWORD',
  'AZURE_FEDERATED_TOKEN_FILE', 'IDENTITY_SERVER_THUMBPRINT', 'MSI_ENDPOINT', 'MSI_SECRET', 'IMDS_ENDPOINT',
  'AZURE_POD_IDENTITY_AUTHORITY_HOST', 'DEFAULT_IDENTITY_CLIENT_ID',
];
const API_VERSION = '2019-08-01';
/** The client id the endpoint reports for the system-assigned identity (any fixed GUID). */
const SYSTEM_ASSIGNED_CLIENT_ID = '5e29463d-71da-4fe0-8e69-999b57db23b0';

export async function startManagedIdentityServer(options: ManagedIdentityServerOptions = {}): Promise<ManagedIdentityServer> {
  const header = randomBytes(16).toString('hex');
  const userAssigned = new Set((options.userAssignedClientIds ?? []).map((id) => id.toLowerCase()));
  const systemAssigned = options.systemAssigned ?? true;
  const tokenSeconds = options.tokenSeconds ?? 3600;
  const issuedTokens = new Set<string>();
  const requests: IdentityRequest[] = [];

  const handle = (request: IncomingMessage, response: ServerResponse): void => {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    const apiVersion = url.searchParams.get('api-version');
    const resource = url.searchParams.get('resource');
    const clientId = url.searchParams.get('client_id') ?? undefined;
    const headerMatched = request.headers['x-identity-header'] === header;

    const send = (status: number, body: unknown): void => {
      requests.push({ apiVersion, resource, clientId, headerMatched, status });
      response.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
      response.end(JSON.stringify(body));
    };
    // The error shape of the App Service endpoint: a status code and a message, no OAuth error fields.
    const refuse = (status: number, message: string): void => send(status, { statusCode: status, message, correlationId: randomUUID() });

    if (request.method !== 'GET' || url.pathname !== PATH) refuse(404, `No route for ${request.method ?? ''} ${url.pathname}.`);
    else if (!headerMatched) refuse(401, 'The X-IDENTITY-HEADER header is missing or wrong.');
    else if (apiVersion !== API_VERSION) refuse(400, `Unsupported api-version ${String(apiVersion)}; expected ${API_VERSION}.`);
    else if (!resource) refuse(400, 'The resource parameter is required.');
    else if (clientId === undefined ? !systemAssigned : !userAssigned.has(clientId.toLowerCase())) {
      refuse(400, 'Unable to load the proper Managed Identity.');
    } else {
      const token = `mi-token-${randomBytes(12).toString('hex')}`;
      issuedTokens.add(token);
      send(200, {
        access_token: token,
        expires_on: String(Math.floor(Date.now() / 1000) + tokenSeconds),
        resource,
        token_type: 'Bearer',
        client_id: clientId ?? SYSTEM_ASSIGNED_CLIENT_ID,
      });
    }
  };

  const server = createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}${PATH}`;

  return {
    endpoint,
    header,
    requests,
    issued: (token) => issuedTokens.has(token),
    applyToProcessEnv: () => {
      const previous = new Map(OTHER_IDENTITY_VARIABLES.concat(['IDENTITY_ENDPOINT', 'IDENTITY_HEADER', 'AZURE_TOKEN_CREDENTIALS']).map((name) => [name, process.env[name]]));
      for (const name of OTHER_IDENTITY_VARIABLES) delete process.env[name];
      process.env['IDENTITY_ENDPOINT'] = endpoint;
      process.env['IDENTITY_HEADER'] = header;
      process.env['AZURE_TOKEN_CREDENTIALS'] = 'prod';
      return () => {
        for (const [name, value] of previous) {
          if (value === undefined) delete process.env[name];
          else process.env[name] = value;
        }
      };
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
