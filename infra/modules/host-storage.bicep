// The Functions host's own storage account: host keys, timer schedule and locks, the deployment
// package (Flex Consumption), the object queue of the events endpoint and its poison queue. Shared-key
// access is off: the host and the app reach it with the user-assigned identity only.
import { builtInRoles } from 'roles.bicep'

param name string
param location string
param tags object
@description('Blob container holding the deployment package.')
param deploymentContainerName string
@description('The object queue (SYNC_QUEUE_NAME); the host moves a message that failed 5 times to <name>-poison.')
param queueName string
@description('Principal (object) ID of the app\'s user-assigned identity.')
param principalId string

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
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

  resource blobService 'blobServices' = {
    name: 'default'

    resource deploymentContainer 'containers' = {
      name: deploymentContainerName
    }
  }

  resource queueService 'queueServices' = {
    name: 'default'

    resource queue 'queues' = {
      name: queueName
    }

    resource poisonQueue 'queues' = {
      name: '${queueName}-poison'
    }
  }
}

// Blob, queue and table data roles, on this account only (the roles the Functions documentation lists
// for identity-based host storage).
var hostRoles = [
  builtInRoles.storageBlobDataOwner
  builtInRoles.storageQueueDataContributor
  builtInRoles.storageTableDataContributor
]

resource hostRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in hostRoles: {
    name: guid(account.id, principalId, role)
    scope: account
    properties: {
      principalId: principalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    }
  }
]

output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
