"""The Functions app: it builds the DFApp, registers one blueprint per area, checks the settings."""

import azure.durable_functions as df
import azure.functions as func

import telemetry
import wiring
from activities.blueprint import bp as activities
from http_api.blueprint import bp as jobs_api
from orchestrators.batch_intake import bp as batch_intake
from orchestrators.image_batch import bp as batches
from orchestrators.image_job import bp as orchestrators
from orchestrators.route_entity import bp as route_entities
from orchestrators.webhook_delivery import bp as webhook_deliveries

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(orchestrators)
app.register_functions(batches)
app.register_functions(batch_intake)
app.register_functions(route_entities)
app.register_functions(webhook_deliveries)
app.register_functions(activities)
app.register_functions(jobs_api)

# Bad app settings stop the host here, at start-up, with SettingsInvalid naming the setting.
wiring.settings()
# The app's own telemetry to Application Insights, when APPLICATIONINSIGHTS_CONNECTION_STRING is
# set (in Azure); before any route client exists, so that every route call is instrumented.
telemetry.configure()
