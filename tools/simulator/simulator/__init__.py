"""A local gpt-image-2 service that the official openai SDK cannot tell from the real one.

Routes of every route owner (OpenAI, Azure OpenAI deployment and v1 paths), real images, the
gpt-image-2 validation rules, a latency model with a time scale, SSE streaming with partial images,
Azure's 60 s gateway idle kill, rate limits, scripted faults and a ledger of billable generations.
Facts it follows: docs/reference/gpt-image-2-api.md. The product code never imports it.
"""
