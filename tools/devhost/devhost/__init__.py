"""Run a Functions app's function_app.py locally with real Durable semantics, without Core Tools.

The SDK's own replay code (`Orchestrator.create(fn)`'s handle) and its own
`DurableOrchestrationClient` talk to this host over HTTP, exactly as they talk to the Functions
host and the Durable extension in Azure. Protocol facts: docs/reference/durable-host-protocol.md
and docs/reference/functions-host-http.md. The product code never imports it.
"""
