// The built-in role definitions this template assigns, in one place. IDs as listed in Microsoft's
// "Azure built-in roles" reference (storage, security and monitor categories); test/infra.test.ts
// checks every assignment against this table and its scope.

@export()
@description('Built-in role definition IDs (the GUID, the same in every subscription).')
var builtInRoles = {
  // Target container and lock container: read, write, delete blobs; scoped to each container.
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  // Host storage: the Functions host's blobs (keys, timer schedule, locks, deployment package).
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  // Host storage: the object queue and its poison queue.
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  // Host storage: tables (host diagnostics, run status).
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  // The vault: read secret values.
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  // The vault, optional, for the person who deploys: write secret values afterwards.
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  // Application Insights: send telemetry with the identity (local auth is off).
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}
