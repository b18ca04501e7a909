// The vault holding the AWS and OCI keys: Azure RBAC mode, purge protection on. The app's identity may
// read secrets (Key Vault Secrets User, on this vault only). Secret values come from secure parameters
// when given (never from a parameter file in git), or are set afterwards with `az keyvault secret set`;
// an empty value leaves the secret as it is.
import { builtInRoles } from 'roles.bicep'

param name string
param location string
param tags object
@description('Principal (object) ID of the app\'s user-assigned identity.')
param principalId string
@description('Optional: a user or group that may write secrets afterwards (Key Vault Secrets Officer on this vault). Empty: none.')
param vaultWriterPrincipalId string
@allowed(['User', 'Group', 'ServicePrincipal'])
param vaultWriterPrincipalType string

@description('Secret name -> value; an empty value is skipped.')
@secure()
param secretValues object

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enablePurgeProtection: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    publicNetworkAccess: 'Enabled'
  }
}

resource secrets 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = [
  for secret in items(secretValues): if (!empty(secret.value)) {
    parent: vault
    name: secret.key
    properties: {
      value: secret.value
    }
  }
]

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, builtInRoles.keyVaultSecretsUser)
  scope: vault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.keyVaultSecretsUser)
  }
}

resource secretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(vaultWriterPrincipalId)) {
  name: guid(vault.id, vaultWriterPrincipalId, builtInRoles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    principalId: vaultWriterPrincipalId
    principalType: vaultWriterPrincipalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.keyVaultSecretsOfficer)
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
