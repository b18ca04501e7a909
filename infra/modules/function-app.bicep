// The Function App: Flex Consumption (FC1), Node.js 22, the user-assigned identity for everything (host
// storage, deployment package, target, Key Vault, Application Insights), and its app settings.

@export()
@sealed()
@description('Settings of the mirror that keep the app\'s default unless given here (README settings table). Values are strings, as app settings are.')
type appSettingOverrides = {
  @description('Source endpoint override (another S3-compatible source); default AWS.')
  AWS_S3_ENDPOINT: string?
  @description('How long keys read from the vault are reused, 0-86400; default 300.')
  SECRETS_CACHE_SECONDS: string?
  @description('Objects transferred at once, 1-64; default 16.')
  SYNC_CONCURRENCY: string?
  @description('Part size for streamed objects in MB, 5-4000; default 5.')
  SYNC_PART_SIZE_MB: string?
  @description('Parts of one object in flight, 1-32; default 4.')
  SYNC_PART_CONCURRENCY: string?
  @description('Object bytes in memory at once across transfers in MB, 16-16384; default 64.')
  SYNC_MEMORY_MB: string?
  @description('auto, server-side or streaming; default auto.')
  SYNC_TRANSFER_MODE: string?
  @description('Objects up to this size in MB are pulled by Azure in one request, 1-5000; default 256.')
  SYNC_SERVER_SIDE_SINGLE_MAX_MB: string?
  @description('Objects up to this size in MB whose source ETag is their MD5 stream to each target in one request, checked there against that MD5, 5-5000; default 256.')
  SYNC_SINGLE_REQUEST_MAX_MB: string?
  @description('Longest lifetime of the presigned URLs Azure pulls from (each lives as long as its pull may take), 60-604800 s; default 3600.')
  SYNC_PRESIGN_TTL_SECONDS: string?
  @description('Most deletions one run may make per target, 0-100000000; default 1000.')
  SYNC_MAX_DELETE_COUNT: string?
  @description('Most deletions one run may make, as a share of the target, 0-100; default 50.')
  SYNC_MAX_DELETE_PERCENT: string?
  @description('true lets an empty source listing empty a target; default false.')
  SYNC_ALLOW_EMPTY_SOURCE: string?
  @description('Lock lease length, 15-60 s; default 60.')
  SYNC_LOCK_LEASE_SECONDS: string?
  @description('Attempts per request, 1-20; default 5.')
  SYNC_RETRY_ATTEMPTS: string?
  @description('How long one request waits out 429/503 answers (honouring Retry-After), and how long a target must keep failing before it is taken as down, 0-3600 s; default 60.')
  SYNC_RETRY_BUDGET_SECONDS: string?
  @description('true makes archived source objects (not mirrored) fail the run; default false (reported only).')
  SYNC_FAIL_ON_ARCHIVED: string?
  @description('A run in which an object is deferred for the Nth time in a row fails, 1-1000; default 10.')
  SYNC_MAX_DEFERRED_RUNS: string?
  @description('A request that receives nothing for this long is retried, 1-3600 s; default 60.')
  SYNC_REQUEST_TIMEOUT_SECONDS: string?
  @description('NCRONTAB schedule of syncTimer, with seconds, UTC; default 0 0 * * * * (hourly).')
  SYNC_SCHEDULE: string?
  @description('Deadline of an HTTP run, 10-220 s; default 200.')
  SYNC_HTTP_DEADLINE_SECONDS: string?
  @description('Deadline of a timer run, from 10 s to the function timeout less 10 s; default the timeout less 60 s, at most 540.')
  SYNC_TIMER_DEADLINE_SECONDS: string?
  @description('Rolling window over which event deletions per target are counted (at most SYNC_MAX_DELETE_COUNT), 60-604800 s; default 3600.')
  SYNC_EVENT_DELETE_WINDOW_SECONDS: string?
  @description('A run fans its transfers out onto the queue from this many transfers (all targets), 1-1000000000; default 2000.')
  SYNC_FAN_OUT_MIN_TRANSFERS: string?
  @description('A run fans its transfers out onto the queue from this many MiB to transfer, 1-1000000000; default 10240.')
  SYNC_FAN_OUT_MIN_MB: string?
  @description('Most keys in one fan-out message, 1-2000; default 100.')
  SYNC_FAN_OUT_KEYS_PER_MESSAGE: string?
  @description('Most object MiB in one fan-out message, 1-1000000; default 2048.')
  SYNC_FAN_OUT_MB_PER_MESSAGE: string?
  @description('POST /api/sync answers 200 with the report when the run ends within this many ms, else 202 with the status URL, 0-10000; default 800.')
  SYNC_HTTP_REPLY_WITHIN_MS: string?
  @description('The host\'s function timeout, hh:mm:ss; default 00:10:00 (host.json).')
  AzureFunctionsJobHost__functionTimeout: string?
}

param name string
param location string
param tags object
param planName string
@description('Resource ID of the user-assigned identity.')
param identityId string
@description('Client ID of the user-assigned identity.')
param identityClientId string
param hostStorageName string
param hostStorageBlobEndpoint string
param deploymentContainerName string
param maximumInstanceCount int
param instanceMemoryMB int
param appInsightsConnectionString string

param awsS3Bucket string
param awsRegion string
param targetBlobEndpoint string
param targetContainerName string
param lockContainerName string
param ociS3Endpoint string
param ociRegion string
param ociBucket string
param keyVaultUri string
param queueName string
param overrides appSettingOverrides

// Every setting the template sets itself; test/infra.test.ts checks these, the overrides above and the
// settings main.bicep lists as left unset, against every setting the app reads.
var settings = {
  // Host storage through the identity (no connection string, shared key off).
  AzureWebJobsStorage__accountName: hostStorageName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // The identity the app's own clients use (DefaultAzureCredential), and no developer sign-ins in Azure.
  AZURE_CLIENT_ID: identityClientId
  AZURE_TOKEN_CREDENTIALS: 'ManagedIdentityCredential'
  AWS_S3_BUCKET: awsS3Bucket
  AWS_REGION: awsRegion
  AZURE_STORAGE_ACCOUNT_URL: targetBlobEndpoint
  AZURE_STORAGE_CONTAINER: targetContainerName
  SYNC_LOCK_CONTAINER: lockContainerName
  OCI_S3_ENDPOINT: ociS3Endpoint
  OCI_REGION: ociRegion
  OCI_BUCKET: ociBucket
  KEY_VAULT_URL: keyVaultUri
  // The object queue of the events endpoint, in host storage.
  SYNC_QUEUE_NAME: queueName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  // azd finds the app to deploy to by this tag (azure.yaml service "app").
  tags: union(tags, { 'azd-service-name': 'app' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'node'
        version: '22'
      }
    }
  }

  resource appSettings 'config' = {
    name: 'appsettings'
    properties: union(settings, overrides)
  }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
