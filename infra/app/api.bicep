// Everything in the resource group but the role assignments (rbac.bicep): the identity, storage,
// monitoring, Key Vault, the Flex Consumption app with every app setting it reads, and the
// optional Azure OpenAI account and Durable Task Scheduler.
//
// The app settings are the *Settings variables below, and nothing else: tests/infra checks that
// each one is read by the app (rules/settings.py, rules/platform_settings.py) and that the app
// starts on them.
param location string
param tags object
param resourceToken string
param durableBackend string
param schedulerSku string
param deployOpenAi bool
param openAiLocation string
param imageModelVersion string
param imageCapacity int
param routeBaseUrl string
param routeDeployment string
param routeAuth string
@secure()
param routeKey string
@secure()
param jobIdSecret string
param linkTtlSeconds int
param corsAllowedOrigins string
param authClientId string
param maximumInstanceCount int
param instanceMemoryMB int

var useScheduler = durableBackend == 'DurableTaskScheduler'
// host.json's hub name: the scheduler's task hub must carry the same one.
var taskHubName = 'ImageJobs'
var functionAppName = 'func-${resourceToken}'
var deploymentContainerName = 'app-package-${resourceToken}'
var imagesContainerName = 'images'
var batchesContainerName = 'batches'
var routeKeySecretName = 'image-route-key'
var jobIdSecretName = 'image-job-id-secret'
var routeUsesKey = !deployOpenAi && routeAuth == 'key'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${resourceToken}'
  location: location
  tags: tags
}

// One account for the host (keys, leases, the deployment package, the Azure Storage backend's
// queues and tables) and the app (images, batches). No shared keys: every caller uses Entra ID,
// and image links are user-delegation SAS signed with a key the identity asks for.
resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'st${resourceToken}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }

  resource blobService 'blobServices' = {
    name: 'default'

    resource deploymentContainer 'containers' = {
      name: deploymentContainerName
    }

    resource imagesContainer 'containers' = {
      name: imagesContainerName
    }

    resource batchesContainer 'containers' = {
      name: batchesContainerName
    }
  }
}

// Under routes/ in the images container: each route's send-slot claims (one small blob per
// batch send, needed for seconds: storage.protocol.route_slot_name) and its latest 429 pause
// (rewritten on each 429, stale after minutes). The account's lifecycle rule deletes them a day
// after they were written (learn.microsoft.com/azure/storage/blobs/lifecycle-management-overview).
resource routeRecordsLifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          enabled: true
          name: 'route-records'
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${imagesContainerName}/routes/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: 1
                }
              }
            }
          }
        }
      ]
    }
  }
}

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${resourceToken}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

// Local (key) authentication off: the host and the app's exporter send with the identity
// (APPLICATIONINSIGHTS_AUTHENTICATION_STRING, Monitoring Metrics Publisher in rbac.bicep).
resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${resourceToken}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

// The queries of docs/monitoring.md as a workbook on the Application Insights resource.
resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'image-jobs-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Image jobs'
    category: 'workbook'
    sourceId: appInsights.id
    serializedData: loadTextContent('../workbook.json')
  }
}

// Secrets live here and only here; app settings reference them (@Microsoft.KeyVault(...)),
// resolved by the host with the identity (Key Vault Secrets User in rbac.bicep).
resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: 'kv-${resourceToken}'
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
  }

  resource jobIdSecretValue 'secrets' = {
    name: jobIdSecretName
    properties: {
      value: jobIdSecret
    }
  }

  resource routeKeyValue 'secrets' = if (routeUsesKey && !empty(routeKey)) {
    name: routeKeySecretName
    properties: {
      value: routeKey
    }
  }
}

resource openAi 'Microsoft.CognitiveServices/accounts@2024-10-01' = if (deployOpenAi) {
  name: 'oai-${resourceToken}'
  location: openAiLocation
  tags: tags
  kind: 'OpenAI'
  sku: {
    name: 'S0'
  }
  properties: {
    customSubDomainName: 'oai-${resourceToken}'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource imageDeployment 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = if (deployOpenAi) {
  parent: openAi
  name: routeDeployment
  sku: {
    name: 'GlobalStandard'
    capacity: imageCapacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: 'gpt-image-2'
      version: imageModelVersion
    }
  }
}

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' = if (useScheduler) {
  name: 'dts-${resourceToken}'
  location: location
  tags: tags
  properties: {
    ipAllowlist: [
      '0.0.0.0/0'
    ]
    sku: {
      name: schedulerSku
    }
  }
}

resource taskHub 'Microsoft.DurableTask/schedulers/taskHubs@2025-11-01' = if (useScheduler) {
  parent: scheduler
  name: taskHubName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${resourceToken}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

var blobEndpoint = storage.properties.primaryEndpoints.blob
var vaultUrl = keyVault.properties.vaultUri
var routeEndpointUrl = deployOpenAi ? openAi.properties.endpoint : routeBaseUrl

// The host's own settings: its storage by identity, telemetry with the identity.
var hostSettings = {
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.properties.clientId
  AZURE_CLIENT_ID: identity.properties.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identity.properties.clientId}'
}

// The Durable Task Scheduler backend: host.json's storage provider overridden, and its
// connection (the scheduler's endpoint, reached with the identity).
var durableSettings = useScheduler
  ? {
      AzureFunctionsJobHost__extensions__durableTask__storageProvider__type: 'azureManaged'
      AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionName: 'DURABLE_TASK_SCHEDULER_CONNECTION_STRING'
      DURABLE_TASK_SCHEDULER_CONNECTION_STRING: 'Endpoint=${scheduler.properties.endpoint};Authentication=ManagedIdentity;ClientID=${identity.properties.clientId}'
    }
  : {}

// The service's settings (docs/settings.md): one route, `azure`, on an Azure OpenAI deployment.
var serviceSettings = {
  IMAGE_ROUTES: 'azure'
  IMAGE_ROUTE_AZURE_OWNER: 'azure'
  IMAGE_ROUTE_AZURE_BASE_URL: routeEndpointUrl
  IMAGE_ROUTE_AZURE_DEPLOYMENT: routeDeployment
  IMAGE_ROUTE_AZURE_AUTH: deployOpenAi ? 'entra' : routeAuth
  // Azure's front end kills a stream that is silent for 60 s (docs/reference/field-reports.md).
  IMAGE_ROUTE_AZURE_GATEWAY_IDLE_TIMEOUT_S: '60'
  IMAGES_STORAGE_ACCOUNT_URL: blobEndpoint
  IMAGES_CONTAINER: imagesContainerName
  IMAGE_BATCHES_CONTAINER: batchesContainerName
  IMAGES_LINK_TTL_S: string(linkTtlSeconds)
  IMAGE_JOB_ID_SECRET: '@Microsoft.KeyVault(SecretUri=${vaultUrl}secrets/${jobIdSecretName}/)'
}

// A route key: a Key Vault reference without a version, so a rotated secret is picked up.
var routeKeySettings = routeUsesKey
  ? {
      IMAGE_ROUTE_AZURE_KEY: '@Microsoft.KeyVault(SecretUri=${vaultUrl}secrets/${routeKeySecretName}/)'
    }
  : {}

var corsOrigins = empty(corsAllowedOrigins) ? [] : split(corsAllowedOrigins, ',')

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identity.id
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      cors: {
        allowedOrigins: corsOrigins
        supportCredentials: false
      }
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }

  resource appSettings 'config' = {
    name: 'appsettings'
    properties: union(hostSettings, durableSettings, serviceSettings, routeKeySettings)
  }

  // Easy Auth in front of the API, when an app registration is named: callers sign in with
  // Entra ID, and the platform sets WEBSITE_AUTH_ENABLED, so IMAGE_TRUST_PRINCIPAL_HEADER=auto
  // takes each caller's principal as its identity (its own jobs, its own list).
  resource authSettings 'config' = if (!empty(authClientId)) {
    name: 'authsettingsV2'
    properties: {
      platform: {
        enabled: true
      }
      globalValidation: {
        requireAuthentication: true
        unauthenticatedClientAction: 'Return401'
      }
      identityProviders: {
        azureActiveDirectory: {
          enabled: true
          registration: {
            clientId: authClientId
            openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
          }
          validation: {
            allowedAudiences: [
              'api://${authClientId}'
            ]
          }
        }
      }
    }
  }
}

output identityPrincipalId string = identity.properties.principalId
output functionAppName string = functionApp.name
output functionAppUrl string = 'https://${functionApp.properties.defaultHostName}'
output storageAccountName string = storage.name
output keyVaultName string = keyVault.name
output appInsightsName string = appInsights.name
output schedulerName string = useScheduler ? scheduler.name : ''
output openAiName string = deployOpenAi ? openAi.name : ''
