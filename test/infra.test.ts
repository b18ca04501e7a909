/**
 * The deployment template against the app itself. Reads infra/main.json (infra/main.bicep compiled; CI
 * checks that `bicep build` reproduces it, so it cannot go stale) and the app's source, so a setting
 * added to the app, a role assigned wider, or an alert over a log line the app no longer writes fails
 * here, on any machine, without Bicep or a subscription.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repo = fileURLToPath(new URL('..', import.meta.url));

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

function isObject(value: Json | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `value[path[0]][path[1]]...`, failing with the path when a step is missing. */
function at(value: Json | undefined, ...path: string[]): Json {
  let current = value;
  for (const [index, step] of path.entries()) {
    if (!isObject(current) || !(step in current)) throw new Error(`template has no ${path.slice(0, index + 1).join('.')}`);
    current = current[step];
  }
  if (current === undefined) throw new Error(`template has no ${path.join('.')}`);
  return current;
}

function objectAt(value: Json | undefined, ...path: string[]): JsonObject {
  const found = at(value, ...path);
  if (!isObject(found)) throw new Error(`${path.join('.')} is not an object`);
  return found;
}

function stringAt(value: Json | undefined, ...path: string[]): string {
  const found = at(value, ...path);
  if (typeof found !== 'string') throw new Error(`${path.join('.')} is not a string`);
  return found;
}

const main = JSON.parse(readFileSync(join(repo, 'infra/main.json'), 'utf8')) as JsonObject;

/** The documented built-in roles (Microsoft's "Azure built-in roles" reference), by name. */
const DOCUMENTED_ROLES: Readonly<Record<string, string>> = {
  'Storage Blob Data Contributor': 'ba92f5b4-2d11-453d-a403-e96b0029c9fe',
  'Storage Blob Data Owner': 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b',
  'Storage Queue Data Contributor': '974c5e8b-45b9-4653-ba55-5f855dd0fb88',
  'Storage Table Data Contributor': '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3',
  'Key Vault Secrets User': '4633458b-17de-408a-b874-0445c86b69e6',
  'Key Vault Secrets Officer': 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7',
  'Monitoring Metrics Publisher': '3913510d-42f4-4e42-8a64-420c390055eb',
};
const roleName = (id: string): string => Object.entries(DOCUMENTED_ROLES).find(([, guid]) => guid === id)?.[0] ?? `unknown role ${id}`;

/** The narrowest scope each role is stated for: the resource type it is assigned on, and in which module. */
const STATED_SCOPES: Readonly<Record<string, { readonly scopeType: string; readonly module: string }>> = {
  'Storage Blob Data Contributor': { scopeType: 'Microsoft.Storage/storageAccounts/blobServices/containers', module: 'target-storage' },
  'Storage Blob Data Owner': { scopeType: 'Microsoft.Storage/storageAccounts', module: 'host-storage' },
  'Storage Queue Data Contributor': { scopeType: 'Microsoft.Storage/storageAccounts', module: 'host-storage' },
  'Storage Table Data Contributor': { scopeType: 'Microsoft.Storage/storageAccounts', module: 'host-storage' },
  'Key Vault Secrets User': { scopeType: 'Microsoft.KeyVault/vaults', module: 'key-vault' },
  'Key Vault Secrets Officer': { scopeType: 'Microsoft.KeyVault/vaults', module: 'key-vault' },
  'Monitoring Metrics Publisher': { scopeType: 'Microsoft.Insights/components', module: 'monitoring' },
};

interface TemplateResource {
  /** The deployment (module) name, or `main` for the top-level template. */
  readonly module: string;
  readonly symbol: string;
  readonly template: JsonObject;
  readonly resource: JsonObject;
}

/** Every resource of the template and of its modules (nested deployments), with the template it sits in. */
function allResources(template: JsonObject, module = 'main'): TemplateResource[] {
  const resources = at(template, 'resources');
  const entries: [string, Json][] = Array.isArray(resources) ? resources.map((resource, index) => [String(index), resource]) : Object.entries(isObject(resources) ? resources : {});
  return entries.flatMap(([symbol, resource]) => {
    if (!isObject(resource)) return [];
    const own: TemplateResource = { module, symbol, template, resource };
    if (resource['type'] !== 'Microsoft.Resources/deployments') return [own];
    return [own, ...allResources(objectAt(resource, 'properties', 'template'), stringAt(resource, 'name'))];
  });
}

const resources = allResources(main);
const ofType = (type: string): TemplateResource[] => resources.filter((entry) => entry.resource['type'] === type);
const moduleDeployment = (name: string): JsonObject => {
  const found = resources.find((entry) => entry.resource['type'] === 'Microsoft.Resources/deployments' && entry.resource['name'] === name);
  if (found === undefined) throw new Error(`no module ${name}`);
  return found.resource;
};
const moduleParameter = (module: string, parameter: string): Json => at(moduleDeployment(module), 'properties', 'parameters', parameter, 'value');

/**
 * The values an ARM expression over the template's variables stands for: `[variables('a').b]`, and
 * `[variables('list')[copyIndex()]]` (every element). Literal values stand for themselves.
 */
function variableValues(template: JsonObject, expression: string): string[] {
  const match = /^\[variables\('(\w+)'\)(?:\.(\w+)|\[copyIndex\(\)\])?\]$/.exec(expression);
  if (match === null) return [expression];
  const value = at(template, 'variables', match[1] ?? '');
  const picked = match[2] === undefined ? value : at(value, match[2]);
  const values = Array.isArray(picked) ? picked : [picked];
  return values.flatMap((item) => (typeof item === 'string' ? variableValues(template, item) : []));
}

/** The role GUIDs one role-assignment resource (or copy loop) assigns. */
function assignedRoles(entry: TemplateResource): string[] {
  const definition = stringAt(entry.resource, 'properties', 'roleDefinitionId');
  const match = /^\[subscriptionResourceId\('Microsoft\.Authorization\/roleDefinitions', (.+)\)\]$/.exec(definition);
  if (match === null) throw new Error(`${entry.module}/${entry.symbol}: roleDefinitionId ${definition} is not a built-in role by ID`);
  return variableValues(entry.template, `[${match[1]}]`);
}

/** The resource type of a role assignment's scope; undefined when it has none (the whole resource group). */
function scopeType(entry: TemplateResource): string | undefined {
  const scope = entry.resource['scope'];
  if (typeof scope !== 'string') return undefined;
  return /^\[resourceId\('([^']+)'/.exec(scope)?.[1] ?? `unparsed scope ${scope}`;
}

/** Source files of the app (src/**), without tests. */
function sourceFiles(dir = join(repo, 'src')): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}
const appSource = sourceFiles().map((file) => ({ file, text: readFileSync(file, 'utf8') }));

/**
 * Every setting the app reads: each quoted name with a settings prefix in src/ (the config readers,
 * secrets, the functions). Comments are left out: a name in a comment is not read.
 */
function settingsTheAppReads(): Set<string> {
  const names = new Set<string>();
  const setting = /(['"])((?:AWS|AZURE|OCI|KEY_VAULT|SECRETS|SYNC)_[A-Z0-9_]+|AzureWebJobs\w+|AzureFunctionsJobHost__\w+|APPLICATIONINSIGHTS_\w+|WEBSITE_\w+)\1/g;
  for (const { text } of appSource) {
    const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
    for (const match of code.matchAll(setting)) names.add(match[2] ?? '');
  }
  return names;
}

const appModule = 'function-app';
const appTemplate = objectAt(moduleDeployment(appModule), 'properties', 'template');
const settingsSet = Object.keys(objectAt(appTemplate, 'variables', 'settings'));
const overrides = Object.keys(objectAt(main, 'definitions', 'appSettingOverrides', 'properties'));
const leftUnset = Object.keys(objectAt(main, 'metadata', 'settingsLeftUnset'));

describe('the deployment template (infra/main.json) against the app', () => {
  it('sets every setting the app reads, offers it as an override, or says why it is left unset', () => {
    const reads = settingsTheAppReads();
    // The reader of the source must find the settings (else this test could not fail).
    expect(reads).toContain('AWS_S3_BUCKET');
    expect(reads).toContain('SYNC_SCHEDULE');
    expect(reads).toContain('AzureFunctionsJobHost__functionTimeout');
    const covered = new Set([...settingsSet, ...overrides, ...leftUnset]);
    expect([...reads].filter((name) => !covered.has(name)).sort()).toEqual([]);
  });

  it('lists no override or unset setting the app does not read, and sets none of the overrides itself', () => {
    const reads = settingsTheAppReads();
    expect([...overrides, ...leftUnset].filter((name) => !reads.has(name)).sort()).toEqual([]);
    expect(settingsSet.filter((name) => overrides.includes(name) || leftUnset.includes(name))).toEqual([]);
  });

  it('describes each override with the default and range the app applies', () => {
    const literal = (text: string | undefined): number | undefined => (text !== undefined && /^[\d_]+$/.test(text) ? Number(text.replaceAll('_', '')) : undefined);
    let checked = 0;
    for (const { text } of appSource) {
      for (const match of text.matchAll(/read\.integer\('(\w+)', \{ default: ([^,]+), min: ([^,]+), max: ([^}]+?) \}/g)) {
        const [, name = '', fallback, min, max] = match;
        if (!overrides.includes(name)) continue;
        const description = stringAt(main, 'definitions', 'appSettingOverrides', 'properties', name, 'metadata', 'description');
        const [low, high, value] = [literal(min), literal(max), literal(fallback)];
        if (value !== undefined) expect(description, name).toContain(`default ${value}`);
        if (low !== undefined && high !== undefined) expect(description, name).toContain(`${low}-${high}`);
        checked += 1;
      }
      for (const match of text.matchAll(/read\.choice\('(\w+)', [^)]*, '([^']+)'\)/g)) {
        const [, name = '', fallback] = match;
        if (!overrides.includes(name)) continue;
        expect(stringAt(main, 'definitions', 'appSettingOverrides', 'properties', name, 'metadata', 'description'), name).toContain(`default ${fallback}`);
        checked += 1;
      }
    }
    expect(checked).toBeGreaterThan(10);
  });

  it('applies the overrides on top of the settings it sets, so each keeps the app default unless given', () => {
    const appSettings = ofType('Microsoft.Web/sites/config').find((entry) => entry.module === appModule);
    expect(appSettings?.resource['name']).toBe("[format('{0}/{1}', parameters('name'), 'appsettings')]");
    expect(appSettings?.resource['properties']).toBe("[union(variables('settings'), parameters('overrides'))]");
    expect(moduleParameter(appModule, 'overrides')).toBe("[parameters('appSettings')]");
    expect(at(main, 'parameters', 'appSettings', 'defaultValue')).toEqual({});
  });

  it('reaches host storage with the identity, on an account with shared-key access off', () => {
    const settings = objectAt(appTemplate, 'variables', 'settings');
    expect(settings['AzureWebJobsStorage__credential']).toBe('managedidentity');
    expect(settings['AzureWebJobsStorage__clientId']).toBe("[parameters('identityClientId')]");
    expect(settings['AZURE_CLIENT_ID']).toBe("[parameters('identityClientId')]");
    expect(Object.keys(settings)).not.toContain('AzureWebJobsStorage');
    const hostAccount = ofType('Microsoft.Storage/storageAccounts').find((entry) => entry.module === 'host-storage');
    expect(at(hostAccount?.resource, 'properties', 'allowSharedKeyAccess')).toBe(false);
    expect(moduleParameter(appModule, 'hostStorageName')).toBe("[reference('hostStorage').outputs.name.value]");
  });

  it('runs on Flex Consumption (FC1) with Node.js 22, under the user-assigned identity only', () => {
    const plan = ofType('Microsoft.Web/serverfarms')[0]?.resource;
    expect(at(plan, 'sku', 'name')).toBe('FC1');
    const site = ofType('Microsoft.Web/sites')[0]?.resource;
    expect(at(site, 'properties', 'functionAppConfig', 'runtime')).toEqual({ name: 'node', version: '22' });
    expect(at(site, 'identity', 'type')).toBe('UserAssigned');
    expect(at(site, 'properties', 'functionAppConfig', 'deployment', 'storage', 'authentication', 'type')).toBe('UserAssignedIdentity');
    expect(Object.keys(objectAt(appTemplate, 'variables', 'settings'))).not.toContain('FUNCTIONS_WORKER_RUNTIME');
  });

  it('assigns only documented built-in roles, each at the narrowest scope stated for it', () => {
    // infra/modules/roles.bicep, the one table of role IDs, as compiled into a module.
    const builtInRoles = Object.values(objectAt(moduleDeployment('host-storage'), 'properties', 'template', 'variables', 'builtInRoles'));
    expect(builtInRoles.map((id) => roleName(String(id))).sort()).toEqual(Object.keys(DOCUMENTED_ROLES).sort());

    const assignments = ofType('Microsoft.Authorization/roleAssignments');
    const seen = assignments.flatMap((entry) => assignedRoles(entry).map((role) => ({ role: roleName(role), module: entry.module, scopeType: scopeType(entry) })));
    for (const assignment of seen) {
      expect(assignment, `${assignment.role} in ${assignment.module}`).toEqual({ role: assignment.role, ...STATED_SCOPES[assignment.role] });
    }
    expect(new Set(seen.map((assignment) => assignment.role))).toEqual(new Set(Object.keys(DOCUMENTED_ROLES)));
  });

  it('gives Blob Data Contributor on the target container and the lock container the app is told to use, and on nothing else', () => {
    const [containerRoles] = ofType('Microsoft.Authorization/roleAssignments').filter((entry) => entry.module === 'target-storage');
    expect(containerRoles?.resource['scope']).toBe("[resourceId('Microsoft.Storage/storageAccounts/blobServices/containers', parameters('accountName'), 'default', createArray(parameters('containerName'), parameters('lockContainerName'))[copyIndex()])]");
    expect(moduleParameter('target-storage', 'containerName')).toBe("[parameters('targetContainerName')]");
    expect(moduleParameter('target-storage', 'lockContainerName')).toBe("[parameters('lockContainerName')]");
    const settings = objectAt(appTemplate, 'variables', 'settings');
    expect(settings['AZURE_STORAGE_CONTAINER']).toBe("[parameters('targetContainerName')]");
    expect(settings['SYNC_LOCK_CONTAINER']).toBe("[parameters('lockContainerName')]");
    expect(moduleParameter(appModule, 'targetContainerName')).toBe("[parameters('targetContainerName')]");
    expect(moduleParameter(appModule, 'lockContainerName')).toBe("[parameters('lockContainerName')]");
    expect(at(main, 'parameters', 'lockContainerName', 'defaultValue')).toBe('artifacts-sync-locks');
  });

  it('gives every role to the app\'s identity, except the optional secrets writer on the vault', () => {
    for (const entry of ofType('Microsoft.Authorization/roleAssignments')) {
      const principal = stringAt(entry.resource, 'properties', 'principalId');
      const expected = entry.symbol === 'secretsOfficer' ? "[parameters('vaultWriterPrincipalId')]" : "[parameters('principalId')]";
      expect(principal, `${entry.module}/${entry.symbol}`).toBe(expected);
    }
    for (const module of ['host-storage', 'target-storage', 'key-vault', 'monitoring']) {
      expect(moduleParameter(module, 'principalId'), module).toBe("[reference('identity').principalId]");
    }
  });

  it('keeps the keys in a vault in RBAC mode with purge protection, under the names the app reads by default', () => {
    const vault = ofType('Microsoft.KeyVault/vaults')[0]?.resource;
    expect(at(vault, 'properties', 'enableRbacAuthorization')).toBe(true);
    expect(at(vault, 'properties', 'enablePurgeProtection')).toBe(true);
    const secretsSource = readFileSync(join(repo, 'src/secrets.ts'), 'utf8');
    const defaultNames = [...secretsSource.matchAll(/defaultName: '([^']+)'/g)].map((match) => match[1]);
    expect(defaultNames.length).toBeGreaterThan(0);
    expect(Object.keys(objectAt(moduleDeployment('key-vault'), 'properties', 'parameters', 'secretValues', 'value')).sort()).toEqual(defaultNames.sort());
    expect(objectAt(appTemplate, 'variables', 'settings')['KEY_VAULT_URL']).toBe("[parameters('keyVaultUri')]");
  });

  it('takes the key values only as secure parameters with an empty default, skipped when empty', () => {
    for (const name of ['awsAccessKeyId', 'awsSecretAccessKey', 'ociAccessKeyId', 'ociSecretKey']) {
      expect(at(main, 'parameters', name), name).toMatchObject({ type: 'securestring', defaultValue: '' });
    }
    const secrets = ofType('Microsoft.KeyVault/vaults/secrets')[0]?.resource;
    expect(secrets?.['condition']).toBe("[not(empty(items(parameters('secretValues'))[copyIndex()].value))]");
  });

  it('gets every required parameter from the azd environment (infra/main.parameters.json), and no key', () => {
    const azdParameters = objectAt(JSON.parse(readFileSync(join(repo, 'infra/main.parameters.json'), 'utf8')) as JsonObject, 'parameters');
    const parameters = objectAt(main, 'parameters');
    expect(Object.keys(azdParameters).filter((name) => !(name in parameters))).toEqual([]);
    const required = Object.entries(parameters).filter(([, parameter]) => isObject(parameter) && !('defaultValue' in parameter)).map(([name]) => name);
    expect(required.filter((name) => !(name in azdParameters))).toEqual([]);
    const secure = Object.entries(parameters).filter(([, parameter]) => isObject(parameter) && parameter['type'] === 'securestring').map(([name]) => name);
    expect(secure.length).toBeGreaterThan(0);
    expect(Object.keys(azdParameters).filter((name) => secure.includes(name))).toEqual([]);
  });

  it('alerts on a failed timer run, on poison messages and on no complete run, over log lines the app writes', () => {
    const alerts = at(moduleDeployment('monitoring'), 'properties', 'template', 'variables', 'alerts');
    expect(Array.isArray(alerts)).toBe(true);
    const byName = new Map((Array.isArray(alerts) ? alerts : []).map((alert) => [stringAt(alert, 'name'), alert]));
    expect([...byName.keys()].sort()).toEqual(['poison-messages', 'run-not-completed', 'timer-run-failed']);

    const events = new Set(appSource.flatMap(({ text }) => [...text.matchAll(/event: '([a-z-]+)'/g)].map((match) => match[1])));
    for (const [name, alert] of byName) {
      const query = stringAt(alert, 'query');
      const queried = [...query.matchAll(/event\)? == "([a-z-]+)"/g)].map((match) => match[1]);
      for (const event of queried) expect(events, `${name} queries "${event}"`).toContain(event);
      if (name !== 'poison-messages') expect(queried.length, name).toBeGreaterThan(0);
    }
    expect(stringAt(byName.get('timer-run-failed'), 'query')).toContain('name == "syncTimer"');
    expect(stringAt(byName.get('poison-messages'), 'query')).toContain("Moving message to queue ''{0}-poison''");
    expect(stringAt(byName.get('run-not-completed'), 'operator')).toBe('LessThan');
    // The fields the queries read are the ones the app logs.
    const runSync = readFileSync(join(repo, 'src/functions/run-sync.ts'), 'utf8');
    expect(runSync).toMatch(/event: 'invocation-end',\s+trigger: request\.trigger,\s+status: outcome\.status,/);
    const run = readFileSync(join(repo, 'src/core/run.ts'), 'utf8');
    expect(run).toMatch(/event: 'run-start', provider: [^,]+, source: [^,]+, targets: [^,]+, dryRun \}/);
    expect(run).toMatch(/event: 'run-end', complete, failures,/);
  });
});
