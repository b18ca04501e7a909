// Logs and alerts: Application Insights on a Log Analytics workspace, telemetry sent with the app's
// identity (local auth off), and three log alerts over the app's structured log lines (one JSON object
// per line in `traces.message`, see docs/operations.md): a failed timer run, messages moved to the
// poison queue, and no complete run for some hours.
import { builtInRoles } from 'roles.bicep'

param location string
param tags object
param workspaceName string
param appInsightsName string
@description('Principal (object) ID of the app\'s user-assigned identity.')
param principalId string
@description('The object queue (SYNC_QUEUE_NAME): the host moves a message that failed 5 times to <name>-poison.')
param queueName string
@minValue(1)
@maxValue(48)
@description('Alert when no complete, non-dry run of all targets has ended for this many hours.')
param runNotCompletedHours int
@description('Optional e-mail address the alerts are sent to. Empty: alerts show in the portal only.')
param alertEmail string

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, builtInRoles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', builtInRoles.monitoringMetricsPublisher)
  }
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: '${appInsightsName}-alerts'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'artsync'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// Each alert: a query over the app's log lines, when it fires (rows compared with a threshold), how often.
var alerts = [
  {
    name: 'timer-run-failed'
    displayName: 'artifacts-sync: a timer run failed'
    description: 'syncTimer ended with failures or could not start (its invocation-end line has a status other than 200 or 409), or the host recorded the invocation as failed (e.g. the function timeout).'
    severity: 1
    frequency: 'PT15M'
    window: 'PT15M'
    operator: 'GreaterThan'
    threshold: 0
    query: '''
union
  (traces
   | extend e = parse_json(message)
   | where tostring(e.event) == "invocation-end" and tostring(e.trigger) == "timer" and toint(e.status) !in (200, 409)
   | project timestamp, invocationId = tostring(e.invocationId)),
  (requests
   | where name == "syncTimer" and success == false
   | project timestamp, invocationId = tostring(customDimensions.InvocationId))
| summarize arg_min(timestamp, *) by invocationId
'''
  }
  {
    name: 'poison-messages'
    displayName: 'artifacts-sync: messages moved to the poison queue'
    description: 'The Functions host moved a message of ${queueName} to ${queueName}-poison after 5 failed attempts; see docs/operations.md to inspect and replay it.'
    severity: 2
    frequency: 'PT15M'
    window: 'PT15M'
    operator: 'GreaterThan'
    threshold: 0
    // A plain string: a multi-line string takes no interpolation.
    query: 'traces\n| where message contains "Moving message to queue \'${queueName}-poison\'"'
  }
  {
    name: 'run-not-completed'
    displayName: 'artifacts-sync: no complete run for ${runNotCompletedHours} h'
    description: 'No run of all targets (not a dry run) has ended complete and without failures in the last ${runNotCompletedHours} hours.'
    severity: 1
    frequency: 'PT1H'
    window: 'PT${runNotCompletedHours}H'
    operator: 'LessThan'
    threshold: 1
    query: '''
let lines = traces
  | extend e = parse_json(message)
  | extend event = tostring(e.event), invocationId = tostring(e.invocationId);
let realRuns = lines
  | where event == "run-start" and tobool(e.dryRun) == false and tostring(e.provider) == "all"
  | distinct invocationId;
lines
| where event == "run-end" and tobool(e.complete) == true and toint(e.failures) == 0
| where invocationId in (realRuns)
'''
  }
]

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for alert in alerts: {
    name: '${appInsightsName}-${alert.name}'
    location: location
    tags: tags
    properties: {
      displayName: alert.displayName
      description: alert.description
      severity: alert.severity
      enabled: true
      scopes: [appInsights.id]
      evaluationFrequency: alert.frequency
      windowSize: alert.window
      autoMitigate: true
      criteria: {
        allOf: [
          {
            query: alert.query
            timeAggregation: 'Count'
            operator: alert.operator
            threshold: alert.threshold
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      actions: {
        actionGroups: empty(alertEmail) ? [] : [actionGroup.id]
      }
    }
  }
]

output appInsightsName string = appInsights.name
output connectionString string = appInsights.properties.ConnectionString
