// artifacts-sync on Azure, in one resource group: the Function App (Flex Consumption, Node.js 22), its
// user-assigned identity, host storage, Key Vault, Application Insights with alerts, and the Azure target
// (an existing storage account, the usual case, or a new one). `azd up` or, without azd:
//   az deployment group create -g <rg> -f infra/main.bicep -p awsS3Bucket=... (docs/deploy.md)
// infra/main.json is this template compiled; CI checks that `bicep build` reproduces it.
import { appSettingOverrides } from 'modules/function-app.bicep'

metadata description = 'artifacts-sync: mirror an AWS S3 bucket to an Azure Blob container and an OCI bucket'

// Settings the app reads that this template deliberately leaves unset, and why (test/infra.test.ts
// fails on a setting the app reads that is neither set, nor an override, nor listed here).
metadata settingsLeftUnset = {
  AWS_ACCESS_KEY_ID: 'read from Key Vault (KEY_VAULT_URL), secret aws-access-key-id'
  AWS_SECRET_ACCESS_KEY: 'read from Key Vault (KEY_VAULT_URL), secret aws-secret-access-key'
  AWS_SESSION_TOKEN: 'temporary credentials only; not used by a deployed app'
  AWS_DEFAULT_REGION: 'fallback of AWS_REGION, which is set'
  OCI_ACCESS_KEY_ID: 'read from Key Vault (KEY_VAULT_URL), secret oci-access-key-id'
  OCI_SECRET_KEY: 'read from Key Vault (KEY_VAULT_URL), secret oci-secret-key'
  AZURE_STORAGE_CONNECTION_STRING: 'local runs (Azurite); in Azure the identity uses AZURE_STORAGE_ACCOUNT_URL'
  SYNC_DEADLINE_SECONDS: 'CLI only; the functions use SYNC_HTTP_DEADLINE_SECONDS and SYNC_TIMER_DEADLINE_SECONDS'
  KEY_VAULT_SECRET_AWS_ACCESS_KEY_ID: 'the template creates the secret under the app\'s default name'
  KEY_VAULT_SECRET_AWS_SECRET_ACCESS_KEY: 'the template creates the secret under the app\'s default name'
  KEY_VAULT_SECRET_AWS_SESSION_TOKEN: 'temporary credentials only; not used by a deployed app'
  KEY_VAULT_SECRET_OCI_ACCESS_KEY_ID: 'the template creates the secret under the app\'s default name'
  KEY_VAULT_SECRET_OCI_SECRET_KEY: 'the template creates the secret under the app\'s default name'
}

@minLength(1)
@maxLength(20)
@description('A short name for this deployment, part of every resource name (azd: the environment name).')
param environmentName string = 'artifacts-sync'

@description('Region of every resource created here.')
param location string = resourceGroup().location

// The source
@description('AWS_S3_BUCKET: the source bucket.')
param awsS3Bucket string
@description('AWS_REGION: the source region, e.g. eu-west-1.')
param awsRegion string

// The Azure target
@description('Existing storage account of the Azure target (the usual case). Empty: a new account is created here.')
param targetStorageAccountName string = ''
@description('Resource group of that existing account (same subscription). Empty: this deployment\'s.')
param targetStorageResourceGroupName string = ''
@description('AZURE_STORAGE_CONTAINER: the container mirrored into; created when missing.')
param targetContainerName string
@description('SYNC_LOCK_CONTAINER: the container of the run locks, in the target account; created when missing.')
param lockContainerName string = 'artifacts-sync-locks'

// The OCI target
@description('OCI_S3_ENDPOINT: https://<namespace>.compat.objectstorage.<region>.oraclecloud.com')
param ociS3Endpoint string
@description('OCI_REGION: e.g. eu-frankfurt-1.')
param ociRegion string
@description('OCI_BUCKET: the target bucket.')
param ociBucket string

// Keys: secure parameters, or empty to set them afterwards (docs/deploy.md). Never in a parameter file in git.
@secure()
@description('AWS access key ID, stored as Key Vault secret aws-access-key-id. Empty: leave the secret as it is.')
param awsAccessKeyId string = ''
@secure()
@description('AWS secret access key, stored as aws-secret-access-key. Empty: leave the secret as it is.')
param awsSecretAccessKey string = ''
@secure()
@description('OCI customer secret key ID, stored as oci-access-key-id. Empty: leave the secret as it is.')
param ociAccessKeyId string = ''
@secure()
@description('OCI customer secret key, stored as oci-secret-key. Empty: leave the secret as it is.')
param ociSecretKey string = ''
@description('Optional: object ID of a user or group allowed to set the secrets afterwards (Key Vault Secrets Officer on the vault).')
param vaultWriterPrincipalId string = ''
@allowed(['User', 'Group', 'ServicePrincipal'])
param vaultWriterPrincipalType string = 'User'

// The app
@description('SYNC_QUEUE_NAME: the object queue of the events endpoint, in host storage.')
param queueName string = 'artifacts-sync-objects'
@description('Settings that keep the app\'s default unless given, e.g. {"SYNC_SCHEDULE": "0 30 2 * * *"}.')
param appSettings appSettingOverrides = {}
@minValue(40)
@maxValue(1000)
@description('Flex Consumption: most instances at once.')
param maximumInstanceCount int = 40
@allowed([512, 2048, 4096])
@description('Flex Consumption: memory per instance, MB.')
param instanceMemoryMB int = 2048

// Alerts
@minValue(1)
@maxValue(48)
@description('Alert when no complete run of all targets has ended for this many hours.')
param runNotCompletedHours int = 6
@description('Optional e-mail address for the alerts.')
param alertEmail string = ''

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = { 'azd-env-name': environmentName, application: 'artifacts-sync' }
var createTargetAccount = empty(targetStorageAccountName)
var targetResourceGroupName = createTargetAccount || empty(targetStorageResourceGroupName) ? resourceGroup().name : targetStorageResourceGroupName
var deploymentContainerName = 'app-package'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${environmentName}-id-${resourceToken}'
  location: location
  tags: tags
}

module hostStorage 'modules/host-storage.bicep' = {
  name: 'host-storage'
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    queueName: queueName
    principalId: identity.properties.principalId
  }
}

module target 'modules/target-storage.bicep' = {
  name: 'target-storage'
  scope: resourceGroup(targetResourceGroupName)
  params: {
    accountName: createTargetAccount ? 'sttarget${resourceToken}' : targetStorageAccountName
    createAccount: createTargetAccount
    location: location
    tags: tags
    containerName: targetContainerName
    lockContainerName: lockContainerName
    principalId: identity.properties.principalId
  }
}

module vault 'modules/key-vault.bicep' = {
  name: 'key-vault'
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: tags
    principalId: identity.properties.principalId
    vaultWriterPrincipalId: vaultWriterPrincipalId
    vaultWriterPrincipalType: vaultWriterPrincipalType
    // The names the app reads by default (src/secrets.ts).
    secretValues: {
      'aws-access-key-id': awsAccessKeyId
      'aws-secret-access-key': awsSecretAccessKey
      'oci-access-key-id': ociAccessKeyId
      'oci-secret-key': ociSecretKey
    }
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: tags
    workspaceName: '${environmentName}-log-${resourceToken}'
    appInsightsName: '${environmentName}-appi-${resourceToken}'
    principalId: identity.properties.principalId
    queueName: queueName
    runNotCompletedHours: runNotCompletedHours
    alertEmail: alertEmail
  }
}

module app 'modules/function-app.bicep' = {
  name: 'function-app'
  params: {
    name: '${environmentName}-func-${resourceToken}'
    location: location
    tags: tags
    planName: '${environmentName}-plan-${resourceToken}'
    identityId: identity.id
    identityClientId: identity.properties.clientId
    hostStorageName: hostStorage.outputs.name
    hostStorageBlobEndpoint: hostStorage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainerName
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    appInsightsConnectionString: monitoring.outputs.connectionString
    awsS3Bucket: awsS3Bucket
    awsRegion: awsRegion
    targetBlobEndpoint: target.outputs.blobEndpoint
    targetContainerName: targetContainerName
    lockContainerName: lockContainerName
    ociS3Endpoint: ociS3Endpoint
    ociRegion: ociRegion
    ociBucket: ociBucket
    keyVaultUri: vault.outputs.uri
    queueName: queueName
    overrides: appSettings
  }
}

output AZURE_FUNCTION_APP_NAME string = app.outputs.name
output AZURE_FUNCTION_APP_HOST string = app.outputs.defaultHostName
output AZURE_KEY_VAULT_NAME string = vault.outputs.name
output AZURE_APP_INSIGHTS_NAME string = monitoring.outputs.appInsightsName
output AZURE_IDENTITY_CLIENT_ID string = identity.properties.clientId
