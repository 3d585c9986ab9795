// The image job service in Azure, for `azd up`: a resource group holding a Flex Consumption
// function app (Python 3.11) that runs as a user-assigned managed identity, its storage account
// (no shared keys), Application Insights on a Log Analytics workspace, a Key Vault for the
// secrets its app settings reference, and optionally an Azure OpenAI account with a gpt-image-2
// deployment and the Durable Task Scheduler. Every role the identity needs is in app/rbac.bicep;
// every app setting is in app/api.bicep. docs/azure.md explains each choice.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('The azd environment name: it names the resource group and seeds every resource name.')
param environmentName string

@minLength(1)
@description('Where everything goes (a region with Flex Consumption; docs/azure.md).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('The deploying user (azd sets it): may write the route key secret and read the images.')
param principalId string = ''

@description('The Durable backend: AzureStorage (queues and tables in the storage account) or DurableTaskScheduler.')
@allowed([
  'AzureStorage'
  'DurableTaskScheduler'
])
param durableBackend string = 'AzureStorage'

@description('The Durable Task Scheduler SKU, when it is the backend.')
@allowed([
  'Consumption'
  'Dedicated'
])
param schedulerSku string = 'Consumption'

@description('Create an Azure OpenAI account with a gpt-image-2 deployment, reached with the managed identity.')
param deployOpenAi bool = false

@description('Where the Azure OpenAI account goes (gpt-image-2 is offered in few regions); empty: location.')
param openAiLocation string = ''

@description('The gpt-image-2 model version to deploy.')
param imageModelVersion string = '2026-04-21'

@description('The deployment\'s capacity (GlobalStandard units).')
param imageCapacity int = 1

@description('Without deployOpenAi: the route\'s base URL, https://{resource}.openai.azure.com.')
param routeBaseUrl string = ''

@description('The route\'s deployment name.')
param routeDeployment string = 'gpt-image-2'

@description('Without deployOpenAi: key (a Key Vault secret, image-route-key) or entra (the managed identity needs Cognitive Services OpenAI User on that resource).')
@allowed([
  'key'
  'entra'
])
param routeAuth string = 'key'

@secure()
@description('Without deployOpenAi and with routeAuth key: the route\'s key, stored as the Key Vault secret image-route-key. Empty: set the secret after provisioning (README).')
param routeKey string = ''

@secure()
@description('The key of the HMAC behind job ids (IMAGE_JOB_ID_SECRET), stored in Key Vault; azd generates it once per environment.')
@metadata({
  azd: {
    type: 'generate'
    config: {
      length: 48
      noSpecial: true
    }
  }
})
param jobIdSecret string

@description('Lifetime of the read-only image links in status answers (IMAGES_LINK_TTL_S), seconds.')
@minValue(60)
param linkTtlSeconds int = 3600

@description('Origins allowed to call the API from a browser, comma-separated (empty: none).')
param corsAllowedOrigins string = ''

@description('An Entra app registration\'s client id: turns on App Service Authentication (Easy Auth) in front of the API. Empty: function keys only.')
param authClientId string = ''

@description('Flex Consumption: the most instances the app may scale out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Flex Consumption: memory per instance, MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    durableBackend: durableBackend
    schedulerSku: schedulerSku
    deployOpenAi: deployOpenAi
    openAiLocation: empty(openAiLocation) ? location : openAiLocation
    imageModelVersion: imageModelVersion
    imageCapacity: imageCapacity
    routeBaseUrl: routeBaseUrl
    routeDeployment: routeDeployment
    routeAuth: routeAuth
    routeKey: routeKey
    jobIdSecret: jobIdSecret
    linkTtlSeconds: linkTtlSeconds
    corsAllowedOrigins: corsAllowedOrigins
    authClientId: authClientId
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    identityPrincipalId: api.outputs.identityPrincipalId
    principalId: principalId
    storageAccountName: api.outputs.storageAccountName
    keyVaultName: api.outputs.keyVaultName
    appInsightsName: api.outputs.appInsightsName
    durableBackend: durableBackend
    schedulerName: api.outputs.schedulerName
    deployOpenAi: deployOpenAi
    openAiName: api.outputs.openAiName
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_NAME string = api.outputs.functionAppName
output SERVICE_API_NAME string = api.outputs.functionAppName
output SERVICE_API_URI string = api.outputs.functionAppUrl
output AZURE_KEY_VAULT_NAME string = api.outputs.keyVaultName
output AZURE_STORAGE_ACCOUNT_NAME string = api.outputs.storageAccountName
output APPLICATIONINSIGHTS_NAME string = api.outputs.appInsightsName
