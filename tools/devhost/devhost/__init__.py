"""Run a Functions app's function_app.py locally with real Durable semantics, without Core Tools.

The SDK's own replay code (`Orchestrator.create(fn)`'s handle) and its own
`DurableOrchestrationClient` talk to this host over HTTP, exactly as they talk to the Functions
host and the Durable extension in Azure. Protocol facts: shared/reference/durable-host-protocol.md
and shared/reference/functions-host-http.md. The product code never imports it.
"""
