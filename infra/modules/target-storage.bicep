// The Azure target: the container the mirror writes and the container of the run locks, in an existing
// storage account (the usual case) or in a new one. The identity gets Storage Blob Data Contributor on
// each of the two containers, never on the account.
import { builtInRoles } from 'roles.bicep'

param accountName string
@description('true: create the account here; false: it exists already (in this deployment\'s resource group).')
param createAccount bool
param location string
param tags object
@description('The container mirrored into (AZURE_STORAGE_CONTAINER); created when missing.')
param containerName string
@description('The container of the run locks (SYNC_LOCK_CONTAINER); created here, since creating it at run time would need a role on the whole account.')
param lockContainerName string
@description('Principal (object) ID of the app\'s user-assigned identity.')
param principalId string

resource newAccount 'Microsoft.Storage/storageAccounts@2023-05-01' = if (createAccount) {
  name: accountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }
}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: accountName

  resource blobService 'blobServices' existing = {
    name: 'default'
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for container in [containerName, lockContainerName]: {
    parent: account::blobService
    name: container
    dependsOn: [newAccount]
  }
]

resource containerRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (container, index) in [containerName, lockContainerName]: {
    name: guid(containers[index].id, principalId, builtInRoles.storageBlobDataContributor)
    scope: containers[index]
    properties: {
      principalId: principalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.storageBlobDataContributor)
    }
  }
]

output blobEndpoint string = account.properties.primaryEndpoints.blob
