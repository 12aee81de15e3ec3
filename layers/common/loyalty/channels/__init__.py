"""Messaging providers at our edge, one set of modules per provider (wire formats:
CHANNELS.md): the client that sends (`whatsapp`, `wechat`, `twilio`, `aliyun`, sharing
`providers`), and next to it the parser of what the provider pushes to our webhooks
(`whatsapp_inbound`, `wechat_inbound`, `twilio_inbound`, `aliyun_inbound`, producing the
plain values of `pushes`). Webhook signatures are in `signatures`; the keywords members
reply with, on every channel, in `keywords`. The parsers import neither `requests` nor
boto3, so a webhook function loads no client."""
